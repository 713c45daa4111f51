//! The pieces of the KMS end-to-end tests: the local KMS in-process, a tunnel speaking the parent's preamble,
//! counting credentials, and the enclave's KMS client wired to them.

// Shared by several test files, each of which uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use vettid_enclave::kms::{CredentialError, CredentialSource, Kms, KmsConfig, KmsFlags};
use vettid_enclave::sealing::BoxFuture;
use vettid_nsm::{MockNsm, MockPcrs};
use vettid_protocol::AwsCredentials;

/// The KMS host name the local KMS's certificate is for.
pub const HOST: &str = "kms.vettid.test";
/// The key every test seals under (a KMS key id: a UUID).
pub const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
/// A second key of the same account.
pub const SECOND_KEY: &str = "2234abcd-12ab-34cd-56ef-1234567890ab";
/// The account the keys live in (the vault operator's).
pub const ACCOUNT: &str = "111122223333";
/// The account of a host lending credentials of its own (access key id [`HOST_AKID`]).
pub const HOST_ACCOUNT: &str = "444455556666";
/// The access key id the local KMS attributes to [`HOST_ACCOUNT`].
pub const HOST_AKID: &str = "ASIAHOSTOWNACCOUNT";

/// `arn:aws:kms:us-east-1:ACCOUNT:key/ID`.
pub fn key_arn(id: &str) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}")
}

/// A policy the enclave's check passes: the account root administers the key (no plaintext), and
/// only an attested enclave with one of `pcr0s` may Decrypt and GenerateDataKey.
pub fn safe_policy(pcr0s: &[String]) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Id": "vettid-test", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
         "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListGrants", "kms:EnableKey",
                    "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:CreateAlias"],
         "Resource": "*"},
        {"Sid": "EnclaveOnly", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0s}}}
    ]})
}

// === the local KMS, in-process ===

/// The local KMS on two loopback ports sharing one key store: HTTPS for the enclave, plain HTTP for the
/// test's own admin client (disable, enable, schedule deletion).
pub struct LocalKms {
    pub tls_port: u16,
    /// The account administrator's client (plain HTTP).
    pub admin: aws_sdk_kms::Client,
    admin_addr: SocketAddr,
    /// Holds the mock NSM root, the key file and the dev CA (`tls/ca.pem`).
    pub dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

impl LocalKms {
    /// Starts it trusting `nsm`'s root, with [`safe_policy`] for `nsm`'s PCR0 on both keys;
    /// `ignore_recipient` imitates moto.
    pub async fn start(nsm: &MockNsm, dir: tempfile::TempDir, ignore_recipient: bool) -> Self {
        let local = Self::serve(nsm, dir, ignore_recipient, None).await;
        for key in [KEY, SECOND_KEY] {
            local.put_policy(key, &safe_policy(&[pcr0_hex(nsm)])).await;
        }
        local
    }

    /// Replaces `key`'s policy (as the account's administrator).
    pub async fn put_policy(&self, key: &str, policy: &serde_json::Value) {
        self.admin
            .put_key_policy()
            .key_id(key)
            .policy_name("default")
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
    }

    /// A second server over the same key file and CA that answers every Decrypt and
    /// GenerateDataKey with `KeyId` = `misreport` (a KMS that lies about the key); its TLS port.
    pub async fn misreporting_twin(
        &self,
        nsm: &MockNsm,
        misreport: &str,
    ) -> (u16, watch::Sender<bool>) {
        let settings = Self::settings(nsm, self.dir.path(), false, Some(misreport.into()));
        let (port, _admin, stop) = Self::listen(settings).await;
        (port, stop)
    }

    /// An admin client signing as `access_key_id` (plain HTTP).
    pub fn client_as(&self, access_key_id: &str) -> aws_sdk_kms::Client {
        admin_client_as(self.admin_addr, access_key_id)
    }

