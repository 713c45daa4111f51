//! A local KMS for end-to-end tests: `vettid-local-kms` over TLS for `localhost`, trusting the dev
//! enclave's mock NSM root and (by default) exactly this build's enclave PCR0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::proc::{bin_path, free_port, wait_tcp, Child};

/// The KMS host name: TLS verifies it in the enclave; the parent pins it to 127.0.0.1
/// (`kms.resolve`), as it is in no DNS.
pub const HOST: &str = "kms.vettid.test";

/// The key id the vault uses in tests (KMS key ids are UUIDs).
pub const KEY_ID: &str = "5a1e0c2b-7d4f-4e8a-9b3c-0f6d2e1a4c7b";

/// The account the local KMS keeps its keys in.
pub const ACCOUNT: &str = "000000000000";

/// `--kms-key-id`: the key's full ARN (aliases and bare ids are refused by the enclave).
pub fn key_arn() -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}")
}

/// The PCR0 of a neighbouring release the enclave is told to trust (`--kms-policy-pcr0`), so
/// policies that list it next to this build's PCR0 (a rolling upgrade) or instead of it (a policy
/// that denies this build) pass the enclave's policy check and are judged by KMS.
pub fn neighbour_pcr0() -> String {
    "ab".repeat(48)
}

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
    /// A second process over the same key file that ignores Recipient and key policies (like
    /// moto), for tests that must read a blob's plaintext to prove where it went.
    pub twin: Child,
    twin_port: u16,
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
        let child = Self::spawn(dir, port, &opts, false);
        assert!(
            wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(10)),
            "local KMS did not listen: {}",
            child.log()
        );
        // After the first one created the key, so the twin loads it.
        let twin_port = free_port();
        let twin = Self::spawn(dir, twin_port, &opts, true);
        assert!(
            wait_tcp(&format!("127.0.0.1:{twin_port}"), Duration::from_secs(10)),
            "local KMS twin did not listen: {}",
            twin.log()
        );
        let mut kms = Self {
            child,
            twin,
            twin_port,
            port,
            ca_pem: dir.join("kms-tls").join("ca.pem"),
            dir: dir.to_owned(),
            opts,
        };
        kms.wait_ready();
        kms
    }

    fn spawn(dir: &Path, port: u16, opts: &KmsOptions, twin: bool) -> Child {
        // Also creates the mock NSM root the KMS trusts, before the enclave starts.
        let own = dev_enclave_pcr0(dir);
        let pcr0s = opts.allow_pcr0.clone().unwrap_or_else(|| vec![own]);
        let mut cmd = Command::new(bin_path("vettid-local-kms"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--key-file")
            .arg(dir.join("kms-keys.json"))
            .arg("--account")
            .arg(ACCOUNT)
            .arg("--ensure-key")
            .arg(KEY_ID)
            // The key's default policy then lets only an attested enclave with an allowed PCR0
            // obtain material (what the enclave's policy check requires).
            .arg(if twin {
                "--ignore-recipient"
            } else {
                "--require-recipient"
            })
            .arg("--attestation-root")
            .arg(dir.join("mock-root.pem"))
            .arg("--tls-self-signed")
            .arg(dir.join("kms-tls"))
            .arg("--tls-hostname")
            .arg(HOST);
        for p in pcr0s {
            cmd.arg("--allow-pcr0").arg(p);
        }
        let (name, log) = if twin {
            ("vettid-local-kms-twin", "kms-twin.log")
        } else {
            ("vettid-local-kms", "kms.log")
        };
        Child::spawn(name, cmd, &dir.join(log))
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
        self.child = Self::spawn(&self.dir, self.port, &self.opts, false);
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
            &key_arn(),
            "--kms-policy-pcr0",
            &neighbour_pcr0(),
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
        self.parent_toml_with(tunnel, allow, &[])
    }

    /// [`KmsEndpoint::parent_toml`], also allowing `extra` (`HOST:PORT` of other endpoints the
    /// enclave reaches through the same tunnel, e.g. the trusted store's table), each host pinned
    /// to 127.0.0.1.
    pub fn parent_toml_with(
        &self,
        tunnel: &str,
        allow: Option<&[String]>,
        extra: &[String],
    ) -> String {
        let own = format!("{HOST}:{}", self.port);
        let mut allow: Vec<String> = allow
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| vec![own.clone()]);
        allow.extend(extra.iter().cloned());
        // The names are in no DNS: pin each allowed one to loopback.
        let mut pins: Vec<String> = Vec::new();
        if allow.contains(&own) {
            pins.push(format!("\"{HOST}\" = \"127.0.0.1\""));
        }
        for authority in extra {
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, _)| h);
            let pin = format!("\"{host}\" = \"127.0.0.1\"");
            if !pins.contains(&pin) {
                pins.push(pin);
            }
        }
        let resolve = if pins.is_empty() {
            String::new()
        } else {
            format!("resolve = {{ {} }}\n", pins.join(", "))
        };
        let allow = allow
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        // The table's connections share the tunnel with KMS: the cap docs/OPERATIONS.md asks
        // for with a trusted store (the default 64 is reached in the burst after throttling).
        let cap = if extra.is_empty() {
            String::new()
        } else {
            "max_tunnels = 128\n".to_owned()
        };
        format!(
            "[kms]\ntunnel_listen = \"{tunnel}\"\nallow = [{allow}]\nconnect_timeout_ms = 2000\n{cap}{resolve}"
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
        self.client_on(self.port)
    }

    /// A client of the [`LocalKms::twin`], which answers without Recipient or policy: only a
    /// test may read a vault's material this way.
    pub fn plaintext_client(&self) -> aws_sdk_kms::Client {
        self.client_on(self.twin_port)
    }

    fn client_on(&self, port: u16) -> aws_sdk_kms::Client {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("https://{HOST}:{port}"))
            .http_client(loopback_http(&self.ca_pem))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }
}

/// The HTTP client of every test SDK client: rustls (aws-lc) trusting only the CA at `ca_pem`
/// (a local server's), every name resolved to 127.0.0.1.
///
/// # Panics
/// If the CA cannot be read or the TLS context built.
pub fn loopback_http(ca_pem: &Path) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let ca =
        std::fs::read(ca_pem).unwrap_or_else(|e| panic!("read the CA {}: {e}", ca_pem.display()));
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ca);
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("TLS context"),
        )
        .build_with_resolver(Loopback)
}

/// Resolves every name to 127.0.0.1 (the local KMS's name is in no DNS).
#[derive(Debug, Clone)]
pub(crate) struct Loopback;

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
