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
    /// A v2 request (or the plaintext it seals) has a field its operation does not take.
    #[error("unknown field for this operation")]
    UnknownField,
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
    /// The stored vault is not the one the trusted store pins (older, a fork, or withheld), or
    /// is older than one this enclave has seen: a replayed object.
    #[error("stored vault is stale (rollback refused)")]
    StaleVault,
    /// The trusted store (the vault's rollback anchor) could not be read or written in time:
    /// nothing the request did was acknowledged and a PIN attempt was not evaluated, but a
    /// change may still take effect (its object was written; the next load may adopt it), so it
    /// is in doubt like `storage_timeout`: a UTK it used may be spent. Retry.
    #[error("the trusted store is unavailable; nothing was acknowledged, retry")]
    TrustedStoreUnavailable,
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
            ClientError::UnknownField => "unknown_field",
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
            ClientError::TrustedStoreUnavailable => "trusted_store_unavailable",
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

/// Deepest nesting of arrays and objects a payload may have. Real payloads nest two deep (the v1
/// envelope `{id, payload: {…}}`), signed control commands three; 16 leaves room for any app
/// version and stops `[[[[…` long before serde_json's own limit of 128.
pub const MAX_PAYLOAD_DEPTH: usize = 16;

/// Most JSON values (object keys count as values) a payload may hold. Real payloads hold about a
/// dozen: a few fields whose values are long base64 strings. At the cap, the parsed tree costs at
/// most about 0.7 MiB of overhead (a one-key object is the dearest at ~640 bytes of B-tree node),
/// where 1 MiB of `{"a":[{"":0},…]}` cost 96 MiB unbounded.
pub const MAX_PAYLOAD_VALUES: usize = 1024;

/// Parses a payload as a JSON object, with the size and shape bounds.
///
/// The shape ([`MAX_PAYLOAD_DEPTH`], [`MAX_PAYLOAD_VALUES`]) is checked by a first pass that
/// builds nothing, so a payload over a bound costs no more than reading it.
///
/// # Errors
/// [`ClientError::PayloadTooLarge`] over [`MAX_PAYLOAD_LEN`] or [`MAX_PAYLOAD_VALUES`];
/// [`ClientError::InvalidJson`] for anything that is not a JSON object, or nested deeper than
/// [`MAX_PAYLOAD_DEPTH`].
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, ClientError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ClientError::PayloadTooLarge);
    }
    shape::check(payload)?;
    match serde_json::from_slice(payload) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ClientError::InvalidJson),
    }
}

/// The allocation-free first pass of [`parse_object`]: visits every value once, counting them
/// and tracking depth, and keeps nothing (strings are seen borrowed or through serde_json's
/// reused scratch buffer).
mod shape {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

    use super::{ClientError, MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_VALUES};

    /// Which bound stopped the pass, if any.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Over {
        No,
        Depth,
        Values,
    }

    struct Walk<'a> {
        depth: usize,
        values: &'a Cell<usize>,
        over: &'a Cell<Over>,
    }

    pub(super) fn check(payload: &[u8]) -> Result<(), ClientError> {
        let values = Cell::new(0);
        let over = Cell::new(Over::No);
        let walk = Walk {
            depth: 0,
            values: &values,
            over: &over,
        };
        let mut de = serde_json::Deserializer::from_slice(payload);
        let result = walk.deserialize(&mut de).and_then(|()| de.end());
        match (over.get(), result) {
            (Over::Values, _) => Err(ClientError::PayloadTooLarge),
            (Over::Depth, _) => Err(ClientError::InvalidJson),
            (Over::No, Ok(())) => Ok(()),
            (Over::No, Err(_)) => Err(ClientError::InvalidJson),
        }
    }

    impl<'a> Walk<'a> {
        /// Counts one value; refuses past the cap.
        fn count<E: de::Error>(&self) -> Result<(), E> {
            let n = self.values.get() + 1;
            self.values.set(n);
            if n > MAX_PAYLOAD_VALUES {
                self.over.set(Over::Values);
                return Err(E::custom("too many values"));
            }
            Ok(())
        }

        /// The walk one level down; refuses past the depth bound.
        fn inner<E: de::Error>(&self) -> Result<Walk<'a>, E> {
            if self.depth >= MAX_PAYLOAD_DEPTH {
                self.over.set(Over::Depth);
                return Err(E::custom("nested too deeply"));
            }
            Ok(Walk {
                depth: self.depth + 1,
                values: self.values,
                over: self.over,
            })
        }
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.count()
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.count()
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.count()
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.count()
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.count()
        }

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.count()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.count()?;
            while seq.next_element_seed(self.inner()?)?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.count()?;
            while map.next_key_seed(self.inner()?)?.is_some() {
                map.next_value_seed(self.inner()?)?;
            }
            Ok(())
        }
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

    #[test]
    fn payload_shape_is_bounded_before_a_value_is_built() {
        // Many small objects: 96x the payload once parsed, unbounded.
        let mut many = b"{\"a\":[".to_vec();
        for _ in 0..MAX_PAYLOAD_VALUES {
            many.extend_from_slice(b"{\"\":0},");
        }
        many.extend_from_slice(b"0]}");
        assert!(matches!(
            parse_object(&many),
            Err(ClientError::PayloadTooLarge)
        ));
        // Depth: 16 levels parse, 17 do not (serde_json alone allows 128).
        let nest = |levels: usize| {
            let mut s = "{\"a\":".repeat(levels - 1) + "{}";
            s.push_str(&"}".repeat(levels - 1));
            s
        };
        assert!(parse_object(nest(MAX_PAYLOAD_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_object(nest(MAX_PAYLOAD_DEPTH + 1).as_bytes()),
            Err(ClientError::InvalidJson)
        );
        assert_eq!(parse_object(&[b'['; 200]), Err(ClientError::InvalidJson));
        // A real-shaped payload with long strings is untouched by the bounds.
        let big = format!(
            "{{\"id\":\"r1\",\"payload\":{{\"v\":2,\"utk_id\":\"u\",\"sealed\":\"{}\"}}}}",
            "A".repeat(MAX_PAYLOAD_LEN - 100)
        );
        assert_eq!(parse_object(big.as_bytes()).unwrap().len(), 2);
        // Exactly at the value cap: an object holding 511 key/value pairs plus itself is 1023.
        let mut at = String::from("{");
        for i in 0..(MAX_PAYLOAD_VALUES - 1) / 2 {
            at.push_str(&format!("\"k{i}\":0,"));
        }
        at.pop();
        at.push('}');
        assert!(parse_object(at.as_bytes()).is_ok());
    }
}
