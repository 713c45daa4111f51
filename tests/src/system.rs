//! The whole system on one machine: nats-server, a dev enclave on a Unix socket, a parent.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dynamo::{Cut, Dynamo};
use crate::kms::{KmsEndpoint, KmsOptions, LocalKms};
use crate::proc::{assert_dev_enclave, bin_path, free_port, Child, NatsServer};

/// Knobs for [`System::start`].
#[derive(Debug, Clone, Default)]
pub struct SystemOptions {
    /// Extra arguments for `vettid-parent`.
    pub parent_args: Vec<String>,
    /// Extra TOML appended to the parent's config file.
    pub parent_toml: String,
    /// Replaces the default `[attestation]` section (dev mode: mock root, any PCRs). The text
    /// `{MOCK_ROOT}` is replaced with the path of the mock NSM root certificate.
    pub attestation_toml: Option<String>,
    /// Return from `start` once the parent answers `/health`, healthy or not (for tests of a
    /// parent that refuses the enclave).
    pub allow_unhealthy: bool,
    /// Object-store root shared with another host (default: this system's own directory).
    pub storage_root: Option<PathBuf>,
    /// Extra environment for `vettid-parent` (e.g. NOTIFY_SOCKET).
    pub parent_env: Vec<(String, String)>,
    /// Extra arguments for `vettid-enclave` (e.g. `--control-keys FILE --enclave-id test-host`).
    pub enclave_args: Vec<String>,
    /// Run a local KMS (or, on a second host, share the first host's) and give the enclave its
    /// vault: KMS flags for the enclave, a `[kms]` tunnel for the parent.
    pub kms: Option<KmsOptions>,
    /// Where the parent connects instead of the enclave's socket (a recording proxy in tests).
    pub parent_enclave_address: Option<String>,
    /// The enclave's socket path (default: `enclave.sock` in the system's directory).
    pub enclave_socket: Option<PathBuf>,
    /// A second host with its own nats-server (so a test can address each host), still sharing
    /// the first host's KMS and, with `storage_root`, its bucket.
    pub separate_nats: bool,
    /// A vault enclave that serves v2 only (no `--accept-v1-envelopes`, the production default);
    /// by default the harness's vault enclaves also serve v1, as `scripts/dev` does, because most
    /// end-to-end tests drive the deployed apps' v1 shapes.
    pub v2_only: bool,
    /// Let the parent create the `ENROLLMENT` stream (its production default). Off here by
    /// default: the stream acknowledges every `forVault` request that has a reply inbox, and
    /// the request/reply tests predate it.
    pub enrollment_stream: bool,
    /// The trusted state store (issue 12): on the first host, a fresh table in this process's
    /// DynamoDB stand-in ([`crate::dynamo`]), the dedicated principal's credentials sealed with
    /// this system's local KMS and stored where the enclave reads them, the table's endpoint on
    /// the parent's tunnel allow-list and the `--trusted-store-*` flags. A second host (sharing
    /// the first's bucket through `storage_root`) uses the first host's table. Needs `kms`.
    pub trusted_store: bool,
    /// With `trusted_store`, the table lives in a stand-in of this system's own rather than the
    /// process's shared one: its tables on disk in the system's directory (so a killed stand-in
    /// restarts with them, [`Dynamo::restart`]), its fault switch free to flip
    /// ([`Dynamo::set_fault`]), and the parent reaching it through a [`Cut`] the test can sever.
    /// The fault table's trusted-store rows run on this.
    pub own_stand_in: bool,
}

/// A system's own DynamoDB stand-in ([`SystemOptions::own_stand_in`]) and the path to it.
pub struct StandIn {
    /// The stand-in.
    pub dynamo: Dynamo,
    /// The path the parent's tunnel takes to it.
    pub cut: Cut,
}

/// The trusted store a system (and the hosts sharing it) uses.
#[derive(Debug, Clone)]
pub struct TrustedStoreInfo {
    /// `--trusted-store-table`.
    pub table_arn: String,
    /// `https://dynamodb.vettid.test:PORT`.
    pub endpoint: String,
    /// `HOST:PORT`, on the parent's tunnel allow-list.
    pub authority: String,
    /// `--trusted-store-ca-file`.
    pub ca_pem: PathBuf,
}

impl TrustedStoreInfo {
    /// The enclave's `--trusted-store-*` flags.
    pub fn enclave_args(&self) -> Vec<String> {
        vec![
            "--trusted-store-endpoint".into(),
            self.endpoint.clone(),
            "--trusted-store-region".into(),
            crate::dynamo::REGION.into(),
            "--trusted-store-table".into(),
            self.table_arn.clone(),
            "--trusted-store-ca-file".into(),
            self.ca_pem.display().to_string(),
            "--trusted-store-forward-port".into(),
            "0".into(),
        ]
    }
}

