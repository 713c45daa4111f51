//! `/etc/vettid/enclave.toml`: the one file that says how big the enclave is and where it lives.
//!
//! The same file feeds `nitro-cli run-enclave` (through the supervisor) and
//! `/etc/nitro_enclaves/allocator.yaml` (through `vettid supervise-enclave --print-allocator-yaml`,
//! which `scripts/install.sh` calls), so the allocator reservation and the enclave size can no
//! longer drift apart (VettID v1 reserved 12 GiB / 6 vCPUs and ran 6 GiB / 2 vCPUs, G28).
//!
//! Parsed strictly (`deny_unknown_fields`) and validated in one pass that reports every problem.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vettid_link::Address;

/// Largest config file we read; a real one is well under 2 KiB.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// The CID our parent connects to (`vsock://16:5000`); 0–3 are reserved by vsock.
pub const DEFAULT_CID: u32 = 16;
/// Lowest CID an enclave may be given (0, 1, 2 are reserved and 3 is the parent).
const MIN_CID: u32 = 4;

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid enclave configuration {path}:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// The problems found.
    pub problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    eif_path: PathBuf,
    #[serde(default = "default_cid")]
    cid: u32,
    cpu_count: u32,
    memory_mib: u64,
    #[serde(default = "default_name")]
    enclave_name: String,
    #[serde(default = "default_address")]
    enclave_address: String,
    #[serde(default)]
    debug_mode: bool,
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
    #[serde(default = "default_probe_interval_ms")]
    probe_interval_ms: u64,
    #[serde(default = "default_probe_timeout_ms")]
    probe_timeout_ms: u64,
    #[serde(default = "default_max_missed_probes")]
    max_missed_probes: u32,
    #[serde(default = "default_start_timeout_ms")]
    start_timeout_ms: u64,
    #[serde(default = "default_terminate_timeout_ms")]
    terminate_timeout_ms: u64,
    #[serde(default = "default_nitro_cli_timeout_ms")]
    nitro_cli_timeout_ms: u64,
}

fn default_cid() -> u32 {
    DEFAULT_CID
}
fn default_name() -> String {
    "vettid-enclave".into()
}
fn default_address() -> String {
    "vsock://16:5000".into()
}
fn default_settle_ms() -> u64 {
    2_000
}
fn default_probe_interval_ms() -> u64 {
    5_000
}
fn default_probe_timeout_ms() -> u64 {
    3_000
}
fn default_max_missed_probes() -> u32 {
    3
}
fn default_start_timeout_ms() -> u64 {
    180_000
}
fn default_terminate_timeout_ms() -> u64 {
    30_000
}
fn default_nitro_cli_timeout_ms() -> u64 {
    120_000
}

/// Validated supervisor configuration.
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// The enclave image (`--eif-path`).
    pub eif_path: PathBuf,
    /// `--enclave-cid`; the parent's `enclave.address` must use the same CID.
    pub cid: u32,
    /// `--cpu-count`, and `cpu_count` in allocator.yaml.
    pub cpu_count: u32,
    /// `--memory`, and `memory_mib` in allocator.yaml.
    pub memory_mib: u64,
    /// `--enclave-name`: also how a stale enclave of ours is recognised.
    pub enclave_name: String,
    /// Where the readiness and liveness ping goes (`vsock://16:5000`; tests use `unix://`).
    pub enclave_address: Address,
    /// Asked for debug mode. Takes effect only together with `--debug-mode` on the command line.
    pub debug_mode: bool,
    /// Extra pause after a stale enclave is gone and before `run-enclave`, so the driver has
    /// returned its CPUs and huge pages (the terminate-then-relaunch race).
    pub settle: Duration,
    /// Time between liveness checks once running.
    pub probe_interval: Duration,
    /// How long one ping (connect, hello, ping) may take.
    pub probe_timeout: Duration,
    /// Consecutive failed pings tolerated before the enclave is declared lost.
    pub max_missed_probes: u32,
    /// How long the enclave may take from `run-enclave` to its first answered ping.
    pub start_timeout: Duration,
    /// How long a terminated enclave may take to leave `describe-enclaves`.
    pub terminate_timeout: Duration,
    /// How long one `nitro-cli` invocation may run (run-enclave includes the enclave boot).
    pub nitro_cli_timeout: Duration,
}

