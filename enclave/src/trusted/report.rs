//! What the trusted store tells health: calls by outcome, the last failure, and the state of
//! its credentials and forwarder.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{TrustedError, TrustedStore};

/// What health shows about the trusted store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustedReport {
    /// `trusted-store` (this table) or `single-host` (no `--trusted-store-*`).
    pub mode: &'static str,
    /// The table ARN.
    pub table: Option<String>,
    /// The endpoint (`HOST:PORT`) as the parent reaches it.
    pub endpoint: Option<String>,
    /// Whether the sealed credentials are open now.
    pub credentials_loaded: bool,
    /// Whether the forwarder accepts connections.
    pub forwarder_running: bool,
    /// The last failure's code, and how long ago (ms).
    pub last_error: Option<&'static str>,
    /// Milliseconds since `last_error`.
    pub last_error_ago_ms: Option<u64>,
    /// Calls by outcome: `ok` or a [`TrustedError::code`].
    pub outcomes: BTreeMap<&'static str, u64>,
}

impl TrustedReport {
    /// The report of an enclave without a trusted store.
    pub fn single_host() -> Self {
        Self {
            mode: "single-host",
            table: None,
            endpoint: None,
            credentials_loaded: false,
            forwarder_running: false,
            last_error: None,
            last_error_ago_ms: None,
            outcomes: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) outcomes: BTreeMap<&'static str, u64>,
    pub(super) last_error: Option<(&'static str, Instant)>,
}

impl TrustedStore {
    /// What health shows.
    pub fn report(&self) -> TrustedReport {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        TrustedReport {
            mode: "trusted-store",
            table: Some(self.table.to_string()),
            endpoint: Some(self.endpoint.clone()),
            credentials_loaded: self.credentials.loaded(),
            forwarder_running: self.forwarder.is_running(),
            last_error: stats.last_error.map(|(code, _)| code),
            last_error_ago_ms: stats
                .last_error
                .map(|(_, at)| at.elapsed().as_millis() as u64),
            outcomes: stats.outcomes.clone(),
        }
    }

    /// Counts one call's outcome (a conflict is an answer, not a failure).
    pub(super) fn count<T>(
        &self,
        operation: &'static str,
        result: Result<T, TrustedError>,
    ) -> Result<T, TrustedError> {
        let code = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        tracing::debug!(operation, code, "trusted store call");
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats.outcomes.entry(code).or_insert(0) += 1;
        if let Err(e) = &result {
            if *e != TrustedError::Conflict {
                stats.last_error = Some((e.code(), Instant::now()));
            }
        }
        result
    }
}
