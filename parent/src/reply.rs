//! The few replies the parent writes itself, when the enclave cannot answer. Same shape as the
//! enclave's errors (`{type:"error", error, code, event_id?, request_type?, timestamp}`) so
//! clients need one parser. `event_id` and `request_type` are there only for app requests
//! (`OwnerSpace.*.forVault.*`), whose `id` the parent reads to name the correlated subject
//! ([`crate::correlate`]); an app waiting there matches the answer by them.

use bytes::Bytes;

use crate::correlate::AppSubjects;

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

    /// The JSON error payload, with `event_id` and `request_type` when `app` has them.
    pub fn to_json(self, app: Option<&AppSubjects>) -> Bytes {
        let mut body = serde_json::json!({
            "type": "error",
            "error": self.message(),
            "code": self.code(),
            "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
        if let Some(app) = app {
            if let Some(id) = &app.event_id {
                body["event_id"] = id.as_str().into();
            }
            body["request_type"] = app.op.as_str().into();
        }
        Bytes::from(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_errors_carry_event_id_and_request_type() {
        let app = AppSubjects::of("OwnerSpace.u.forVault.pin", br#"{"id":"e-1"}"#);
        let v: serde_json::Value =
            serde_json::from_slice(&ParentError::EnclaveTimeout.to_json(app.as_ref())).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "enclave_timeout");
        assert_eq!(v["event_id"], "e-1");
        assert_eq!(v["request_type"], "pin");
        let v: serde_json::Value =
            serde_json::from_slice(&ParentError::Busy.to_json(None)).unwrap();
        assert!(v.get("event_id").is_none() && v.get("request_type").is_none());
    }
}
