//! The trusted store's DynamoDB stand-in for end-to-end tests: dynalite behind HTTPS for
//! [`HOST`] (`scripts/lib/dynalite-tls.js`), one per test process, started on first use and gone
//! when the process is (the launcher watches our pid). Each system gets a fresh table
//! ([`Dynamo::create_table`]); tests read items behind the enclave with [`Dynamo::client`].
//!
//! The certificate comes from a dev CA of its own, issued by `vettid-local-kms issue-cert`; the
//! enclave trusts it with `--trusted-store-ca-file`. The stand-in accepts only
//! [`ACCESS_KEY_ID`] (like AWS, any other key id is `UnrecognizedClientException`) and resolves
//! table ARNs of [`ACCOUNT`] in [`REGION`] only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::proc::{bin_path, Child};

/// The table endpoint's host name (in no DNS: pinned to 127.0.0.1 by the parent and the tests).
pub const HOST: &str = "dynamodb.vettid.test";
/// The stand-in's region.
pub const REGION: &str = "us-east-1";
/// The account dynalite puts in table ARNs.
pub const ACCOUNT: &str = "000000000000";
/// The dedicated principal's access key id (what the sealed credentials hold).
pub const ACCESS_KEY_ID: &str = "AKIAVETTIDTRUSTED01";
/// Its secret (the stand-in checks no signature).
pub const SECRET_ACCESS_KEY: &str = "dev-trusted-store-secret";

/// The table ARN of `name` in the stand-in.
pub fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

/// The credentials JSON the enclave expects inside the sealed blob.
pub fn credentials_json(access_key_id: &str, secret: &str) -> String {
    serde_json::json!({"access_key_id": access_key_id, "secret_access_key": secret}).to_string()
}

/// The workspace root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Where `ensure_dynalite` installs dynalite (installing it now if it is missing).
pub fn dynalite_dir() -> PathBuf {
    let dir = std::env::var_os("VETTID_DYNALITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vettid/dynalite")
        });
    if !dir.join("node_modules/dynalite/package.json").exists() {
        let status = Command::new("bash")
            .arg("-c")
            .arg(". scripts/lib/common.sh && ensure_dynalite")
            .current_dir(repo_root())
            .env("VETTID_DYNALITE_DIR", &dir)
            .status()
            .expect("run ensure_dynalite");
        assert!(status.success(), "ensure_dynalite failed");
    }
    dir
}

/// Issues a certificate for [`HOST`] from the dev CA in `ca_dir` into `out` (cert.pem, key.pem).
pub fn issue_cert(ca_dir: &Path, out: &Path) {
    let status = Command::new(bin_path("vettid-local-kms"))
        .arg("issue-cert")
        .arg("--ca-dir")
        .arg(ca_dir)
        .arg("--name")
        .arg(HOST)
        .arg("--out")
        .arg(out)
        .status()
        .expect("run vettid-local-kms issue-cert");
    assert!(status.success(), "issue-cert failed");
}

/// A running stand-in.
pub struct Dynamo {
    /// The node process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The CA certificate its TLS certificate chains to.
    pub ca_pem: PathBuf,
    /// How long it took from spawn to its "listening" line.
    pub started_in: Duration,
    dir: PathBuf,
    tls: PathBuf,
    data: Option<PathBuf>,
}

/// The fault switch's file name in a stand-in's directory.
const CONTROL: &str = "dynamodb.control";

static SHARED: OnceLock<Dynamo> = OnceLock::new();
static SHARED_DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

