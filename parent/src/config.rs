//! Configuration: a TOML file (`/etc/vettid/parent.toml`), overridden by flags and environment.
//!
//! Parsed strictly (`deny_unknown_fields`: VettID v1 silently ignored misspelt keys, defect G28)
//! and validated in one pass that reports *every* problem at once, before anything is bound or
//! connected (STYLE rule 13). Tests build a [`Config`] from strings through [`Config::load`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vettid_link::Address;

pub use crate::kms::config::KmsConfig;
pub use crate::storage::config::{S3Config, StorageBackend, StorageConfig};

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// The problems found.
    pub problems: Vec<String>,
}

/// Values from flags and environment that replace file values when present.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--nats-url` / `NATS_URL`.
    pub nats_url: Option<String>,
    /// `--nats-creds`.
    pub nats_creds: Option<PathBuf>,
    /// `--enclave` / `VETTID_ENCLAVE_ADDR`.
    pub enclave_address: Option<String>,
    /// `--http-listen`.
    pub http_listen: Option<String>,
    /// `--enclave-id`.
    pub enclave_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct File {
    enclave_id: Option<String>,
    nats: NatsFile,
    enclave: EnclaveFile,
    http: HttpFile,
    limits: LimitsFile,
    attestation: AttestationFile,
    storage: crate::storage::config::StorageFile,
    kms: Option<crate::kms::config::KmsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AttestationFile {
    manifest: Option<PathBuf>,
    manifest_public_key: Option<PathBuf>,
    pcr_sets: Vec<PcrSetFile>,
    max_age_ms: Option<u64>,
    dev_mode: bool,
    dev_trust_root: Option<PathBuf>,
    dev_accept_any_pcrs: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PcrSetFile {
    id: String,
    pcr0: String,
    pcr1: String,
    pcr2: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NatsFile {
    url: String,
    credentials_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    require_tls: bool,
    queue_group: String,
    name: String,
    enrollment_stream: crate::stream::config::EnrollmentStreamFile,
}

impl Default for NatsFile {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            tls_ca_file: None,
            require_tls: false,
            queue_group: "vettid-enclave".into(),
            name: "vettid-parent".into(),
            enrollment_stream: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EnclaveFile {
    address: String,
    request_timeout_ms: u64,
    connect_timeout_ms: u64,
    reconnect_initial_ms: u64,
    reconnect_max_ms: u64,
    max_frame_len: usize,
}

impl Default for EnclaveFile {
    fn default() -> Self {
        Self {
            address: "vsock://16:5000".into(),
            request_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            reconnect_initial_ms: 50,
            reconnect_max_ms: 1_000,
            max_frame_len: vettid_protocol::DEFAULT_MAX_FRAME_LEN,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpFile {
    listen: String,
}

impl Default for HttpFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    max_in_flight: usize,
    shutdown_grace_ms: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Instance id for `Control.enclave.{id}.>` (production: `{region}-{instance}-{boot}`).
    pub enclave_id: String,
    /// NATS settings.
    pub nats: NatsConfig,
    /// Link to the enclave.
    pub enclave: EnclaveConfig,
    /// Where `/health`, `/ready`, `/metrics` listen.
    pub http_listen: SocketAddr,
    /// NATS messages handled at once; past this the parent stops pulling (back-pressure).
    pub max_in_flight: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// What the enclave must prove on every connect.
    pub attestation: AttestationConfig,
    /// Where the enclave's objects are stored.
    pub storage: StorageConfig,
    /// The enclave's KMS path (tunnel listener, allow-list, credentials); `None` without a
    /// `[kms]` section: nothing listens and credential requests are refused.
    pub kms: Option<KmsConfig>,
}

/// Which enclaves the parent will serve. Checked on every (re)connect; until the check passes the
/// parent forwards nothing. Exactly one source of accepted PCRs is required: failing closed is the
/// point (an empty policy is an error in the verifier too).
#[derive(Debug, Clone)]
pub struct AttestationConfig {
    /// Where accepted PCR sets come from.
    pub pcrs: PcrSource,
    /// Maximum age of the enclave's document.
    pub max_age: Duration,
    /// Dev only: an extra trusted root (the mock NSM's `mock-root.pem`).
    pub dev_trust_root: Option<PathBuf>,
}

/// Source of accepted PCR sets.
#[derive(Debug, Clone)]
pub enum PcrSource {
    /// A signed PCR manifest and the P-256 public key (PEM) it must verify with.
    Manifest {
        /// Manifest JSON.
        path: PathBuf,
        /// Signer's public key.
        public_key: PathBuf,
    },
    /// An explicit list of (id, pcr0, pcr1, pcr2) hex values.
    Sets(Vec<(String, String, String, String)>),
    /// Dev only: any PCRs (the chain, signature, freshness and nonce are still checked).
    DevAny,
}

/// NATS connection settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma separated.
    pub url: String,
    /// `.creds` file (JWT + seed), if any.
    pub credentials_file: Option<PathBuf>,
    /// Extra CA for TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Refuse plaintext connections.
    pub require_tls: bool,
    /// Queue group shared by every host, so each message is handled once.
    pub queue_group: String,
    /// Connection name shown by the server.
    pub name: String,
    /// `[nats.enrollment_stream]`: the `ENROLLMENT` stream v1 clients need ([`crate::stream`]).
    pub enrollment_stream: crate::stream::EnrollmentStreamConfig,
}

/// Enclave link settings.
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// Enclave address (`vsock://16:5000` in production).
    pub address: Address,
    /// How long a forwarded request may take.
    pub request_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay (kept short: service must resume within seconds).
    pub reconnect_max: Duration,
    /// Largest frame accepted from the enclave.
    pub max_frame_len: usize,
}

impl Config {
    /// Parses `file` (the TOML text, or None for defaults), applies `overrides`, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn load(file: Option<&str>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut f: File = match file.map(toml::from_str).transpose() {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("config file: {}", e.message())],
                })
            }
        };
        if let Some(v) = &overrides.nats_url {
            f.nats.url = v.clone();
        }
        if let Some(v) = &overrides.nats_creds {
            f.nats.credentials_file = Some(v.clone());
        }
        if let Some(v) = &overrides.enclave_address {
            f.enclave.address = v.clone();
        }
        if let Some(v) = &overrides.http_listen {
            f.http.listen = v.clone();
        }
        if let Some(v) = &overrides.enclave_id {
            f.enclave_id = Some(v.clone());
        }

        if !(f.nats.url.starts_with("nats://") || f.nats.url.starts_with("tls://")) {
            problems.push(format!(
                "nats.url {:?}: expected nats://HOST:PORT or tls://HOST:PORT",
                f.nats.url
            ));
        }
        for (name, path) in [
            ("nats.credentials_file", &f.nats.credentials_file),
            ("nats.tls_ca_file", &f.nats.tls_ca_file),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    problems.push(format!("{name} {}: no such file", p.display()));
                }
            }
        }
        if !valid_token(&f.nats.queue_group) {
            problems.push(format!(
                "nats.queue_group {:?}: must be a non-empty NATS token",
                f.nats.queue_group
            ));
        }
        let address = f
            .enclave
            .address
            .parse::<Address>()
            .map_err(|e| problems.push(format!("enclave.address: {e}")))
            .ok();
        let ms = |name: &str, v: u64, lo: u64, hi: u64, problems: &mut Vec<String>| {
            if !(lo..=hi).contains(&v) {
                problems.push(format!("{name} = {v}: must be between {lo} and {hi}"));
            }
            Duration::from_millis(v)
        };
        let request_timeout = ms(
            "enclave.request_timeout_ms",
            f.enclave.request_timeout_ms,
            1,
            300_000,
            &mut problems,
        );
        let connect_timeout = ms(
            "enclave.connect_timeout_ms",
            f.enclave.connect_timeout_ms,
            1,
            60_000,
            &mut problems,
        );
        let reconnect_initial = ms(
            "enclave.reconnect_initial_ms",
            f.enclave.reconnect_initial_ms,
            1,
            60_000,
            &mut problems,
        );
        let reconnect_max = ms(
            "enclave.reconnect_max_ms",
            f.enclave.reconnect_max_ms,
            1,
            300_000,
            &mut problems,
        );
        if f.enclave.reconnect_initial_ms > f.enclave.reconnect_max_ms {
            problems.push("enclave.reconnect_initial_ms exceeds enclave.reconnect_max_ms".into());
        }
        if !(1024..=u32::MAX as usize).contains(&f.enclave.max_frame_len) {
            problems.push(format!(
                "enclave.max_frame_len = {}: must be at least 1024",
                f.enclave.max_frame_len
            ));
        }
        let http_listen = f
            .http
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                problems.push(format!("http.listen {:?}: expected IP:PORT", f.http.listen))
            })
            .ok();
        if !(1..=100_000).contains(&f.limits.max_in_flight) {
            problems.push(format!(
                "limits.max_in_flight = {}: must be between 1 and 100000",
                f.limits.max_in_flight
            ));
        }
        let shutdown_grace = ms(
            "limits.shutdown_grace_ms",
            f.limits.shutdown_grace_ms,
            0,
            600_000,
            &mut problems,
        );
        let enrollment_stream =
            crate::stream::config::validate(&f.nats.enrollment_stream, &mut problems);
        let attestation = attestation_config(&f.attestation, &mut problems);
        let storage =
            crate::storage::config::validate(&f.storage, f.enclave.max_frame_len, &mut problems);
        // `Some(None)`: the section is there but unusable (its problems are recorded).
        let kms = f
            .kms
            .as_ref()
            .map(|k| crate::kms::config::validate(k, &mut problems));
        let enclave_id = f.enclave_id.unwrap_or_else(vettid_link::dev_enclave_id);
        if !valid_token(&enclave_id) {
            problems.push(format!(
                "enclave_id {enclave_id:?}: must be a non-empty NATS token"
            ));
        }

        match (address, http_listen, attestation, storage, kms) {
            (Some(address), Some(http_listen), Some(attestation), Some(storage), kms)
                if problems.is_empty() && kms.as_ref().is_none_or(Option::is_some) =>
            {
                Ok(Config {
                    enclave_id,
                    nats: NatsConfig {
                        url: f.nats.url,
                        credentials_file: f.nats.credentials_file,
                        tls_ca_file: f.nats.tls_ca_file,
                        require_tls: f.nats.require_tls,
                        queue_group: f.nats.queue_group,
                        name: f.nats.name,
                        enrollment_stream,
                    },
                    enclave: EnclaveConfig {
                        address,
                        request_timeout,
                        connect_timeout,
                        reconnect_initial,
                        reconnect_max,
                        max_frame_len: f.enclave.max_frame_len,
                    },
                    http_listen,
                    max_in_flight: f.limits.max_in_flight,
                    shutdown_grace,
                    attestation,
                    storage,
                    kms: kms.flatten(),
                })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Validates the `[attestation]` section; `None` (with problems recorded) when it is unusable.
fn attestation_config(
    a: &AttestationFile,
    problems: &mut Vec<String>,
) -> Option<AttestationConfig> {
    let start = problems.len();
    let dev_needed = |what: &str, problems: &mut Vec<String>| {
        problems.push(format!(
            "attestation.{what} is a dev setting: it needs attestation.dev_mode = true"
        ))
    };
    if !a.dev_mode && a.dev_trust_root.is_some() {
        dev_needed("dev_trust_root", problems);
    }
    if !a.dev_mode && a.dev_accept_any_pcrs {
        dev_needed("dev_accept_any_pcrs", problems);
    }
    for (name, path) in [
        ("manifest", &a.manifest),
        ("manifest_public_key", &a.manifest_public_key),
        ("dev_trust_root", &a.dev_trust_root),
    ] {
        if let Some(p) = path {
            if !p.is_file() {
                problems.push(format!("attestation.{name} {}: no such file", p.display()));
            }
        }
    }
    let is_hex48 = |s: &str| s.len() == 96 && s.bytes().all(|b| b.is_ascii_hexdigit());
    for set in &a.pcr_sets {
        if set.id.is_empty() {
            problems.push("attestation.pcr_sets: a set has an empty id".into());
        }
        for (n, v) in [
            ("pcr0", &set.pcr0),
            ("pcr1", &set.pcr1),
            ("pcr2", &set.pcr2),
        ] {
            if !is_hex48(v) {
                problems.push(format!(
                    "attestation.pcr_sets[{}].{n}: expected 96 hex digits (SHA-384)",
                    set.id
                ));
            }
        }
    }
    let sources = usize::from(a.manifest.is_some() || a.manifest_public_key.is_some())
        + usize::from(!a.pcr_sets.is_empty())
        + usize::from(a.dev_accept_any_pcrs);
    if sources != 1 {
        problems.push(
            "attestation: configure exactly one of manifest + manifest_public_key, pcr_sets, \
             or (dev only) dev_accept_any_pcrs; the parent serves no enclave it cannot check"
                .into(),
        );
    }
    if a.manifest.is_some() != a.manifest_public_key.is_some() {
        problems
            .push("attestation.manifest and attestation.manifest_public_key go together".into());
    }
    let max_age_ms = a.max_age_ms.unwrap_or(300_000);
    if !(1_000..=3_600_000).contains(&max_age_ms) {
        problems.push(format!(
            "attestation.max_age_ms = {max_age_ms}: must be between 1000 and 3600000"
        ));
    }
    if a.dev_mode {
        tracing::warn!("attestation.dev_mode is on: this parent may trust a dev root or any PCRs; never in production");
    }
    if problems.len() > start {
        return None;
    }
    let pcrs = match (&a.manifest, &a.manifest_public_key) {
        (Some(path), Some(public_key)) => PcrSource::Manifest {
            path: path.clone(),
            public_key: public_key.clone(),
        },
        _ if !a.pcr_sets.is_empty() => PcrSource::Sets(
            a.pcr_sets
                .iter()
                .map(|s| (s.id.clone(), s.pcr0.clone(), s.pcr1.clone(), s.pcr2.clone()))
                .collect(),
        ),
        _ => PcrSource::DevAny,
    };
    Some(AttestationConfig {
        pcrs,
        max_age: Duration::from_millis(max_age_ms),
        dev_trust_root: a.dev_trust_root.clone(),
    })
}

/// A NATS subject token: no dots, spaces or wildcards.
fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.contains(['.', ' ', '*', '>', '\t', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCRS: &str = "[[attestation.pcr_sets]]\nid = \"v1\"\npcr0 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\npcr1 = \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\npcr2 = \"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"\n";

    #[test]
    fn without_an_attestation_policy_the_parent_refuses_to_start() {
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("attestation: configure exactly one"),
            "{err}"
        );
    }

    #[test]
    fn dev_attestation_settings_need_dev_mode() {
        let err = Config::load(
            Some("[attestation]\ndev_accept_any_pcrs = true\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("needs attestation.dev_mode"),
            "{err}"
        );
        let ok = Config::load(
            Some("[attestation]\ndev_mode = true\ndev_accept_any_pcrs = true\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert!(matches!(ok.attestation.pcrs, PcrSource::DevAny));
        let err = Config::load(
            Some("[attestation]\nmanifest = \"/nonexistent.json\"\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("go together") && err.to_string().contains("no such file"),
            "{err}"
        );
        let bad = PCRS.replace("aaaa", "zz");
        let err = Config::load(Some(&bad), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("96 hex digits"), "{err}");
    }

    #[test]
    fn defaults_are_valid_and_production_shaped() {
        let c = Config::load(Some(PCRS), &Overrides::default()).unwrap();
        assert_eq!(
            c.enclave.address,
            Address::Vsock {
                cid: 16,
                port: 5000
            }
        );
        assert_eq!(c.nats.queue_group, "vettid-enclave");
        assert!(c.enclave_id.starts_with("dev-"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file =
            "[nats]\nurl = \"nats://10.0.0.1:4222\"\n[enclave]\naddress = \"tcp://127.0.0.1:1\"\n";
        let o = Overrides {
            nats_url: Some("nats://127.0.0.1:9".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&format!("{file}{PCRS}")), &o).unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:9");
        assert_eq!(c.enclave.address.to_string(), "tcp://127.0.0.1:1");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::load(Some("[nats]\nurll = \"x\"\n"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Config::load(Some("handlers = 1\n"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = r#"
            enclave_id = "a.b"
            [nats]
            url = "http://x"
            credentials_file = "/nonexistent/nats.creds"
            queue_group = ""
            [enclave]
            address = "vsock://x"
            request_timeout_ms = 0
            reconnect_initial_ms = 5000
            reconnect_max_ms = 10
            [http]
            listen = "localhost"
            [limits]
            max_in_flight = 0
        "#;
        let err = Config::load(Some(file), &Overrides::default()).unwrap_err();
        assert!(err.problems.len() >= 9, "{err}");
        for needle in [
            "nats.url",
            "credentials_file",
            "queue_group",
            "enclave.address",
            "request_timeout_ms",
            "reconnect_initial_ms",
            "http.listen",
            "max_in_flight",
            "enclave_id",
        ] {
            assert!(
                err.to_string().contains(needle),
                "missing {needle} in {err}"
            );
        }
    }

    #[test]
    fn without_a_kms_section_nothing_listens() {
        let c = Config::load(Some(PCRS), &Overrides::default()).unwrap();
        assert!(c.kms.is_none());
    }

    #[test]
    fn kms_section_is_read_with_defaults() {
        let c = Config::load(Some(&format!("{PCRS}[kms]\n")), &Overrides::default()).unwrap();
        let kms = c.kms.unwrap();
        assert_eq!(kms.tunnel_listen.to_string(), "vsock://any:8000");
        assert!(kms.allow.is_empty(), "empty allow-list refuses everything");
        assert_eq!(kms.max_tunnels, crate::kms::config::DEFAULT_MAX_TUNNELS);

        let file = format!(
            "{PCRS}[kms]\ntunnel_listen = \"tcp://127.0.0.1:0\"\n\
             allow = [\"KMS.us-east-1.amazonaws.com:443\", \"127.0.0.1:4566\"]\n\
             connect_timeout_ms = 250\nmax_tunnels = 3\n"
        );
        let kms = Config::load(Some(&file), &Overrides::default())
            .unwrap()
            .kms
            .unwrap();
        let allow: Vec<String> = kms.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["127.0.0.1:4566", "kms.us-east-1.amazonaws.com:443"]);
        assert_eq!(kms.connect_timeout, Duration::from_millis(250));
        assert_eq!(kms.max_tunnels, 3);
    }

    #[test]
    fn bad_kms_settings_are_all_reported() {
        let file = format!(
            "{PCRS}[kms]\ntunnel_listen = \"vsock://16\"\n\
             allow = [\"*.amazonaws.com:443\", \"kms.amazonaws.com\", \"kms.amazonaws.com:0\", \
             \"kms.amazonaws.com:70000\", \"kms amazonaws.com:443\", \"\", \"[::1]:443\", \
             \"a.com:443\", \"A.com:443\"]\n\
             connect_timeout_ms = 0\nmax_tunnels = 0\n"
        );
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        let text = err.to_string();
        for needle in [
            "kms.tunnel_listen",
            "\"*.amazonaws.com:443\": wildcards are not allowed",
            "\"kms.amazonaws.com\": expected HOST:PORT",
            "\"kms.amazonaws.com:0\": port must be",
            "\"kms.amazonaws.com:70000\": port must be",
            "\"kms amazonaws.com:443\": host must be",
            "\"\": expected HOST:PORT",
            "\"[::1]:443\": host must be",
            "\"A.com:443\": listed twice",
            "kms.connect_timeout_ms = 0",
            "kms.max_tunnels = 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in {err}");
        }
        assert_eq!(err.problems.len(), 11, "{err}");
    }

    #[test]
    fn kms_resolve_pins_allowed_hosts_only() {
        let file = format!(
            "{PCRS}[kms]\nallow = [\"kms.vettid.test:4443\"]\n\
             resolve = {{ \"KMS.vettid.test\" = \"127.0.0.1\" }}\n"
        );
        let kms = Config::load(Some(&file), &Overrides::default())
            .unwrap()
            .kms
            .unwrap();
        assert_eq!(
            kms.resolve.get("kms.vettid.test").map(ToString::to_string),
            Some("127.0.0.1".into())
        );
        let file = format!(
            "{PCRS}[kms]\nallow = [\"kms.vettid.test:4443\"]\n\
             resolve = {{ \"other.test\" = \"127.0.0.1\", \"kms.vettid.test\" = \"nope\" }}\n"
        );
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err
            .to_string()
            .contains("not the host of any kms.allow entry"));
        assert!(err.to_string().contains("not an IP address"));
    }

    #[test]
    fn unknown_kms_keys_are_refused() {
        let file = format!("{PCRS}[kms]\nallowed = [\"kms.amazonaws.com:443\"]\n");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let file = format!("{PCRS}[kms]\nallow = \"kms.amazonaws.com:443\"\n");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn malformed_toml_is_a_clear_error() {
        let err = Config::load(Some("[nats\nurl="), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid configuration"),
            "{err}"
        );
        let err = Config::load(
            Some("[limits]\nmax_in_flight = \"many\""),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("max_in_flight") || err.to_string().contains("invalid type"),
            "{err}"
        );
    }
}
