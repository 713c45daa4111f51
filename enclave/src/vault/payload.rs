//! Reading app request payloads: the envelope `{id, type, payload, timestamp}` or a bare payload,
//! base64 fields, and the small JSON plaintexts inside app envelopes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ClientError;

/// Longest base64 field accepted (payloads are bounded by the NATS payload cap anyway).
const MAX_FIELD_LEN: usize = 256 * 1024;

/// The operation's input: `payload` when the request is an envelope, else the request itself.
pub fn body(request: &Map<String, Value>) -> &Map<String, Value> {
    match request.get("payload") {
        Some(Value::Object(p)) => p,
        _ => request,
    }
}

/// A required string field.
///
/// # Errors
/// [`ClientError::BadField`].
pub fn string<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ClientError> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_FIELD_LEN => Ok(s),
        _ => Err(ClientError::BadField(field)),
    }
}

/// An optional string field (absent or null is `None`; another type is an error).
///
/// # Errors
/// [`ClientError::BadField`].
pub fn opt_string<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a str>, ClientError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        _ => Err(ClientError::BadField(field)),
    }
}

/// A required standard-base64 field, decoded.
///
/// # Errors
/// [`ClientError::BadField`].
pub fn base64(obj: &Map<String, Value>, field: &'static str) -> Result<Vec<u8>, ClientError> {
    B64.decode(string(obj, field)?)
        .map_err(|_| ClientError::BadField(field))
}

/// A required base64 X25519 public key.
///
/// # Errors
/// [`ClientError::BadField`].
pub fn key32(obj: &Map<String, Value>, field: &'static str) -> Result<[u8; 32], ClientError> {
    base64(obj, field)?
        .try_into()
        .map_err(|_| ClientError::BadField(field))
}

/// Parses a decrypted plaintext as a JSON object. The parsed values are not zeroized by
/// serde_json; callers copy secrets into zeroizing containers at once and drop the map.
///
/// # Errors
/// [`ClientError::BadPlaintext`].
pub fn plaintext_object(plain: &Zeroizing<Vec<u8>>) -> Result<Map<String, Value>, ClientError> {
    match serde_json::from_slice(plain) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ClientError::BadPlaintext),
    }
}

/// Standard base64.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