    fn settings(
        nsm: &MockNsm,
        dir: &Path,
        ignore_recipient: bool,
        misreport_key_id: Option<String>,
    ) -> vettid_local_kms::Settings {
        let root = dir.join("mock-root.pem");
        std::fs::write(&root, nsm.root_pem()).unwrap();
        vettid_local_kms::Settings {
            key_file: dir.join("keys.json"),
            attestation_root: Some(root),
            allow_pcr0: vec![pcr0_hex(nsm)],
            ignore_recipient,
            ensure_keys: vec![KEY.into(), SECOND_KEY.into()],
            account: Some(ACCOUNT.into()),
            credential_accounts: vec![format!("{HOST_AKID}={HOST_ACCOUNT}")],
            misreport_key_id,
            tls_self_signed: Some(dir.join("tls")),
            tls_hostname: Some(HOST.into()),
            ..Default::default()
        }
    }

    async fn serve(
        nsm: &MockNsm,
        dir: tempfile::TempDir,
        ignore_recipient: bool,
        misreport: Option<String>,
    ) -> Self {
        let settings = Self::settings(nsm, dir.path(), ignore_recipient, misreport);
        let (tls_port, admin_addr, stop) = Self::listen(settings).await;
        Self {
            tls_port,
            admin: admin_client(admin_addr),
            admin_addr,
            dir,
            _stop: stop,
        }
    }

    async fn listen(
        settings: vettid_local_kms::Settings,
    ) -> (u16, SocketAddr, watch::Sender<bool>) {
        let config = vettid_local_kms::Config::from_settings(settings).unwrap();
        let tls = vettid_local_kms::tls::server_config(config.tls.as_ref().unwrap()).unwrap();
        let kms = Arc::new(vettid_local_kms::Kms::new(config).unwrap());
        let (stop, stopped) = watch::channel(false);
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = tls_listener.local_addr().unwrap().port();
        let admin_addr = plain_listener.local_addr().unwrap();
        tokio::spawn(vettid_local_kms::serve_tls(
            tls_listener,
            kms.clone(),
            Some(tls),
            until(stopped.clone()),
        ));
        tokio::spawn(vettid_local_kms::serve(plain_listener, kms, until(stopped)));
        (tls_port, admin_addr, stop)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

pub async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}

pub fn admin_client(addr: SocketAddr) -> aws_sdk_kms::Client {
    admin_client_as(addr, "admin")
}

pub fn admin_client_as(addr: SocketAddr, access_key_id: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key_id, "admin", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

pub fn mock_nsm(root_dir: &Path, measurement: &[u8]) -> MockNsm {
    MockNsm::load_or_create(root_dir, MockPcrs::from_measurement(measurement)).unwrap()
}

pub fn pcr0_hex(nsm: &MockNsm) -> String {
    hex::encode(nsm.pcrs().get(0).unwrap())
}

// === the parent's tunnel, reduced to the preamble and a byte copy ===

/// A tunnel on a Unix socket: reads `vettid-tunnel-v1 HOST:PORT`, connects to 127.0.0.1:PORT for any host
/// under `.vettid.test` (or answers `denied`), and copies bytes. Records every preamble target.
pub struct Tunnel {
    pub address: String,
    targets: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Tunnel {
    pub async fn start(deny: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut enclave, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut line = Vec::new();
                    loop {
                        let b = enclave.read_u8().await.unwrap();
                        if b == b'\n' {
                            break;
                        }
                        line.push(b);
                    }
                    let line = String::from_utf8(line).unwrap();
                    let target = line.strip_prefix("vettid-tunnel-v1 ").unwrap().to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let (host, port) = target.rsplit_once(':').unwrap();
                    if deny || !host.ends_with(".vettid.test") {
                        let _ = enclave.write_all(b"denied\n").await;
                        return;
                    }
                    let Ok(mut kms) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())).await
                    else {
                        let _ = enclave.write_all(b"unreachable\n").await;
                        return;
                    };
                    enclave.write_all(b"ok\n").await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut enclave, &mut kms).await;
                });
            }
        });
        Self {
            address: format!("unix://{}", path.display()),
            targets,
            _dir: dir,
        }
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