impl Dynamo {
    /// This test process's stand-in (in memory), started on first use.
    pub fn shared() -> &'static Dynamo {
        SHARED.get_or_init(|| {
            let dir = SHARED_DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
            Dynamo::start(dir.path(), None)
        })
    }

    /// Starts one in `dir` (its CA, certificate and log), with its tables in `data` (LevelDB;
    /// `None`: in memory).
    pub fn start(dir: &Path, data: Option<&Path>) -> Self {
        let tls = dir.join("dynamodb-tls");
        issue_cert(&dir.join("dynamodb-ca"), &tls);
        Self::start_with(dir, &tls, data, None)
    }

    /// Starts one serving `tls/cert.pem`, on `port` (None: any).
    pub fn start_with(dir: &Path, tls: &Path, data: Option<&Path>, port: Option<u16>) -> Self {
        let modules = dynalite_dir().join("node_modules");
        let log = dir.join("dynamodb.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("scripts/lib/dynalite-tls.js"))
            .arg("127.0.0.1")
            .arg(port.unwrap_or(0).to_string())
            .arg(tls.join("cert.pem"))
            .arg(tls.join("key.pem"))
            .env("NODE_PATH", &modules)
            .env("VETTID_DYNAMO_ACCESS_KEYS", ACCESS_KEY_ID)
            .env("VETTID_DYNAMO_CONTROL", dir.join(CONTROL))
            .env("VETTID_EXIT_WITH_PID", std::process::id().to_string());
        if let Some(data) = data {
            cmd.arg(data);
        }
        let started = Instant::now();
        let mut child = Child::spawn("dynalite", cmd, &log);
        let port = loop {
            let text = child.log();
            if let Some(p) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on https://127.0.0.1:"))
            {
                break p.trim().parse::<u16>().expect("port");
            }
            assert!(
                child.running() && started.elapsed() < Duration::from_secs(20),
                "dynalite did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Self {
            child,
            port,
            ca_pem: dir.join("dynamodb-ca").join("ca.pem"),
            started_in: started.elapsed(),
            dir: dir.to_owned(),
            tls: tls.to_owned(),
            data: data.map(Path::to_owned),
        }
    }

    /// Sets the launcher's fault switch (`VETTID_DYNAMO_CONTROL`, read at every request):
    /// `Some("throttle")`, `Some("deny")`, `Some("delay MS")`; `None` answers normally again.
    /// The file is replaced whole (written aside, renamed), so a request never reads half of it.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn set_fault(&self, mode: Option<&str>) {
        let path = self.dir.join(CONTROL);
        let aside = self.dir.join(format!("{CONTROL}.new"));
        std::fs::write(&aside, mode.unwrap_or_default()).expect("write the stand-in's switch");
        std::fs::rename(&aside, &path).expect("swap the stand-in's switch");
    }

    /// SIGKILLs it (its connections reset; tables on disk, if any, stay).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again on the same port with the same data (after [`Dynamo::kill`]).
    pub fn restart(&mut self) {
        self.child.kill();
        let again = Self::start_with(&self.dir, &self.tls, self.data.as_deref(), Some(self.port));
        *self = again;
    }

    /// The endpoint as the enclave is told it (`https://HOST:PORT`).
    pub fn endpoint_url(&self) -> String {
        format!("https://{HOST}:{}", self.port)
    }

    /// `HOST:PORT`, as the parent's tunnel allow-list names it.
    pub fn authority(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The directory holding its CA and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client signing as the dedicated principal ([`ACCESS_KEY_ID`]).
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        self.client_as(ACCESS_KEY_ID)
    }

    /// A client signing with `access_key_id`.
    pub fn client_as(&self, access_key_id: &str) -> aws_sdk_dynamodb::Client {
        client_for(&self.endpoint_url(), &self.ca_pem, access_key_id)
    }

    /// Creates table `name` (the trusted store's schema) and returns its ARN.
    pub async fn create_table(&self, name: &str) -> String {
        create_table(&self.client(), name).await;
        table_arn(name)
    }

    /// [`Dynamo::create_table`] from synchronous code (a thread with its own runtime).
    pub fn create_table_blocking(&self, name: &str) -> String {
        let client = self.client();
        let owned = name.to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(create_table(&client, &owned))
        })
        .join()
        .expect("create table");
        table_arn(name)
    }
}

/// Creates `name` with the trusted store's schema: `pk` (S) hash key, on demand.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}

/// A plain aws-sdk-dynamodb client for `endpoint` (`https://HOST:PORT`), trusting `ca_pem`, every
/// name resolved to 127.0.0.1, one attempt per call (tests see each answer as it is).
pub fn client_for(endpoint: &str, ca_pem: &Path, access_key_id: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_key_id,
            SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .http_client(crate::kms::loopback_http(ca_pem))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The host's path to the table, as a TCP relay in front of a stand-in that a test can sever: the
/// parent's tunnel connects here (the endpoint's port is this one), and the TLS the enclave speaks
/// passes through untouched. While [`Cut::set`] is on, every open connection is reset (RST: SO_LINGER 0)
/// and every new one is accepted and reset at once, as a host dropping the table's traffic does.
pub struct Cut {
    /// The port the parent's tunnel connects to.
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cut {
    /// A relay on a free loopback port to `127.0.0.1:upstream`, on a thread of its own (its own
    /// runtime, so it relays while the test blocks).
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start(upstream: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("relay address").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("relay runtime")
                .block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("relay listener");
                    tokio::select! {
                        () = relay(listener, upstream, watch) => {}
                        _ = stopped => {}
                    }
                });
        });
        Self {
            port,
            cut,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Severs (`true`) or restores (`false`) the path.
    pub fn set(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn relay(
    listener: tokio::net::TcpListener,
    upstream: u16,
    watch: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut watch = watch.clone();
        tokio::spawn(async move {
            // Reset, not closed: the far side sees a dropped path, not a clean end.
            let reset = |s: tokio::net::TcpStream| {
                let _ = s.set_zero_linger();
                drop(s);
            };
            if *watch.borrow() {
                return reset(client);
            }
            let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
            else {
                return reset(client);
            };
            let mut client = client;
            let severed = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                _ = watch.wait_for(|cut| *cut) => true,
            };
            if severed {
                reset(client);
                reset(server);
            }
        });
    }
}
