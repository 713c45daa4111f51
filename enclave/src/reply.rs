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
    /// A required payload field is missing or has the wrong type or encoding.
    #[error("missing or invalid field: {0}")]
    BadField(&'static str),
    /// `pin` with a `type` that is not `pin.setup`, `pin.unlock` or `pin.change`.
    #[error("unknown pin operation")]
    UnknownPinOp,
    /// `pin.setup` without a live attestation key for this user.
    #[error("attestation key required - did attestation complete?")]
    AttestationKeyRequired,
    /// An app envelope did not decrypt (wrong key, tampered, or not for this vault).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The decrypted payload is not the JSON object expected.
    #[error("invalid encrypted payload")]
    BadPlaintext,
    /// PIN is not 4-8 ASCII digits.
    #[error("PIN must be 4-8 digits")]
    InvalidPinFormat,
    /// `pin.setup` on a vault that is already enrolled (G5).
    #[error("vault already enrolled")]
    AlreadyEnrolled,
    /// No vault exists for this user.
    #[error("vault not enrolled")]
    NotEnrolled,
    /// The vault is locked (cold, or idle too long): `pin.unlock` first.
    #[error("vault is locked")]
    VaultLocked,
    /// Wrong PIN; `attempts_remaining` before lockout.
    #[error("invalid PIN")]
    InvalidPin {
        /// Attempts left before lockout.
        attempts_remaining: u32,
    },
    /// Too many recent failures: no PIN is evaluated before `retry_after_seconds`.
    #[error("too many PIN attempts, retry later")]
    PinBackoff {
        /// Seconds until the next attempt is evaluated.
        retry_after_seconds: u64,
    },
    /// The attempt limit was reached: only a signed `vault.reset` clears the vault.
    #[error("vault locked out after too many PIN attempts")]
    LockedOut,
    /// Unknown or already used UTK (single use, G3).
    #[error("unknown or already used UTK")]
    UtkInvalid,
    /// `credential.create` when a credential exists.
    #[error("credential already exists")]
    CredentialExists,
    /// A credential operation without a credential.
    #[error("no credential")]
    NoCredential,
    /// The password hash is not an acceptable Argon2id PHC string.
    #[error("invalid password hash")]
    InvalidPasswordHash,
    /// The presented password hash does not match the stored one.
    #[error("password hash mismatch")]
    PasswordMismatch,
    /// No secret with that id.
    #[error("secret not found")]
    SecretNotFound,
    /// The vault is at its secrets limit.
    #[error("too many secrets")]
    TooManySecrets,
    /// The vault changed on another host since this enclave read it: retry.
    #[error("vault changed on another host, retry")]
    StorageConflict,
    /// Vault storage is unavailable; nothing was changed.
    #[error("vault storage unavailable, nothing was changed")]
    StorageUnavailable,
    /// Storage did not answer in time: the change may or may not have been stored. A retry is
    /// safe (its UTK is single use, so a change cannot apply twice).
    #[error("vault storage did not answer in time; the change may have been stored, retry")]
    StorageTimeout,
    /// The parent's deadline for the request came before the work could start (the vault was
    /// busy, the Argon2 permits taken, KMS or storage slow): nothing was changed, retry.
    #[error("the request ran out of time before anything was changed, retry")]
    DeadlineExceeded,
    /// The stored vault is older than one this enclave has seen (a replayed object).
    #[error("stored vault is stale (rollback refused)")]
    StaleVault,
    /// The stored vault failed authentication or parsing.
    #[error("stored vault is corrupt")]
    CorruptVault,
    /// KMS refused or failed; the code names the KMS condition.
    #[error("{0}")]
    Kms(crate::sealing::SealError),
    /// Unsigned `enclave.vault.reset` (G6): only a signed control command may reset a vault.
    #[error("unsigned vault reset refused; use a signed Control.user.{{guid}}.vault.reset")]
    UnsignedReset,
    /// The change would make the stored vault larger than a load accepts: refused before it is
    /// written, so the vault stays loadable (nothing was changed).
    #[error("vault is full: the change would make it too large to store")]
    VaultFull,
    /// A PIN envelope this vault has already accepted (a recorded request replayed).
    #[error("request already used (replay refused)")]
    ReplayedRequest,
    /// A v1 envelope where this enclave accepts only v2 (`--accept-v1-pin-envelopes` is off).
    #[error("v1 envelopes are not accepted here; use the v2 envelope")]
    V1EnvelopeRefused,
    /// `credential.create` without the proof from `pin.setup` or the last `pin.unlock`.
    #[error("credential.create needs the create proof from pin.setup or pin.unlock")]
    CreateProofRequired,
    /// An internal failure (random source, serialisation). Nothing was changed.
    #[error("internal error")]
    Internal,
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
            ClientError::BadField(_) => "bad_field",
            ClientError::UnknownPinOp => "unknown_pin_op",
            ClientError::AttestationKeyRequired => "attestation_key_required",
            ClientError::DecryptionFailed => "decryption_failed",
            ClientError::BadPlaintext => "bad_plaintext",
            ClientError::InvalidPinFormat => "invalid_pin_format",
            ClientError::AlreadyEnrolled => "already_enrolled",
            ClientError::NotEnrolled => "not_enrolled",
            ClientError::VaultLocked => "vault_locked",
            ClientError::InvalidPin { .. } => "invalid_pin",
            ClientError::PinBackoff { .. } => "pin_backoff",
            ClientError::LockedOut => "locked_out",
            ClientError::UtkInvalid => "utk_invalid",
            ClientError::CredentialExists => "credential_exists",
            ClientError::NoCredential => "no_credential",
            ClientError::InvalidPasswordHash => "invalid_password_hash",
            ClientError::PasswordMismatch => "password_mismatch",
            ClientError::SecretNotFound => "secret_not_found",
            ClientError::TooManySecrets => "too_many_secrets",
            ClientError::StorageConflict => "storage_conflict",
            ClientError::StorageUnavailable => "storage_unavailable",
            ClientError::StorageTimeout => "storage_timeout",
            ClientError::DeadlineExceeded => "deadline_exceeded",
            ClientError::StaleVault => "stale_vault",
            ClientError::CorruptVault => "corrupt_vault",
            ClientError::Kms(e) => e.code(),
            ClientError::UnsignedReset => "unsigned_reset_refused",
            ClientError::VaultFull => "vault_full",
            ClientError::ReplayedRequest => "replayed_request",
            ClientError::V1EnvelopeRefused => "v1_envelope_refused",
            ClientError::CreateProofRequired => "create_proof_required",
            ClientError::Internal => "internal",
        }
    }

    /// Extra reply fields some errors carry.
    fn extras(self, body: &mut Map<String, Value>) {
        match self {
            ClientError::InvalidPin { attempts_remaining } => {
                body.insert("attempts_remaining".into(), attempts_remaining.into());
            }
            ClientError::PinBackoff {
                retry_after_seconds,
            } => {
                body.insert("retry_after_seconds".into(), retry_after_seconds.into());
            }
            _ => {}
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
    let mut body = error_body(err);
    decorate(&mut body, ctx);
    to_bytes(body)
}

/// An error's reply fields without the correlation fields: `{type:"error", error, code, …}`
/// (a v2 reply seals exactly this).
pub fn error_body(err: ClientError) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("type".into(), "error".into());
    body.insert("error".into(), err.to_string().into());
    body.insert("code".into(), err.code().into());
    err.extras(&mut body);
    body
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