// === credentials ===

/// Fixed credentials that expire `lifetime` after each fetch, counting fetches.
pub struct TestCredentials {
    fetches: AtomicUsize,
    lifetime: Option<Duration>,
    /// Access key id to lend (None: `ASIATEST<n>`, the operator's account).
    access_key_id: Option<String>,
}

impl TestCredentials {
    pub fn new(lifetime: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            fetches: AtomicUsize::new(0),
            lifetime,
            access_key_id: None,
        })
    }

    /// Credentials of the host's own account ([`HOST_ACCOUNT`]).
    pub fn host_account() -> Arc<Self> {
        Arc::new(Self {
            fetches: AtomicUsize::new(0),
            lifetime: Some(Duration::from_secs(3600)),
            access_key_id: Some(HOST_AKID.into()),
        })
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl CredentialSource for TestCredentials {
    fn fetch(&self) -> BoxFuture<'_, Result<AwsCredentials, CredentialError>> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        let expires_at_ms = self.lifetime.map(|l| {
            (SystemTime::now() + l)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        });
        let access_key_id = self
            .access_key_id
            .clone()
            .unwrap_or_else(|| format!("ASIATEST{n}"));
        Box::pin(async move {
            Ok(AwsCredentials {
                access_key_id,
                secret_access_key: "secret".into(),
                session_token: Some("token".into()),
                expires_at_ms,
            })
        })
    }
}

// === the enclave side ===

pub struct Setup {
    pub endpoint_host: &'static str,
    /// `--kms-key-id` as given.
    pub key_id: String,
    /// The local KMS's TLS port (another one: a twin).
    pub port: u16,
    /// `--kms-policy-pcr0`.
    pub policy_pcr0: Vec<String>,
    pub ca: Option<PathBuf>,
    pub credentials: Arc<TestCredentials>,
}

impl Setup {
    pub fn new(local: &LocalKms) -> Self {
        Self {
            endpoint_host: HOST,
            key_id: key_arn(KEY),
            port: local.tls_port,
            policy_pcr0: Vec::new(),
            ca: Some(local.ca()),
            credentials: TestCredentials::new(Some(Duration::from_secs(3600))),
        }
    }

    /// The `--kms-*` flags this setup gives the enclave.
    pub fn flags(&self, tunnel: &Tunnel) -> KmsFlags {
        KmsFlags {
            kms_endpoint: Some(format!("https://{}:{}", self.endpoint_host, self.port)),
            kms_region: Some("us-east-1".into()),
            kms_key_id: Some(self.key_id.clone()),
            kms_tunnel: Some(tunnel.address.clone()),
            kms_ca_file: self.ca.clone(),
            // The local KMS holds the endpoint's port on this loopback, so the forwarder takes a free one.
            kms_forward_port: Some(0),
            kms_policy_pcr0: self.policy_pcr0.clone(),
        }
    }

    pub async fn start(self, _local: &LocalKms, tunnel: &Tunnel, nsm: MockNsm) -> Kms {
        let config = KmsConfig::from_flags(&self.flags(tunnel)).unwrap().unwrap();
        Kms::start(config, Arc::new(nsm), self.credentials)
            .await
            .unwrap()
    }
}

/// Test logs on the test's output when `RUST_LOG` is set (e.g. `vettid_enclave=debug` shows why a call failed).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A local KMS, a tunnel and an enclave KMS client with PCRs the local KMS allows.
pub async fn world() -> (LocalKms, Tunnel, Kms, tempfile::TempDir) {
    logs();
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm, tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let kms = Setup::new(&local).start(&local, &tunnel, nsm).await;
    (local, tunnel, kms, roots)
}