/// A running system. Everything is killed when it is dropped.
pub struct System {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub enclave: Option<Child>,
    pub parent: Option<Child>,
    pub http_port: u16,
    /// The local KMS this system started (the first host of a pair).
    pub kms: Option<LocalKms>,
    kms_endpoint: Option<KmsEndpoint>,
    /// The trusted store this system's enclave writes (`SystemOptions::trusted_store`).
    pub trusted: Option<TrustedStoreInfo>,
    /// This system's own stand-in, if [`SystemOptions::own_stand_in`].
    pub stand_in: Option<StandIn>,
    pub(crate) opts: SystemOptions,
}

impl System {
    /// Starts nats-server, the enclave and the parent, and waits until the parent is healthy.
    pub fn start(opts: SystemOptions) -> Self {
        Self::start_on(None, opts)
    }

    /// The parent's KMS tunnel address.
    pub fn kms_tunnel(&self) -> String {
        format!(
            "unix://{}",
            self.dir.path().join("kms-tunnel.sock").display()
        )
    }

    /// A second host: its own enclave and parent, on `first`'s nats-server (same queue group).
    pub fn start_second_host(first: &System, opts: SystemOptions) -> Self {
        Self::start_on(Some(first), opts)
    }

    /// `n` hosts sharing one nats-server, one bucket (the first host's object root), one KMS and,
    /// with `opts.trusted_store`, one table: the first host with `opts`, the others with `opts`
    /// and the first host's `storage_root`.
    pub fn start_fleet(n: usize, opts: SystemOptions) -> Vec<System> {
        assert!(n >= 1);
        let first = Self::start(opts.clone());
        let storage_root = first.storage_root();
        let mut fleet = vec![first];
        for _ in 1..n {
            let host = Self::start_second_host(
                &fleet[0],
                SystemOptions {
                    storage_root: Some(storage_root.clone()),
                    ..opts.clone()
                },
            );
            fleet.push(host);
        }
        fleet
    }

    fn start_on(first: Option<&System>, opts: SystemOptions) -> Self {
        assert_dev_enclave();
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = match first {
            Some(f) if !opts.separate_nats => NatsServer::shared(&f.nats),
            _ => NatsServer::start(dir.path()),
        };
        let (kms, kms_endpoint) = match (&opts.kms, first.and_then(|f| f.kms_endpoint.clone())) {
            (None, _) => (None, None),
            // A second host shares the first's KMS, so it needs the same mock NSM root (on real
            // hardware both enclaves chain to the AWS root anyway).
            (Some(_), Some(endpoint)) => {
                let from = first.map(|f| f.dir.path().to_owned()).unwrap_or_default();
                for name in ["mock-root.pem", "mock-root.key"] {
                    std::fs::copy(from.join(name), dir.path().join(name)).expect("copy mock root");
                }
                (None, Some(endpoint))
            }
            (Some(k), None) => {
                let kms = LocalKms::start(dir.path(), k.clone());
                let endpoint = kms.endpoint();
                (Some(kms), Some(endpoint))
            }
        };
        let mut stand_in = None;
        let trusted = match (opts.trusted_store, first.and_then(|f| f.trusted.clone())) {
            (false, _) => None,
            (true, Some(shared)) => Some(shared),
            (true, None) => {
                let kms = kms
                    .as_ref()
                    .expect("SystemOptions::trusted_store needs kms (its credentials are sealed under the KMS key)");
                let root = opts
                    .storage_root
                    .clone()
                    .unwrap_or_else(|| dir.path().join("objects"));
                if opts.own_stand_in {
                    let dynamo = Dynamo::start(dir.path(), Some(&dir.path().join("dynamodb-data")));
                    let cut = Cut::start(dynamo.port);
                    let info = provision_trusted_store(kms, &root, &dynamo, cut.port);
                    stand_in = Some(StandIn { dynamo, cut });
                    Some(info)
                } else {
                    let d = Dynamo::shared();
                    Some(provision_trusted_store(kms, &root, d, d.port))
                }
            }
        };
        let mut s = Self {
            dir,
            nats,
            enclave: None,
            parent: None,
            http_port: free_port(),
            kms,
            kms_endpoint,
            trusted,
            stand_in,
            opts,
        };
        s.start_enclave();
        s.start_parent();
        if s.opts.allow_unhealthy {
            let deadline = Instant::now() + Duration::from_secs(15);
            while s.health().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            assert!(
                s.wait_healthy(Duration::from_secs(15)),
                "system did not become healthy"
            );
        }
        s
    }

