//! The JSON around app envelopes: a decrypted plaintext read as an object, and base64 for
//! replies. Request fields are typed ([`super::request`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ClientError;

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
