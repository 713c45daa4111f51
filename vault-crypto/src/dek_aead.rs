//! The VettID v1 "DEK AEAD": AES-256-GCM directly under the DEK, no associated data.
//!
//! v1 uses it for the `encrypted_credential` returned by `pin.unlock` / `pin.change` and for
//! `vault_state.enc`; the deployed apps and the stored v1 blobs fix it, so nothing here may change:
//!
//! ```text
//! key  = DEK (32 bytes, [`crate::dek::derive_dek`])
//! ct   = AES-256-GCM(key, nonce (12 bytes, random), aad = none, plaintext)
//! wire = nonce (12) ‖ ct ‖ tag (16)
//! ```
//!
//! This is Go's `gcm.Seal(nonce, nonce, plaintext, nil)`. Unlike [`crate::sealed`] the blob names nothing
//! (no format byte, no vault, no name, no version), so it cannot detect a blob swapped for another one
//! sealed under the same DEK; callers that store such blobs must bind them by other means. It is kept for
//! v1 compatibility only. A [`crate::sealed`] object never opens here, nor a DEK-AEAD blob there, even under
//! one key: the sealed format authenticates a non-empty AAD, this one the empty AAD, so the GCM tags differ.
//!
//! Nonces are random 96-bit values, so one DEK must seal fewer than 2^32 blobs (NIST SP 800-38D); a PIN
//! change derives a new DEK long before that.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::secret::Dek;

/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Shortest valid blob (empty plaintext).
pub const MIN_LEN: usize = NONCE_LEN + TAG_LEN;

/// Why a DEK-AEAD blob could not be built or opened. Never carries key or plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DekAeadError {
    /// Shorter than `nonce ‖ tag`.
    #[error("DEK-encrypted blob truncated: {got} bytes, need at least {min}")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Minimum length ([`MIN_LEN`]).
        min: usize,
    },
    /// Authentication failed: wrong DEK (a wrong PIN) or tampered nonce, ciphertext or tag.
    #[error("DEK-encrypted blob failed authentication")]
    Decrypt,
    /// The crypto backend failed (random source, key setup). Not caused by the input.
    #[error("crypto backend failure")]
    Backend,
}

/// Encrypt `plaintext` under `dek` with a fresh random nonce; returns `nonce ‖ ct ‖ tag`.
///
/// # Errors
/// [`DekAeadError::Backend`] if the random source fails.
pub fn seal(dek: &Dek, plaintext: &[u8]) -> Result<Vec<u8>, DekAeadError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| DekAeadError::Backend)?;
    seal_with_nonce(dek, nonce, plaintext)
}

/// [`seal`] with a caller-chosen nonce: for known-answer vectors only (a repeated nonce under one DEK
/// breaks GCM).
pub(crate) fn seal_with_nonce(
    dek: &Dek,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, DekAeadError> {
    let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    // Seal in place over the tail, so the plaintext is never copied anywhere but the output.
    let tag = aead_key(dek)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| DekAeadError::Backend)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Authenticate and decrypt a blob `nonce ‖ ct ‖ tag` under `dek`.
///
/// # Errors
/// [`DekAeadError::Truncated`] if shorter than [`MIN_LEN`]; [`DekAeadError::Decrypt`] for a wrong DEK or
/// any tampering.
pub fn open(dek: &Dek, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, DekAeadError> {
    if blob.len() < MIN_LEN {
        return Err(DekAeadError::Truncated {
            got: blob.len(),
            min: MIN_LEN,
        });
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    // The split gives exactly NONCE_LEN bytes, so the conversion cannot fail.
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DekAeadError::Backend)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = aead_key(dek)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            buf.as_mut_slice(),
        )
        .map_err(|_| DekAeadError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn aead_key(dek: &Dek) -> Result<LessSafeKey, DekAeadError> {
    UnboundKey::new(&AES_256_GCM, dek.expose())
        .map(LessSafeKey::new)
        .map_err(|_| DekAeadError::Backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dek(byte: u8) -> Dek {
        Dek::from_bytes([byte; 32])
    }

    #[test]
    fn round_trip_and_layout() {
        let blob = seal(&dek(1), br#"{"guid":"c"}"#).unwrap();
        assert_eq!(blob.len(), MIN_LEN + 12);
        assert_eq!(open(&dek(1), &blob).unwrap().as_slice(), br#"{"guid":"c"}"#);
        let empty = seal(&dek(1), b"").unwrap();
        assert_eq!(empty.len(), MIN_LEN);
        assert!(open(&dek(1), &empty).unwrap().is_empty());
    }

    #[test]
    fn two_seals_use_different_nonces() {
        let a = seal(&dek(1), b"x").unwrap();
        let b = seal(&dek(1), b"x").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn wrong_dek_and_any_flipped_bit_are_rejected() {
        let blob = seal(&dek(1), b"credential").unwrap();
        assert_eq!(open(&dek(2), &blob).unwrap_err(), DekAeadError::Decrypt);
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(
                    open(&dek(1), &bad).unwrap_err(),
                    DekAeadError::Decrypt,
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn truncation_is_rejected_before_decryption() {
        let blob = seal(&dek(1), b"credential").unwrap();
        for len in [0, 1, NONCE_LEN, MIN_LEN - 1] {
            assert_eq!(
                open(&dek(1), &blob[..len]).unwrap_err(),
                DekAeadError::Truncated {
                    got: len,
                    min: MIN_LEN
                }
            );
        }
        // Long enough but cut short: the tag no longer matches.
        assert_eq!(
            open(&dek(1), &blob[..blob.len() - 1]).unwrap_err(),
            DekAeadError::Decrypt
        );
    }

    #[test]
    fn sealed_objects_and_dek_blobs_do_not_cross_open() {
        let key = [7u8; 32];
        let id = crate::sealed::ObjectId {
            vault: "v",
            name: "state",
            version: 1,
        };
        let object = crate::sealed::seal(&key, &id, b"state").unwrap();
        // The sealed object without its format byte has this module's layout, but not its AAD.
        assert_eq!(
            open(&Dek::from_bytes(key), &object[1..]).unwrap_err(),
            DekAeadError::Decrypt
        );
        let mut blob = vec![crate::sealed::FORMAT_V1];
        blob.extend_from_slice(&seal(&Dek::from_bytes(key), b"state").unwrap());
        assert_eq!(
            crate::sealed::open(&key, &id, &blob).unwrap_err(),
            crate::sealed::SealedError::Decrypt
        );
    }
}
