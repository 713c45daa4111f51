//! A signed control command as it arrives, and the exact bytes its signature covers.
//!
//! The signed bytes are `DOMAIN || JCS(command without "signature")`: the RFC 8785 canonical form
//! (keys sorted by UTF-16 code units, no whitespace, integers only) of the whole object minus its
//! `signature` member, prefixed with [`DOMAIN`]. Nested objects (`target`, `params`) are covered
//! like everything else. VettID's TypeScript signer dropped nested keys while its Go verifier kept
//! them, so no command ever verified (G4); here there is exactly one rule, it is written down in
//! `docs/CONTROL.md`, and test vectors checked by an independent implementation pin it.
//!
//! Parsing is strict: duplicate keys, unknown members, floats and wrong types are refused before
//! any signature check, so the verifier can never read a different command than the signer wrote.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use vettid_attestation::jcs::{self, JcsError};

use super::Rejection;
use crate::router::OwnerSpace;

/// Domain-separation prefix of the signed bytes, so a control key's signature can never be
/// replayed as a signature over any other kind of message.
pub const DOMAIN: &[u8] = b"vettid-control-v1\n";

/// Largest control payload parsed (commands are a few hundred bytes).
pub const MAX_COMMAND_LEN: usize = 16 * 1024;

/// Longest `command_id`, `key_id` and `command`.
pub const MAX_ID_LEN: usize = 64;

/// Longest `issued_by` (an operator or service name, for the audit log).
pub const MAX_ISSUED_BY_LEN: usize = 128;

/// Every member of a signed command. Anything else is refused.
const MEMBERS: [&str; 9] = [
    "command_id",
    "command",
    "key_id",
    "target",
    "params",
    "issued_at",
    "expires_at",
    "issued_by",
    "signature",
];

/// Whom a command is for, from its signed `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `{"type":"global"}`.
    Global,
    /// `{"type":"enclave","id":ID}`.
    Enclave(String),
    /// `{"type":"user","id":GUID}`.
    User(OwnerSpace),
}

/// A structurally valid command whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Unique id, the replay-cache key.
    pub command_id: String,
    /// The command name, e.g. `vault.reset`.
    pub command: String,
    /// Which verifying key signed it.
    pub key_id: String,
    /// Whom it is for.
    pub target: Target,
    /// Command parameters (checked per command).
    pub params: Map<String, Value>,
    /// Signer's clock at signing, ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// End of validity, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Who signed it, for the audit log.
    pub issued_by: String,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// [`DOMAIN`] followed by the canonical form of everything but `signature`.
    pub signed_bytes: Vec<u8>,
}

/// The bytes a signer signs for `unsigned` (the command object without `signature`).
///
/// # Errors
/// [`JcsError`] if `unsigned` holds a number JCS cannot represent exactly.
pub fn signing_bytes(unsigned: &Value) -> Result<Vec<u8>, JcsError> {
    let canonical = jcs::canonicalize(unsigned)?;
    let mut out = Vec::with_capacity(DOMAIN.len() + canonical.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(canonical.as_bytes());
    Ok(out)
}

/// Parses a control payload strictly.
///
/// # Errors
/// [`Rejection::Malformed`] for anything but the exact shape, [`Rejection::Unsigned`] when the
/// signature is missing or empty, [`Rejection::BadSignature`] when it is not 64 base64 bytes.
pub fn decode(payload: &[u8]) -> Result<Envelope, Rejection> {
    if payload.len() > MAX_COMMAND_LEN {
        return Err(Rejection::Malformed);
    }
    let Ok(Value::Object(mut obj)) = jcs::parse_strict(payload) else {
        return Err(Rejection::Malformed);
    };
    if obj.keys().any(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(Rejection::Malformed);
    }
    let signature = match obj.remove("signature") {
        None => return Err(Rejection::Unsigned),
        Some(Value::String(s)) if s.is_empty() => return Err(Rejection::Unsigned),
        Some(Value::String(s)) => B64
            .decode(s)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or(Rejection::BadSignature)?,
        Some(_) => return Err(Rejection::Malformed),
    };
    let unsigned = Value::Object(obj);
    let signed_bytes = signing_bytes(&unsigned).map_err(|_| Rejection::Malformed)?;
    let Value::Object(obj) = unsigned else {
        return Err(Rejection::Malformed);
    };
    let text = |name: &str, max: usize| -> Result<String, Rejection> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(s.clone()),
            _ => Err(Rejection::Malformed),
        }
    };
    let time = |name: &str| {
        obj.get(name)
            .and_then(Value::as_u64)
            .ok_or(Rejection::Malformed)
    };
    let command_id = text("command_id", MAX_ID_LEN)?;
    let key_id = text("key_id", MAX_ID_LEN)?;
    if !is_id(&command_id) || !is_id(&key_id) {
        return Err(Rejection::Malformed);
    }
    let issued_by = text("issued_by", MAX_ISSUED_BY_LEN)?;
    if issued_by.chars().any(char::is_control) {
        return Err(Rejection::Malformed);
    }
    Ok(Envelope {
        command_id,
        command: text("command", MAX_ID_LEN)?,
        key_id,
        target: decode_target(obj.get("target"))?,
        params: match obj.get("params") {
            Some(Value::Object(p)) => p.clone(),
            _ => return Err(Rejection::Malformed),
        },
        issued_at_ms: time("issued_at")?,
        expires_at_ms: time("expires_at")?,
        issued_by,
        signature,
        signed_bytes,
    })
}

/// `{type, id?}` with exactly the members its type needs.
fn decode_target(value: Option<&Value>) -> Result<Target, Rejection> {
    let Some(Value::Object(t)) = value else {
        return Err(Rejection::Malformed);
    };
    let id = t.get("id").and_then(Value::as_str);
    match (t.get("type").and_then(Value::as_str), id, t.len()) {
        (Some("global"), None, 1) => Ok(Target::Global),
        (Some("enclave"), Some(id), 2) if is_enclave_id(id) => Ok(Target::Enclave(id.to_owned())),
        (Some("user"), Some(id), 2) => OwnerSpace::parse(id)
            .map(Target::User)
            .ok_or(Rejection::Malformed),
        _ => Err(Rejection::Malformed),
    }
}

/// `command_id` / `key_id`: 1 to [`MAX_ID_LEN`] of `[A-Za-z0-9._:-]` (UUIDs and readable names).
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// An enclave id: one NATS subject token (what the parent subscribes with).
pub fn is_enclave_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::router::MAX_OWNER_LEN
        && !s.contains(['.', ' ', '*', '>'])
        && !s.chars().any(char::is_control)
}
