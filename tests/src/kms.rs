//! A local KMS for end-to-end tests: `vettid-local-kms` over TLS for `localhost`, trusting the dev
//! enclave's mock NSM root and (by default) exactly this build's enclave PCR0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::proc::{bin_path, free_port, wait_tcp, Child};

/// The KMS host name: TLS verifies it in the enclave; the parent pins it to 127.0.0.1
/// (`kms.resolve`), as it is in no DNS.
pub const HOST: &str = "kms.vettid.test";

/// The key id the vault uses in tests.
pub const KEY_ID: &str = "vettid-test-vault-key";

/// How to run the local KMS.
#[derive(Debug, Clone, Default)]
pub struct KmsOptions {
    /// PCR0 values the key policy allows; `None` allows exactly this build's enclave PCR0.
    pub allow_pcr0: Option<Vec<String>>,
    /// The parent's tunnel allow-list; `None` allows exactly this KMS.
    pub parent_allow: Option<Vec<String>>,
}

/// A running local KMS.
pub struct LocalKms {
    /// The process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The CA certificate the enclave must trust.
    pub ca_pem: PathBuf,
    dir: PathBuf,
    opts: KmsOptions,
}

/// What `vettid-enclave --build-info --dev-dir DIR` reports for a dev build: its PCR0, and the
/// mock root it created in `dir`.
pub fn dev_enclave_pcr0(dir: &Path) -> String {
    let out = Command::new(bin_path("vettid-enclave"))
        .arg("--build-info")
        .arg("--dev-dir")
        .arg(dir)
        .output()
        .expect("run vettid-enclave --build-info");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("build info JSON");
    info["dev"]["pcr0"]
        .as_str()
        .expect("dev build info carries pcr0")
        .to_owned()
}

impl LocalKms {
    /// Starts the local KMS for a dev enclave whose mock root lives in `dir`.
    pub fn start(dir: &Path, opts: KmsOptions) -> Self {
        let port = free_port();
        let mut kms = Self {
            child: Self::spawn(dir, port, &opts),
            port,
            ca_pem: dir.join("kms-tls").join("ca.pem"),
            dir: dir.to_owned(),
            opts,
        };
        kms.wait_ready();
        kms
    }

    fn spawn(dir: &Path, port: u16, opts: &KmsOptions) -> Child {
        // Also creates the mock NSM root the KMS trusts, before the enclave starts.
        let own = dev_enclave_pcr0(dir);
        let pcr0s = opts.allow_pcr0.clone().unwrap_or_else(|| vec![own]);
        let mut cmd = Command::new(bin_path("vettid-local-kms"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--key-file")
            .arg(dir.join("kms-keys.json"))
            .arg("--ensure-key")
            .arg(KEY_ID)
            .arg("--attestation-root")
            .arg(dir.join("mock-root.pem"))
            .arg("--tls-self-signed")
            .arg(dir.join("kms-tls"))
            .arg("--tls-hostname")
            .arg(HOST);
        for p in pcr0s {
            cmd.arg("--allow-pcr0").arg(p);
        }
        Child::spawn("vettid-local-kms", cmd, &dir.join("kms.log"))
    }

    fn wait_ready(&mut self) {
        assert!(
            wait_tcp(&format!("127.0.0.1:{}", self.port), Duration::from_secs(10)),
            "local KMS did not listen: {}",
            self.child.log()
        );
    }

    /// Restarts it (same key file and CA) with new options, e.g. another PCR0 policy.
    pub fn restart(&mut self, opts: KmsOptions) {
        self.child.kill();
        self.opts = opts;
        self.child = Self::spawn(&self.dir, self.port, &self.opts);
        self.wait_ready();
    }

    /// Where it listens and what to trust: what other hosts need to share it.
    pub fn endpoint(&self) -> KmsEndpoint {
        KmsEndpoint {
            port: self.port,
            ca_pem: self.ca_pem.clone(),
        }
    }
}

/// How to reach a running local KMS.
#[derive(Debug, Clone)]
pub struct KmsEndpoint {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// CA certificate of its TLS server.
    pub ca_pem: PathBuf,
}

impl KmsEndpoint {
    /// The enclave's `--kms-*` flags for this KMS, tunnelled through `tunnel` (a parent address).
    pub fn enclave_args(&self, tunnel: &str) -> Vec<String> {
        [
            "--kms-endpoint",
            &format!("https://{HOST}:{}", self.port),
            "--kms-region",
            "us-east-1",
            "--kms-key-id",
            KEY_ID,
            "--kms-tunnel",
            tunnel,
            "--kms-ca-file",
            &self.ca_pem.display().to_string(),
            "--kms-forward-port",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The parent's `[kms]` section: a tunnel on `tunnel` allowing only this KMS.
    pub fn parent_toml(&self, tunnel: &str, allow: Option<&[String]>) -> String {
        let own = format!("{HOST}:{}", self.port);
        let allow: Vec<String> = allow
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| vec![own.clone()]);
        // The KMS name is in no DNS: pin it to loopback when it is allowed at all.
        let resolve = if allow.contains(&own) {
            format!("resolve = {{ \"{HOST}\" = \"127.0.0.1\" }}\n")
        } else {
            String::new()
        };
        let allow = allow
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[kms]\ntunnel_listen = \"{tunnel}\"\nallow = [{allow}]\nconnect_timeout_ms = 2000\n{resolve}"
        )
    }
}

/// Environment for the parent's default AWS credential chain (static in tests).
pub fn parent_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

impl LocalKms {
    /// An `aws-sdk-kms` client for this KMS (trusting its CA, `HOST` resolved to 127.0.0.1), for
    /// its admin operations (disable/enable) and for tests that recover a key to prove where it
    /// went.
    ///
    /// # Panics
    /// If the CA certificate cannot be read.
    pub fn client(&self) -> aws_sdk_kms::Client {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::tls::{
            self, rustls_provider::CryptoMode, TlsContext, TrustStore,
        };
        let ca = std::fs::read(&self.ca_pem).expect("read the local KMS's CA");
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(ca);
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .expect("TLS context"),
            )
            .build_with_resolver(Loopback);
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("https://{HOST}:{}", self.port))
            .http_client(http)
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }
}

/// Resolves every name to 127.0.0.1 (the local KMS's name is in no DNS).
#[derive(Debug, Clone)]
struct Loopback;

impl aws_smithy_runtime_api::client::dns::ResolveDns for Loopback {
    fn resolve_dns<'a>(
        &'a self,
        _name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::ready(Ok(vec![std::net::IpAddr::from([
            127, 0, 0, 1,
        ])]))
    }
}
