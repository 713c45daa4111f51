//! The pieces of the KMS end-to-end tests: the local KMS in-process, a tunnel speaking the parent's preamble,
//! counting credentials, and the enclave's KMS client wired to them.

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
/// The key every test seals under.
pub const KEY: &str = "vettid-test-key";

// === the local KMS, in-process ===

/// The local KMS on two loopback ports sharing one key store: HTTPS for the enclave, plain HTTP for the
/// test's own admin client (disable, enable, schedule deletion).
pub struct LocalKms {
    pub tls_port: u16,
    pub admin: aws_sdk_kms::Client,
    /// Holds the mock NSM root, the key file and the dev CA (`tls/ca.pem`).
    pub dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

impl LocalKms {
    /// Starts it trusting `nsm`'s root and allowing `nsm`'s PCR0; `ignore_recipient` imitates moto.
    pub async fn start(nsm: &MockNsm, dir: tempfile::TempDir, ignore_recipient: bool) -> Self {
        let root = dir.path().join("mock-root.pem");
        std::fs::write(&root, nsm.root_pem()).unwrap();
        let settings = vettid_local_kms::Settings {
            key_file: dir.path().join("keys.json"),
            attestation_root: Some(root),
            allow_pcr0: vec![pcr0_hex(nsm)],
            ignore_recipient,
            ensure_keys: vec![KEY.into(), "second-key".into()],
            tls_self_signed: Some(dir.path().join("tls")),
            tls_hostname: Some(HOST.into()),
            ..Default::default()
        };
        let config = vettid_local_kms::Config::from_settings(settings).unwrap();
        let tls = vettid_local_kms::tls::server_config(config.tls.as_ref().unwrap()).unwrap();
        let kms = Arc::new(vettid_local_kms::Kms::new(config).unwrap());
        let (stop, stopped) = watch::channel(false);
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = tls_listener.local_addr().unwrap().port();
        let admin = admin_client(plain_listener.local_addr().unwrap());
        tokio::spawn(vettid_local_kms::serve_tls(
            tls_listener,
            kms.clone(),
            Some(tls),
            until(stopped.clone()),
        ));
        tokio::spawn(vettid_local_kms::serve(plain_listener, kms, until(stopped)));
        Self {
            tls_port,
            admin,
            dir,
            _stop: stop,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

pub async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}

pub fn admin_client(addr: SocketAddr) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("admin", "admin", None, None, "test"))
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
}

impl TestCredentials {
    pub fn new(lifetime: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            fetches: AtomicUsize::new(0),
            lifetime,
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
        Box::pin(async move {
            Ok(AwsCredentials {
                access_key_id: format!("ASIATEST{n}"),
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
    pub key_id: &'static str,
    pub ca: Option<PathBuf>,
    pub credentials: Arc<TestCredentials>,
}

impl Setup {
    pub fn new(local: &LocalKms) -> Self {
        Self {
            endpoint_host: HOST,
            key_id: KEY,
            ca: Some(local.ca()),
            credentials: TestCredentials::new(Some(Duration::from_secs(3600))),
        }
    }

    pub async fn start(self, local: &LocalKms, tunnel: &Tunnel, nsm: MockNsm) -> Kms {
        let flags = KmsFlags {
            kms_endpoint: Some(format!("https://{}:{}", self.endpoint_host, local.tls_port)),
            kms_region: Some("us-east-1".into()),
            kms_key_id: Some(self.key_id.into()),
            kms_tunnel: Some(tunnel.address.clone()),
            kms_ca_file: self.ca,
            // The local KMS holds the endpoint's port on this loopback, so the forwarder takes a free one.
            kms_forward_port: Some(0),
        };
        let config = KmsConfig::from_flags(&flags).unwrap().unwrap();
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
