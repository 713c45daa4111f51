//! The enclave's wall clock, read in one place.
//!
//! Vault records (enrolment and update times, PIN backoff), fleet key sessions and the freshness
//! of signed control commands all compare Unix milliseconds. They read them here, so every rule
//! sees the same clock the same way; [`crate::control::verify`] takes the reading as a parameter
//! so its time rules are tested without one.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (the enclave's clock, from the hypervisor); 0
/// for a clock set before the epoch, saturating far in the future.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