impl EnclaveConfig {
    /// Parses and validates `text` (the contents of `path`, used only in messages).
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            path: path.into(),
            problems,
        };
        let f: File = toml::from_str(text).map_err(|e| fail(vec![e.message().to_string()]))?;
        let mut problems = Vec::new();
        if !f.eif_path.is_absolute() {
            problems.push(format!(
                "eif_path {:?}: must be an absolute path",
                f.eif_path
            ));
        }
        if f.cid < MIN_CID {
            problems.push(format!("cid = {}: must be at least {MIN_CID}", f.cid));
        }
        // Whole cores only (an even count on x86 with SMT) is nitro-cli's own check: it knows
        // the instance type, we do not.
        if f.cpu_count == 0 {
            problems.push("cpu_count = 0: must be at least 1".into());
        }
        if f.memory_mib < 64 {
            problems.push(format!(
                "memory_mib = {}: must be at least 64",
                f.memory_mib
            ));
        }
        let name_ok = !f.enclave_name.is_empty()
            && f.enclave_name.len() <= 64
            && f.enclave_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            problems.push(format!(
                "enclave_name {:?}: 1-64 characters of [A-Za-z0-9_-]",
                f.enclave_name
            ));
        }
        let address = match f.enclave_address.parse::<Address>() {
            Ok(Address::Vsock { cid, .. }) if cid != f.cid => {
                problems.push(format!(
                    "enclave_address {:?}: its CID must equal cid = {}",
                    f.enclave_address, f.cid
                ));
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(format!("enclave_address: {e}"));
                None
            }
        };
        let mut ms = |name: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                problems.push(format!("{name} = {v}: must be between {lo} and {hi}"));
            }
            Duration::from_millis(v)
        };
        let settle = ms("settle_ms", f.settle_ms, 0, 60_000);
        let probe_interval = ms("probe_interval_ms", f.probe_interval_ms, 10, 600_000);
        let probe_timeout = ms("probe_timeout_ms", f.probe_timeout_ms, 10, 60_000);
        let start_timeout = ms("start_timeout_ms", f.start_timeout_ms, 100, 1_800_000);
        let terminate_timeout = ms("terminate_timeout_ms", f.terminate_timeout_ms, 100, 300_000);
        let nitro_cli_timeout = ms(
            "nitro_cli_timeout_ms",
            f.nitro_cli_timeout_ms,
            100,
            1_800_000,
        );
        if !(1..=100).contains(&f.max_missed_probes) {
            problems.push(format!(
                "max_missed_probes = {}: must be between 1 and 100",
                f.max_missed_probes
            ));
        }
        match address {
            Some(enclave_address) if problems.is_empty() => Ok(Self {
                eif_path: f.eif_path,
                cid: f.cid,
                cpu_count: f.cpu_count,
                memory_mib: f.memory_mib,
                enclave_name: f.enclave_name,
                enclave_address,
                debug_mode: f.debug_mode,
                settle,
                probe_interval,
                probe_timeout,
                max_missed_probes: f.max_missed_probes,
                start_timeout,
                terminate_timeout,
                nitro_cli_timeout,
            }),
            _ => Err(fail(problems)),
        }
    }

    /// The `/etc/nitro_enclaves/allocator.yaml` that reserves exactly what this enclave uses.
    pub fn allocator_yaml(&self) -> String {
        format!(
            "---\n# Written by scripts/install.sh from /etc/vettid/enclave.toml; edit that file instead.\n\
             memory_mib: {}\ncpu_count: {}\n",
            self.memory_mib, self.cpu_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        eif_path = "/opt/vettid/enclave/vettid.eif"
        cpu_count = 2
        memory_mib = 6144
    "#;

    #[test]
    fn defaults_fill_in_the_rest() {
        let c = EnclaveConfig::parse("t", GOOD).unwrap();
        assert_eq!(c.cid, 16);
        assert_eq!(
            c.enclave_address,
            Address::Vsock {
                cid: 16,
                port: 5000
            }
        );
        assert!(!c.debug_mode);
        assert!(c
            .allocator_yaml()
            .contains("memory_mib: 6144\ncpu_count: 2\n"));
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = EnclaveConfig::parse("t", &format!("{GOOD}\nmemroy_mib = 1")).unwrap_err();
        assert!(e.to_string().contains("memroy_mib"), "{e}");
    }

    #[test]
    fn every_problem_reported_at_once() {
        let text = r#"
            eif_path = "relative.eif"
            cid = 2
            cpu_count = 0
            memory_mib = 1
            probe_interval_ms = 0
            enclave_address = "vsock://17:5000"
        "#;
        let e = EnclaveConfig::parse("t", text).unwrap_err();
        assert_eq!(e.problems.len(), 6, "{e}");
    }
}