    /// The fs object store's root.
    pub fn storage_root(&self) -> PathBuf {
        self.opts
            .storage_root
            .clone()
            .unwrap_or_else(|| self.dir.path().join("objects"))
    }

    /// The enclave's socket path.
    pub fn socket(&self) -> PathBuf {
        self.opts
            .enclave_socket
            .clone()
            .unwrap_or_else(|| self.dir.path().join("enclave.sock"))
    }

    /// `unix://…` address of the enclave.
    pub fn enclave_addr(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The mock NSM root certificate (PEM) the dev enclave wrote.
    pub fn mock_root_pem(&self) -> PathBuf {
        self.dir.path().join("mock-root.pem")
    }

    /// Starts (or restarts) the enclave and waits for its socket.
    pub fn start_enclave(&mut self) {
        if let Some(mut old) = self.enclave.take() {
            old.kill();
        }
        let mut cmd = Command::new(bin_path("vettid-enclave"));
        cmd.arg("--listen")
            .arg(self.enclave_addr())
            .arg("--dev-dir")
            .arg(self.dir.path())
            .args(&self.opts.enclave_args);
        if let Some(k) = &self.kms_endpoint {
            cmd.args(k.enclave_args(&self.kms_tunnel()));
            if !self.opts.v2_only {
                cmd.arg("--accept-v1-envelopes");
            }
        }
        if let Some(t) = &self.trusted {
            cmd.args(t.enclave_args());
        }
        let started = Instant::now();
        let _ = std::fs::remove_file(self.socket());
        let child = Child::spawn("vettid-enclave", cmd, &self.dir.path().join("enclave.log"));
        self.enclave = Some(child);
        while started.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = self.enclave.as_ref().map(Child::log).unwrap_or_default();
        panic!("enclave socket did not appear; enclave log:\n{log}");
    }

    /// SIGKILLs the enclave.
    pub fn kill_enclave(&mut self) {
        if let Some(mut e) = self.enclave.take() {
            e.kill();
        }
    }

    /// Starts (or restarts) the parent.
    pub fn start_parent(&mut self) {
        if let Some(mut old) = self.parent.take() {
            old.kill();
        }
        let config = self.dir.path().join("parent.toml");
        let attestation = self
            .opts
            .attestation_toml
            .clone()
            .unwrap_or_else(|| {
                "[attestation]\ndev_mode = true\ndev_trust_root = \"{MOCK_ROOT}\"\ndev_accept_any_pcrs = true\n"
                    .into()
            })
            .replace("{MOCK_ROOT}", &self.mock_root_pem().display().to_string());
        let toml = format!(
            "enclave_id = \"test-host\"\n[nats]\nurl = \"{}\"\n[nats.enrollment_stream]\ncreate = {}\n[enclave]\naddress = \"{}\"\nrequest_timeout_ms = 5000\n[http]\nlisten = \"127.0.0.1:{}\"\n[storage]\nbackend = \"fs\"\nfs.root = \"{}\"\n{}\n{}\n",
            self.nats.url(),
            self.opts.enrollment_stream,
            self.opts
                .parent_enclave_address
                .clone()
                .unwrap_or_else(|| self.enclave_addr()),
            self.http_port,
            self.opts.storage_root.clone().unwrap_or_else(|| self.dir.path().join("objects")).display(),
            self.opts.parent_toml,
            attestation,
        );
        let toml = match &self.kms_endpoint {
            Some(k) => format!(
                "{toml}{}",
                k.parent_toml_with(
                    &self.kms_tunnel(),
                    self.opts
                        .kms
                        .as_ref()
                        .and_then(|o| o.parent_allow.as_deref()),
                    &self
                        .trusted
                        .iter()
                        .map(|t| t.authority.clone())
                        .collect::<Vec<_>>(),
                )
            ),
            None => toml,
        };
        std::fs::write(&config, toml).expect("write parent.toml");
        let mut cmd = Command::new(bin_path("vettid-parent"));
        cmd.arg("--config")
            .arg(&config)
            .args(&self.opts.parent_args)
            .envs(self.opts.parent_env.iter().map(|(k, v)| (k, v)));
        if self.kms_endpoint.is_some() {
            cmd.envs(crate::kms::parent_env());
        }
        self.parent = Some(Child::spawn(
            "vettid-parent",
            cmd,
            &self.dir.path().join("parent.log"),
        ));
    }

    /// The parent's `/health` as (status, JSON).
    pub fn health(&self) -> Option<(u16, Value)> {
        let (status, body) = crate::http::get(self.http_port, "/health").ok()?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// Waits until `/health` answers 200 and the parent is subscribed.
    pub fn wait_healthy(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some((200, v)) = self.health() {
                if v["subscribed"] == true {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A NATS client connected to this system's server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.nats.url())
            .await
            .expect("connect to test nats-server")
    }
}

/// Sends a request and parses the JSON reply, with a bounded wait. A JetStream PubAck on the
/// inbox (`{"stream", "seq"}`: the `ENROLLMENT` stream stored the request) is not the answer and
/// is skipped; nats-server's "no responders" status is an error, as `Client::request` makes it.
pub async fn request_json(
    client: &async_nats::Client,
    subject: &str,
    payload: Value,
    limit: Duration,
) -> Result<Value, String> {
    use futures::StreamExt as _;
    let deadline = tokio::time::Instant::now() + limit;
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| format!("request error: {e}"))?;
    client
        .publish_with_reply(subject.to_string(), inbox, payload.to_string().into())
        .await
        .map_err(|e| format!("request error: {e}"))?;
    loop {
        match tokio::time::timeout_at(deadline, answers.next()).await {
            Err(_) => return Err("timeout".into()),
            Ok(None) => return Err("request error: subscription closed".into()),
            Ok(Some(msg)) if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
                return Err("request error: no responders".into())
            }
            Ok(Some(msg)) => {
                let v: Value = serde_json::from_slice(&msg.payload)
                    .map_err(|e| format!("reply not JSON: {e}"))?;
                if !is_pub_ack(&v) {
                    return Ok(v);
                }
            }
        }
    }
}

/// A JetStream publish acknowledgement: `{"stream": …, "seq": …}` and nothing of a vault answer.
pub fn is_pub_ack(v: &Value) -> bool {
    v.get("stream").is_some_and(Value::is_string)
        && v.get("seq").is_some_and(Value::is_u64)
        && v.get("type").is_none()
}

/// Tables made by this process, for unique names.
static TABLES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A fresh table in stand-in `d`, and the dedicated principal's credentials sealed under `kms`'s
/// key (as the operator does with `Encrypt`) at the object the enclave reads in the fs store under
/// `root`. The parent reaches the table on `port` (`d.port`, or a [`Cut`] in front of it).
fn provision_trusted_store(
    kms: &LocalKms,
    root: &std::path::Path,
    d: &Dynamo,
    port: u16,
) -> TrustedStoreInfo {
    use crate::dynamo;
    let name = format!(
        "trusted-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let table_arn = d.create_table_blocking(&name);
    let blob = seal_credentials(
        kms,
        &dynamo::credentials_json(dynamo::ACCESS_KEY_ID, dynamo::SECRET_ACCESS_KEY),
        &table_arn,
    );
    write_sealed_credentials(root, &blob);
    TrustedStoreInfo {
        table_arn,
        endpoint: format!("https://{}:{port}", dynamo::HOST),
        authority: format!("{}:{port}", dynamo::HOST),
        ca_pem: d.ca_pem.clone(),
    }
}

/// KMS `Encrypt` of `json` under the vault key with the trusted store's encryption context for
/// `table_arn`. Through the local KMS's twin: the vault key's policy (`--require-recipient`)
/// lets nobody `Encrypt` without attestation, and the operator's permission to seal is outside
/// what the local KMS's default policy models (docs/OPERATIONS.md).
pub fn seal_credentials(kms: &LocalKms, json: &str, table_arn: &str) -> Vec<u8> {
    let client = kms.plaintext_client();
    let json = json.to_owned();
    let table_arn = table_arn.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                client
                    .encrypt()
                    .key_id(crate::kms::key_arn())
                    .plaintext(aws_sdk_kms::primitives::Blob::new(json.into_bytes()))
                    .encryption_context("vettid:purpose", "trusted-store-credentials")
                    .encryption_context("vettid:table", table_arn)
                    .send()
                    .await
                    .expect("Encrypt the trusted store credentials")
                    .ciphertext_blob
                    .expect("ciphertext")
                    .into_inner()
            })
    })
    .join()
    .expect("seal")
}

/// Puts `blob` where the enclave reads its sealed credentials (`vaults/_trusted-store/credentials.kms`)
/// in the fs object store rooted at `root` (an object `K` is the file `ROOT/K@`).
pub fn write_sealed_credentials(root: &std::path::Path, blob: &[u8]) {
    let path = root.join("vaults/_trusted-store/credentials.kms@");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, blob).expect("write sealed credentials");
}
