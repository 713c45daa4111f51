//! Wrapping a small secret under a 32-byte key with a bound context: XChaCha20-Poly1305 with a
//! random 24-byte nonce, `blob = nonce (24) ‖ ciphertext ‖ tag (16)`, the context as AAD.
//!
//! The enclave wraps attestation private keys under the fleet key (a KMS data key only attested
//! enclaves open) so another host can use them; the AAD names the owner, the public key and the
//! expiry, so a blob moved to another item, owner or lifetime does not open. XChaCha's 192-bit
//! nonces are safe to draw at random for as many wraps as one fleet key will ever see.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Nonce length.
pub const NONCE_LEN: usize = 24;
/// Tag length.
pub const TAG_LEN: usize = 16;

/// Why a wrap or unwrap failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// Shorter than a nonce and a tag.
    #[error("wrapped blob is truncated")]
    Truncated,
    /// Wrong key, wrong context, or tampering.
    #[error("wrapped blob failed authentication")]
    Decrypt,
    /// The random source failed.
    #[error("crypto backend failure")]
    Backend,
}

/// Wraps `secret` under `key`, bound to `aad`.
///
/// # Errors
/// [`WrapError::Backend`] if the random source fails.
pub fn seal(key: &[u8; 32], aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, WrapError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| WrapError::Backend)?;
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(&XNonce::from(nonce), Payload { msg: secret, aad })
        .map_err(|_| WrapError::Backend)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a [`seal`]ed blob.
///
/// # Errors
/// [`WrapError::Truncated`] or [`WrapError::Decrypt`].
pub fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(WrapError::Truncated);
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| WrapError::Truncated)?;
    XChaCha20Poly1305::new(key.into())
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| WrapError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_secret_opens_only_with_its_key_and_context() {
        let key = [7u8; 32];
        let blob = seal(&key, b"owner-1", b"secret").unwrap();
        assert_eq!(&*open(&key, b"owner-1", &blob).unwrap(), b"secret");
        assert_eq!(open(&key, b"owner-2", &blob), Err(WrapError::Decrypt));
        assert_eq!(open(&[8u8; 32], b"owner-1", &blob), Err(WrapError::Decrypt));
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(open(&key, b"owner-1", &tampered), Err(WrapError::Decrypt));
        assert_eq!(
            open(&key, b"owner-1", &blob[..39]),
            Err(WrapError::Truncated)
        );
        assert_ne!(
            seal(&key, b"owner-1", b"secret").unwrap(),
            blob,
            "fresh nonce"
        );
    }
}
