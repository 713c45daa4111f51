//! The `[attestation]` section: which enclaves the parent serves, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct AttestationFile {
    pub(super) manifest: Option<PathBuf>,
    pub(super) manifest_public_key: Option<PathBuf>,
    pub(super) pcr_sets: Vec<PcrSetFile>,
    pub(super) max_age_ms: Option<u64>,
    pub(super) dev_mode: bool,
    pub(super) dev_trust_root: Option<PathBuf>,
    pub(super) dev_accept_any_pcrs: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PcrSetFile {
    pub(super) id: String,
    pub(super) pcr0: String,
    pub(super) pcr1: String,
    pub(super) pcr2: String,
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

/// Validates the `[attestation]` section; `None` (with problems recorded) when it is unusable.
pub(super) fn attestation_config(
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
