//! `enclave.health` / `enclave.health.check`: liveness and capacity, with real values.

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};

use crate::state::EnclaveState;
use crate::sysinfo;

/// The health object. Field names up to `version` are what VettID's Lambdas and runbooks read.
pub fn handle(state: &EnclaveState) -> Map<String, Value> {
    let mem = sysinfo::memory();
    let stats = &state.stats;
    let d = &state.nsm_description;
    let body = json!({
        "healthy": true,
        // No vault contexts exist until the vault lands; this is the real count, not a stub.
        "active_vaults": 0,
        "total_vaults": state.config.max_vaults,
        "memory_used_mb": mem.used_mb,
        "memory_total_mb": mem.total_mb,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "version": crate::VERSION,
        "protocol_version": vettid_protocol::PROTOCOL_VERSION,
        "process_rss_mb": mem.process_rss_mb,
        "module_id": d.module_id,
        "mock_nsm": d.is_mock,
        "requests_in_flight": stats.in_flight.load(Ordering::Relaxed),
        "peak_requests_in_flight": stats.peak_in_flight.load(Ordering::Relaxed),
        "requests_total": stats.total.load(Ordering::Relaxed),
        "request_errors_total": stats.errors.load(Ordering::Relaxed),
        "attestation_keys_held": state.keys.len(),
    });
    match body {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
