//! The server under test as a child process (killed on drop), an `aws-sdk-kms` client for it, and mock-NSM
//! attestation documents.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use vettid_nsm::{AttestationRequest, MockNsm, MockPcrs, Nsm};

/// How long the server may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A running `vettid-local-kms`, killed and reaped on drop.
pub struct Server {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// Its temporary directory (key file, roots).
    pub dir: tempfile::TempDir,
    /// Everything it wrote on stderr so far (for failure messages).
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server with `--key-file <dir>/keys.json` and `args`, in a fresh directory.
    pub fn start(args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), args)
    }

    /// Like [`Server::start`], in `dir` (which may already hold a key file or a root).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vettid-local-kms"))
            .arg("--key-file")
            .arg(dir.path().join("keys.json"))
            .args(args)
            .env("RUST_LOG", "vettid_local_kms=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vettid-local-kms");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Keeps draining stderr for the server's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("listening on http://")
                    .or_else(|| line.strip_prefix("listening on https://"))
                {
                    let _ = tx.send(addr.to_owned());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut server = Self {
            child: Some(child),
            port: 0,
            dir,
            log,
        };
        let addr = rx
            .recv_timeout(START_LIMIT)
            .unwrap_or_else(|_| panic!("server did not start:\n{}", server.log()));
        server.port = addr.rsplit(':').next().unwrap().parse().expect("port");
        server
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 5 s for `needle` to appear on the server's stderr (read by another thread).
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The key file path.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    /// A real AWS SDK client pointed at this server.
    pub fn client(&self) -> aws_sdk_kms::Client {
        client(self.port)
    }

    /// Sends a signal and waits up to `limit` for the exit status.
    pub fn stop(&mut self, signal: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An SDK client for `127.0.0.1:port` with static test credentials, region us-east-1, and bounded timeouts.
pub fn client(port: u16) -> aws_sdk_kms::Client {
    client_as(port, "test")
}

/// Like [`client`], signing with access key id `access_key_id` (`--credential-account` maps it to an account).
pub fn client_as(port: u16, access_key_id: &str) -> aws_sdk_kms::Client {
    let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(20))
        .build();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key_id, "test", None, None, "test"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .timeout_config(timeouts)
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// An SDK client for `https://host:port` that trusts only `ca_pem` and resolves only `host`, to 127.0.0.1.
pub fn https_client(host: &str, port: u16, ca_pem: &[u8]) -> aws_sdk_kms::Client {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ca_pem.to_vec());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        )
        .build_with_resolver(OneName(host.to_owned()));
    let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(20))
        .build();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("https://{host}:{port}"))
        .http_client(http)
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .timeout_config(timeouts)
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// Resolves one name to 127.0.0.1.
#[derive(Debug, Clone)]
struct OneName(String);

impl aws_smithy_runtime_api::client::dns::ResolveDns for OneName {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDnsError};
        if name == self.0 {
            DnsFuture::ready(Ok(vec![std::net::Ipv4Addr::LOCALHOST.into()]))
        } else {
            DnsFuture::ready(Err(ResolveDnsError::new(format!("unknown host {name}"))))
        }
    }
}

/// A mock NSM whose root lives in `root_dir` (so several mocks with different PCRs share one root).
pub fn mock_nsm(root_dir: &Path, measurement: &[u8]) -> MockNsm {
    MockNsm::load_or_create(root_dir, MockPcrs::from_measurement(measurement)).expect("mock NSM")
}

/// PCR0 of a mock, hex.
pub fn pcr0_hex(nsm: &MockNsm) -> String {
    hex::encode(nsm.pcrs().get(0).expect("PCR0"))
}

/// Writes the mock root next to it and returns the path (what `--attestation-root` takes).
pub fn root_pem(nsm: &MockNsm, dir: &Path) -> PathBuf {
    let path = dir.join("mock-root.pem");
    std::fs::write(&path, nsm.root_pem()).expect("write root");
    path
}

/// A `Recipient` whose document carries `spki`.
pub fn recipient(nsm: &MockNsm, spki: &[u8]) -> RecipientInfo {
    let document = nsm
        .attest(&AttestationRequest {
            nonce: Some(b"local-kms test".to_vec()),
            public_key: Some(spki.to_vec()),
            user_data: None,
        })
        .expect("attest");
    RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .attestation_document(Blob::new(document))
        .build()
}

/// The KMS error code (`__type`) of a failed SDK call.
pub fn code<E, R>(err: &aws_sdk_kms::error::SdkError<E, R>) -> String
where
    aws_sdk_kms::error::SdkError<E, R>: aws_sdk_kms::error::ProvideErrorMetadata,
{
    use aws_sdk_kms::error::ProvideErrorMetadata;
    err.code().unwrap_or("<no code>").to_owned()
}

/// Creates a key over the SDK and returns its id.
pub async fn create_key(client: &aws_sdk_kms::Client) -> String {
    let out = client
        .create_key()
        .description("test")
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata().expect("metadata").key_id().to_owned()
}
