//! The at-rest format of every object the enclave stores through the untrusted parent (fixes G1, G11,
//! G16, G18 at the format level).
//!
//! Serialized layout, format version 1 (all the bytes the parent / S3 ever see):
//!
//! ```text
//! offset  length  field
//! 0       1       format_version = 0x01
//! 1       12      nonce (random per seal)
//! 13      n       AES-256-GCM ciphertext of the plaintext (n = plaintext length)
//! 13+n    16      GCM tag
//! ```
//!
//! Associated data (not stored; rebuilt by the reader from what it *expects* to load):
//!
//! ```text
//! u32be(20) ‖ "vettid-sealed-object" ‖ u8 format_version
//!   ‖ u32be(len vault) ‖ vault (UTF-8) ‖ u32be(len name) ‖ name (UTF-8) ‖ u64be version
//! ```
//!
//! Every variable field carries its length, so two different (vault, name, version) tuples can never
//! encode to the same AAD. Consequences: an object moved to another vault or name, or an older version
//! replayed in place of the expected one, fails authentication. The algorithm is fixed by the format
//! version in this code, never read from the blob (G11): an unknown version is an error, not a fallback.
//!
//! Nonces are random 96-bit values, so one key must seal fewer than 2^32 objects (NIST SP 800-38D);
//! callers rotate per-vault keys long before that.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

/// The only format this build writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Shortest valid v1 object (empty plaintext).
pub const MIN_LEN: usize = 1 + NONCE_LEN + TAG_LEN;
/// Label opening the AAD, separating these objects from any other AES-GCM use of the same key.
pub const AAD_LABEL: &[u8] = b"vettid-sealed-object";
/// Longest vault id bound into the AAD (a GUID is 36).
pub const MAX_VAULT_LEN: usize = 128;
/// Longest object name bound into the AAD.
pub const MAX_NAME_LEN: usize = 1024;

/// Why an object could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedError {
    /// Shorter than the format's header and tag.
    #[error("sealed object truncated: {got} bytes, need at least {min}")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Minimum for the format.
        min: usize,
    },
    /// A format version this build does not know.
    #[error("unsupported sealed object format {0}")]
    UnsupportedFormat(u8),
    /// The object id cannot be bound (empty or over-long vault or name).
    #[error("invalid object id: {0}")]
    InvalidObjectId(&'static str),
    /// Wrong key, wrong vault / name / version, or tampered bytes.
    #[error("sealed object failed authentication")]
    Decrypt,
    /// The crypto backend failed (random source). Not caused by the input.
    #[error("crypto backend failure")]
    Backend,
}

/// Which object a blob must be: the reader states it, the AAD checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId<'a> {
    /// Vault id (the owner_space GUID).
    pub vault: &'a str,
    /// Object name within the vault, e.g. `state` or `material`.
    pub name: &'a str,
    /// Version; the caller only ever accepts versions that increase.
    pub version: u64,
}

/// A parsed (not yet authenticated) v1 object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedObject {
    /// Always [`FORMAT_V1`] after a successful [`SealedObject::parse`].
    pub format_version: u8,
    /// GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext ‖ tag.
    pub ciphertext: Vec<u8>,
}

impl SealedObject {
    /// Split stored bytes into their fields. Authenticates nothing; [`open`] does.
    ///
    /// # Errors
    /// [`SealedError::Truncated`] or [`SealedError::UnsupportedFormat`].
    pub fn parse(bytes: &[u8]) -> Result<Self, SealedError> {
        let Some((&format_version, rest)) = bytes.split_first() else {
            return Err(SealedError::Truncated {
                got: 0,
                min: MIN_LEN,
            });
        };
        if format_version != FORMAT_V1 {
            return Err(SealedError::UnsupportedFormat(format_version));
        }
        if bytes.len() < MIN_LEN {
            return Err(SealedError::Truncated {
                got: bytes.len(),
                min: MIN_LEN,
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = nonce.try_into().map_err(|_| SealedError::Backend)?;
        Ok(Self {
            format_version,
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }

    /// The stored bytes, per the layout in the module doc.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + self.ciphertext.len());
        out.push(self.format_version);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }
}

/// The canonical AAD for `id` under `format_version` (layout in the module doc).
///
/// # Errors
/// [`SealedError::InvalidObjectId`] for an empty or over-long vault or name.
pub fn aad(id: &ObjectId<'_>, format_version: u8) -> Result<Vec<u8>, SealedError> {
    if id.vault.is_empty() || id.vault.len() > MAX_VAULT_LEN {
        return Err(SealedError::InvalidObjectId("vault must be 1-128 bytes"));
    }
    if id.name.is_empty() || id.name.len() > MAX_NAME_LEN {
        return Err(SealedError::InvalidObjectId("name must be 1-1024 bytes"));
    }
    let mut out =
        Vec::with_capacity(4 + AAD_LABEL.len() + 1 + 4 + id.vault.len() + 4 + id.name.len() + 8);
    push_prefixed(&mut out, AAD_LABEL);
    out.push(format_version);
    push_prefixed(&mut out, id.vault.as_bytes());
    push_prefixed(&mut out, id.name.as_bytes());
    out.extend_from_slice(&id.version.to_be_bytes());
    Ok(out)
}

/// Encrypt `plaintext` as object `id` under `key`, with a fresh random nonce.
///
/// # Errors
/// [`SealedError::InvalidObjectId`], or [`SealedError::Backend`] if the random source fails.
pub fn seal(key: &[u8; 32], id: &ObjectId<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealedError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealedError::Backend)?;
    seal_with_nonce(key, id, nonce, plaintext)
}

/// [`seal`] with a caller-chosen nonce: for known-answer vectors only (a repeated nonce under one key
/// breaks GCM).
pub(crate) fn seal_with_nonce(
    key: &[u8; 32],
    id: &ObjectId<'_>,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealedError> {
    let aad = aad(id, FORMAT_V1)?;
    let mut ciphertext = plaintext.to_vec();
    aead_key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut ciphertext,
        )
        .map_err(|_| SealedError::Backend)?;
    Ok(SealedObject {
        format_version: FORMAT_V1,
        nonce,
        ciphertext,
    }
    .to_bytes())
}

/// Authenticate and decrypt `bytes`, which must be object `id` sealed under `key`.
///
/// # Errors
/// [`SealedError::Truncated`] / [`SealedError::UnsupportedFormat`] from parsing,
/// [`SealedError::InvalidObjectId`], or [`SealedError::Decrypt`] for a wrong key, wrong vault / name /
/// version or any tampering.
pub fn open(
    key: &[u8; 32],
    id: &ObjectId<'_>,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealedError> {
    let object = SealedObject::parse(bytes)?;
    let aad = aad(id, object.format_version)?;
    let mut buf = Zeroizing::new(object.ciphertext);
    let len = aead_key(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(object.nonce),
            Aad::from(aad.as_slice()),
            buf.as_mut_slice(),
        )
        .map_err(|_| SealedError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// `u32be(len) ‖ bytes`; lengths are bounded above by the `MAX_*` constants, far below `u32::MAX`.
fn push_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, SealedError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| SealedError::Backend)
}

#[cfg(test)]
mod tests;
