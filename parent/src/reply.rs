//! The few replies the parent writes itself, when the enclave cannot answer. Same shape as the
//! enclave's errors (`{type:"error", error, code, timestamp}`) so clients need one parser; no
//! `event_id`, because finding it would mean reading the app payload, which the parent does not do.

use bytes::Bytes;

/// Why the parent answered instead of the enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentError {
    /// No live link to the enclave.
    EnclaveUnavailable,
    /// The enclave did not answer within the request timeout.
    EnclaveTimeout,
    /// The enclave (or this parent) is at its concurrency bound.
    Busy,
    /// The parent is shutting down.
    ShuttingDown,
    /// The enclave answered something that is not a NATS reply.
    BadEnclaveReply,
}

impl ParentError {
    /// Stable code, also the metrics `outcome` label.
    pub fn code(self) -> &'static str {
        match self {
            ParentError::EnclaveUnavailable => "enclave_unavailable",
            ParentError::EnclaveTimeout => "enclave_timeout",
            ParentError::Busy => "busy",
            ParentError::ShuttingDown => "shutting_down",
            ParentError::BadEnclaveReply => "bad_enclave_reply",
        }
    }

    fn message(self) -> &'static str {
        match self {
            ParentError::EnclaveUnavailable => "enclave unavailable, retry later",
            ParentError::EnclaveTimeout => "enclave did not answer in time",
            ParentError::Busy => "enclave busy, retry later",
            ParentError::ShuttingDown => "host shutting down, retry",
            ParentError::BadEnclaveReply => "internal error",
        }
    }

    /// The JSON error payload.
    pub fn to_json(self) -> Bytes {
        let body = serde_json::json!({
            "type": "error",
            "error": self.message(),
            "code": self.code(),
            "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
        Bytes::from(body.to_string())
    }
}
