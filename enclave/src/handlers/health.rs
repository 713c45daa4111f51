//! `enclave.health` / `enclave.health.check`: liveness and capacity, with real values.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::state::EnclaveState;
use crate::sysinfo;

/// The health reply. Field names up to `version` are what VettID's Lambdas and runbooks read;
/// the rest help operators. A typed struct rather than a JSON map: health is polled often and
/// serialising a struct costs a fraction of building a map.
#[derive(Debug, Serialize)]
pub struct HealthReply {
    healthy: bool,
    /// Vaults held in memory (locked or unlocked).
    active_vaults: u64,
    /// How many vaults the enclave will hold in memory at most.
    total_vaults: usize,
    /// Vaults unlocked right now (DEK in memory).
    unlocked_vaults: u64,
    /// Whether a KMS sealer is configured (without one every vault operation fails).
    kms_configured: bool,
    /// The sealing key's policy self-check (`state`: pending, passed, refused, unavailable;
    /// with the code and reason when not passed). While not `passed`, nothing is sealed: new
    /// vaults cannot be set up. Absent without a KMS.
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_check: Option<crate::sealing::KeyCheckReport>,
    /// KMS call outcomes since start by stable code (`ok`, `KMSAccessDenied`, …).
    kms_outcomes: std::collections::BTreeMap<&'static str, u64>,
    /// The trusted state store: `mode` (`trusted-store` or `single-host`), its table, whether
    /// its sealed credentials are open, the last failure's code and calls by outcome.
    trusted_store: crate::trusted::TrustedReport,
    /// `serving`, or `draining` after a signed `drain` (new vault work refused).
    phase: &'static str,
    memory_used_mb: u64,
    memory_total_mb: u64,
    uptime_seconds: u64,
    version: &'static str,
    protocol_version: u16,
    process_rss_mb: u64,
    module_id: String,
    mock_nsm: bool,
    requests_in_flight: u64,
    peak_requests_in_flight: u64,
    requests_total: u64,
    request_errors_total: u64,
    attestation_keys_held: usize,
}

/// Builds the health reply from live values (memory figures at most one second old).
pub fn handle(state: &EnclaveState) -> HealthReply {
    let mem = sysinfo::memory();
    let stats = &state.stats;
    let (loaded, unlocked) = state.vaults.counts();
    HealthReply {
        healthy: true,
        active_vaults: loaded as u64,
        total_vaults: state.vaults.config().max_vaults,
        unlocked_vaults: unlocked as u64,
        kms_configured: state.sealer.is_some(),
        kms_key_check: state.sealer.as_ref().and_then(|s| s.key_check()),
        kms_outcomes: state.vaults.kms_outcomes(),
        trusted_store: state.trusted_report(),
        phase: match state.control.phase() {
            crate::control::Phase::Serving => "serving",
            crate::control::Phase::Draining => "draining",
        },
        memory_used_mb: mem.used_mb,
        memory_total_mb: mem.total_mb,
        uptime_seconds: state.started.elapsed().as_secs(),
        version: crate::VERSION,
        protocol_version: vettid_protocol::PROTOCOL_VERSION,
        process_rss_mb: mem.process_rss_mb,
        module_id: state.nsm_description.module_id.clone(),
        mock_nsm: state.nsm_description.is_mock,
        requests_in_flight: stats.in_flight.load(Ordering::Relaxed),
        peak_requests_in_flight: stats.peak_in_flight.load(Ordering::Relaxed),
        requests_total: stats.total.load(Ordering::Relaxed),
        request_errors_total: stats.errors.load(Ordering::Relaxed),
        attestation_keys_held: state.keys.len(),
    }
}
