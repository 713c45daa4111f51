//! `enclave.dev.sleep` (dev builds only): holds a request for `ms` milliseconds (at most 10 s) so
//! tests can show that requests overlap inside the enclave.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::ClientError;

/// Longest sleep accepted.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// Sleeps, then answers `{slept_ms}`.
///
/// # Errors
/// [`ClientError::InvalidJson`] when `ms` is missing or too large.
pub async fn sleep(request: &Map<String, Value>) -> Result<Map<String, Value>, ClientError> {
    let ms = request
        .get("ms")
        .and_then(Value::as_u64)
        .filter(|ms| *ms <= MAX_SLEEP_MS);
    let ms = ms.ok_or(ClientError::InvalidJson)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let mut body = Map::new();
    body.insert("slept_ms".into(), ms.into());
    Ok(body)
}
