//! The Ed25519 keys allowed to sign control commands.
//!
//! They come from the file named by `--control-keys`, which is baked into the EIF with its path on
//! the kernel command line: both are measured (PCR0–2), so changing who may reset vaults changes
//! the enclave's PCRs and is visible to every app that checks them. The host cannot add a key.
//! VettID's parent held its key in an environment variable the Packer unit never set (G4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;

use super::wire::is_id;
use super::Rejection;

/// Most keys in the file: a handful of operators and services, plus rotation overlap.
pub const MAX_CONTROL_KEYS: usize = 32;

/// Largest keys file read.
pub const MAX_KEYS_FILE_LEN: usize = 64 * 1024;

/// Why the keys file was refused (start-up fails with EX_USAGE).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than [`MAX_KEYS_FILE_LEN`].
    #[error("keys file larger than {MAX_KEYS_FILE_LEN} bytes")]
    TooLarge,
    /// Not a JSON list of `{key_id, public_key_b64}` (duplicate and unknown fields refused).
    #[error("keys file is not a JSON list of {{key_id, public_key_b64}}: {0}")]
    Json(String),
    /// Empty list: omit `--control-keys` to disable control commands instead.
    #[error("keys file lists no keys")]
    Empty,
    /// More than [`MAX_CONTROL_KEYS`].
    #[error("keys file lists more than {MAX_CONTROL_KEYS} keys")]
    TooMany,
    /// A `key_id` outside `[A-Za-z0-9._:-]{1,64}`.
    #[error("invalid key_id {0:?}")]
    BadKeyId(String),
    /// Two entries with one `key_id`.
    #[error("duplicate key_id {0:?}")]
    DuplicateKeyId(String),
    /// `public_key_b64` is not 32 bytes of standard base64.
    #[error("key {0:?}: public_key_b64 is not a 32-byte Ed25519 key in standard base64")]
    BadPublicKey(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key_id: String,
    public_key_b64: String,
}

/// Verifying keys by id. Empty means control commands are disabled.
#[derive(Debug, Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, [u8; 32]>,
}

impl VerifyingKeys {
    /// No keys: every command is refused as [`Rejection::Disabled`].
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads and validates the keys file.
    ///
    /// # Errors
    /// [`KeyFileError`] naming the problem.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// Parses `[{"key_id": ..., "public_key_b64": ...}, ...]`.
    ///
    /// # Errors
    /// [`KeyFileError`] naming the problem.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyFileError> {
        if bytes.len() > MAX_KEYS_FILE_LEN {
            return Err(KeyFileError::TooLarge);
        }
        let value = vettid_attestation::jcs::parse_strict(bytes)
            .map_err(|e| KeyFileError::Json(e.to_string()))?;
        let entries: Vec<Entry> =
            serde_json::from_value(value).map_err(|e| KeyFileError::Json(e.to_string()))?;
        if entries.is_empty() {
            return Err(KeyFileError::Empty);
        }
        if entries.len() > MAX_CONTROL_KEYS {
            return Err(KeyFileError::TooMany);
        }
        let mut keys = HashMap::new();
        for e in entries {
            if !is_id(&e.key_id) {
                return Err(KeyFileError::BadKeyId(e.key_id));
            }
            let Some(public) = B64
                .decode(&e.public_key_b64)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                return Err(KeyFileError::BadPublicKey(e.key_id));
            };
            if keys.insert(e.key_id.clone(), public).is_some() {
                return Err(KeyFileError::DuplicateKeyId(e.key_id));
            }
        }
        Ok(Self { keys })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether control commands are disabled.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids, sorted (for the start-up log; public information).
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Checks `signature` over `message` with the key named `key_id`.
    ///
    /// # Errors
    /// [`Rejection::UnknownKey`] or [`Rejection::BadSignature`].
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> Result<(), Rejection> {
        let public = self.keys.get(key_id).ok_or(Rejection::UnknownKey)?;
        UnparsedPublicKey::new(&ED25519, public)
            .verify(message, signature)
            .map_err(|_| Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn keys_file_is_parsed_strictly() {
        let ok = format!(r#"[{{"key_id":"ops-1","public_key_b64":"{PK}"}}]"#);
        assert_eq!(VerifyingKeys::from_json(ok.as_bytes()).unwrap().len(), 1);
        let cases = [
            ("[]", "no keys"),
            (r#"{"key_id":"a"}"#, "not a list"),
            (
                &format!(r#"[{{"key_id":"a","public_key_b64":"{PK}","x":1}}]"#),
                "unknown field",
            ),
            (
                &format!(r#"[{{"key_id":"a","key_id":"b","public_key_b64":"{PK}"}}]"#),
                "duplicate member",
            ),
            (
                &format!(
                    r#"[{{"key_id":"a","public_key_b64":"{PK}"}},{{"key_id":"a","public_key_b64":"{PK}"}}]"#
                ),
                "duplicate key id",
            ),
            (r#"[{"key_id":"a","public_key_b64":"AAAA"}]"#, "short key"),
            (
                &format!(r#"[{{"key_id":"a b","public_key_b64":"{PK}"}}]"#),
                "bad id",
            ),
        ];
        for (json, why) in cases {
            assert!(VerifyingKeys::from_json(json.as_bytes()).is_err(), "{why}");
        }
    }

    #[test]
    fn unknown_key_and_bad_signature_are_told_apart() {
        let ok = format!(r#"[{{"key_id":"ops-1","public_key_b64":"{PK}"}}]"#);
        let keys = VerifyingKeys::from_json(ok.as_bytes()).unwrap();
        assert_eq!(
            keys.verify("ops-2", b"m", &[0; 64]),
            Err(Rejection::UnknownKey)
        );
        assert_eq!(
            keys.verify("ops-1", b"m", &[0; 64]),
            Err(Rejection::BadSignature)
        );
    }
}
