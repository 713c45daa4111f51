//! The JSON shapes VettID clients expect on replies (reference §2.5, §10 items 7–9).
//!
//! Success: the handler's object plus `event_id` (the request's `id`), `request_type` (the op)
//! and `timestamp` (RFC 3339). Error: `{type:"error", error, code, event_id?, request_type?,
//! timestamp}`. Error texts are fixed strings chosen here, so nothing internal (paths, upstream
//! messages, crypto errors) can leak into a reply.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Map, Value};

/// Largest NATS payload the enclave will parse (NATS' own default max payload is 1 MiB).
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;

/// Correlation fields copied from a request into its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCtx {
    /// The request's top-level `id`, echoed as `event_id`.
    pub event_id: Option<String>,
    /// The op (`attestation`, `pin`, ...), echoed as `request_type` on app subjects.
    pub request_type: Option<String>,
}

impl ReplyCtx {
    /// Reads `id` from a request object (string, or number rendered as a string).
    pub fn from_request(request: Option<&Map<String, Value>>, request_type: Option<&str>) -> Self {
        let event_id = request.and_then(|o| o.get("id")).and_then(|id| match id {
            Value::String(s) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Self {
            event_id,
            request_type: request_type.map(str::to_owned),
        }
    }
}

/// Every error a client can see. Each has a fixed code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Payload is not a JSON object.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// Payload over [`MAX_PAYLOAD_LEN`].
    #[error("payload too large")]
    PayloadTooLarge,
    /// No `nonce` (or `payload.nonce`) string.
    #[error("nonce is required")]
    MissingNonce,
    /// `nonce` is not standard base64, or empty.
    #[error("nonce must be non-empty standard base64")]
    BadNonce,
    /// Decoded nonce longer than the NSM accepts.
    #[error("nonce exceeds 512 bytes")]
    NonceTooLarge,
    /// Subject not served.
    #[error("unknown subject")]
    UnknownSubject,
    /// Owner-space token is not a valid id.
    #[error("invalid owner space")]
    InvalidOwner,
    /// Known subject family, operation not implemented by this build.
    #[error("operation not supported")]
    NotSupported,
    /// A bound was hit (keys, concurrency); retry later.
    #[error("enclave busy, retry later")]
    Busy,
    /// The NSM failed to produce a document.
    #[error("attestation unavailable")]
    AttestationFailed,
    /// A signed control command was refused; the text names the reason.
    #[error("{0}")]
    ControlRejected(crate::control::Rejection),
    /// A `drain` command was accepted: new vault work goes to another enclave.
    #[error("enclave is draining, retry on another host")]
    Draining,
}

impl ClientError {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ClientError::InvalidJson => "invalid_json",
            ClientError::PayloadTooLarge => "payload_too_large",
            ClientError::MissingNonce => "missing_nonce",
            ClientError::BadNonce => "bad_nonce",
            ClientError::NonceTooLarge => "nonce_too_large",
            ClientError::UnknownSubject => "unknown_subject",
            ClientError::InvalidOwner => "invalid_owner",
            ClientError::NotSupported => "not_supported",
            ClientError::Busy => "busy",
            ClientError::AttestationFailed => "attestation_failed",
            ClientError::ControlRejected(_) => "control_rejected",
            ClientError::Draining => "draining",
        }
    }
}

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// What a handler answers: a JSON object, or a typed reply serialised without building a map.
#[derive(Debug)]
pub enum Body {
    /// A JSON object.
    Object(Map<String, Value>),
    /// The health reply.
    Health(Box<crate::handlers::health::HealthReply>),
}

impl From<Map<String, Value>> for Body {
    fn from(m: Map<String, Value>) -> Self {
        Body::Object(m)
    }
}

/// A typed reply with the correlation fields appended.
#[derive(serde::Serialize)]
struct Decorated<'a, T: serde::Serialize> {
    #[serde(flatten)]
    body: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_type: Option<&'a str>,
    timestamp: String,
}

/// Serialises a success body with the correlation fields added (keys the body already has win).
pub fn ok(body: Body, ctx: &ReplyCtx) -> Bytes {
    match body {
        Body::Object(mut map) => {
            decorate(&mut map, ctx);
            to_bytes(map)
        }
        Body::Health(h) => {
            let d = Decorated {
                body: &*h,
                event_id: ctx.event_id.as_deref(),
                request_type: ctx.request_type.as_deref(),
                timestamp: now_rfc3339(),
            };
            Bytes::from(serde_json::to_vec(&d).unwrap_or_default())
        }
    }
}

/// Serialises an error reply.
pub fn error(err: ClientError, ctx: &ReplyCtx) -> Bytes {
    let mut body = Map::new();
    body.insert("type".into(), "error".into());
    body.insert("error".into(), err.to_string().into());
    body.insert("code".into(), err.code().into());
    decorate(&mut body, ctx);
    to_bytes(body)
}

fn decorate(body: &mut Map<String, Value>, ctx: &ReplyCtx) {
    if let Some(id) = &ctx.event_id {
        body.entry("event_id").or_insert_with(|| id.clone().into());
    }
    if let Some(t) = &ctx.request_type {
        body.entry("request_type")
            .or_insert_with(|| t.clone().into());
    }
    body.entry("timestamp")
        .or_insert_with(|| now_rfc3339().into());
}

fn to_bytes(body: Map<String, Value>) -> Bytes {
    // Serialising a Map of JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&Value::Object(body)).unwrap_or_default())
}

/// Parses a payload as a JSON object, with the size bound.
///
/// # Errors
/// [`ClientError::PayloadTooLarge`] or [`ClientError::InvalidJson`].
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, ClientError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ClientError::PayloadTooLarge);
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ClientError::InvalidJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_v1_shape_and_fixed_text() {
        let ctx = ReplyCtx {
            event_id: Some("e1".into()),
            request_type: Some("attestation".into()),
        };
        let v: Value = serde_json::from_slice(&error(ClientError::MissingNonce, &ctx)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"], "nonce is required");
        assert_eq!(v["code"], "missing_nonce");
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["request_type"], "attestation");
        assert!(humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn event_id_comes_from_string_or_number_ids_only() {
        let o = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": "a"}))), None)
                .event_id
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": 7}))), None)
                .event_id
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": {"x":1}}))), None).event_id,
            None
        );
    }

    #[test]
    fn payload_parsing_rejects_non_objects_and_oversize() {
        assert_eq!(parse_object(b"[1]"), Err(ClientError::InvalidJson));
        assert_eq!(parse_object(b"{"), Err(ClientError::InvalidJson));
        assert_eq!(parse_object(b"\xff"), Err(ClientError::InvalidJson));
        assert_eq!(
            parse_object(&vec![b' '; MAX_PAYLOAD_LEN + 1]),
            Err(ClientError::PayloadTooLarge)
        );
        assert!(parse_object(b"{}").is_ok());
    }
}
