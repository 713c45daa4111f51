//! X25519 agreement and the error type shared by the two app-facing envelope schemes
//! ([`crate::legacy_ecies`] and [`crate::domain`]).
//!
//! Both schemes do the same first step: agree an X25519 secret between the app's ephemeral key and one of
//! ours, then run HKDF-SHA256 over it. The agreement lives here once so the low-order-point check cannot be
//! forgotten in one of them.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

/// Length of an X25519 public or private key.
pub const KEY_LEN: usize = 32;

/// Why an app-facing envelope could not be opened or built.
///
/// Variants never carry plaintext or key bytes. Lengths are public (they are on the wire anyway).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The combined envelope is shorter than `ephemeral key ‖ nonce ‖ tag`.
    #[error("envelope truncated: {got} bytes, need at least {min}")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Minimum length for this scheme.
        min: usize,
    },
    /// A separately transmitted field is not valid standard base64.
    #[error("field {field} is not valid base64")]
    Base64 {
        /// Wire name of the field.
        field: &'static str,
    },
    /// A separately transmitted field decoded to the wrong length.
    #[error("field {field} has {got} bytes, expected {expected}")]
    FieldLength {
        /// Wire name of the field.
        field: &'static str,
        /// Bytes after decoding.
        got: usize,
        /// Bytes the scheme requires.
        expected: usize,
    },
    /// The peer's X25519 key is a low-order point (the shared secret would be all zero) or was otherwise
    /// rejected by the agreement. Such a key lets the sender predict the key without knowing ours.
    #[error("peer public key rejected (low-order point)")]
    WeakPublicKey,
    /// The peer's X25519 key is not the canonical encoding of a field element (bit 255 set, or a value
    /// ≥ 2^255 − 19). X25519 would silently reduce it, so two different byte strings would open the same
    /// envelope; real key generation never produces one, so refusing costs no compatibility and keeps
    /// envelopes non-malleable for replay detection.
    #[error("peer public key is not canonically encoded")]
    NonCanonicalPublicKey,
    /// Authentication failed: wrong key, tampered ciphertext, tag, nonce or ephemeral key.
    #[error("decryption failed")]
    Decrypt,
    /// The crypto backend failed (random source, key setup). Not caused by the input.
    #[error("crypto backend failure")]
    Backend,
}

/// X25519 between `our_private` and the raw 32-byte `peer_public`, then HKDF-SHA256 to a 32-byte key.
///
/// `info` may be empty (the domain scheme passes none; RFC 5869 treats absent and empty info alike, and so
/// does Go's `hkdf.New`).
///
/// # Errors
/// [`EnvelopeError::NonCanonicalPublicKey`] for a non-canonical peer key; [`EnvelopeError::WeakPublicKey`]
/// when the agreement fails or yields the all-zero secret.
pub(crate) fn agree_and_derive(
    our_private: &PrivateKey,
    peer_public: &[u8; KEY_LEN],
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    agree_and_expand::<32>(our_private, peer_public, salt, info)
}

/// [`agree_and_derive`] with an output of `N` bytes (the v2 envelope takes a request and a reply
/// key from one expansion).
///
/// # Errors
/// As [`agree_and_derive`].
pub(crate) fn agree_and_expand<const N: usize>(
    our_private: &PrivateKey,
    peer_public: &[u8; KEY_LEN],
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; N]>, EnvelopeError> {
    if !is_canonical(peer_public) {
        return Err(EnvelopeError::NonCanonicalPublicKey);
    }
    let peer = UnparsedPublicKey::new(&X25519, peer_public);
    agreement::agree(our_private, peer, EnvelopeError::WeakPublicKey, |shared| {
        // AWS-LC already refuses an all-zero output; checking again keeps the guarantee ours, not the
        // backend's. A low-order peer point makes the secret independent of our key.
        if shared.iter().all(|b| *b == 0) {
            return Err(EnvelopeError::WeakPublicKey);
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(shared);
        let mut key = Zeroizing::new([0u8; N]);
        prk.expand(&[info], Len(N))
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| EnvelopeError::Backend)?;
        Ok(key)
    })
}

/// An HKDF output length for aws-lc's `expand`.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Whether `u` (little-endian) is below p = 2^255 − 19, i.e. bit 255 clear and not in [p, 2^255 − 1].
fn is_canonical(u: &[u8; KEY_LEN]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // The only values ≥ p with bit 255 clear are ed ff … ff 7f through ff ff … ff 7f.
    let top_all_ones = u[31] == 0x7f && u[1..31].iter().all(|b| *b == 0xff);
    !(top_all_ones && u[0] >= 0xed)
}

/// A fresh X25519 key pair: what an app does for every message it seals.
///
/// # Errors
/// [`EnvelopeError::Backend`] if the random source fails.
pub(crate) fn generate() -> Result<PrivateKey, EnvelopeError> {
    PrivateKey::generate(&X25519).map_err(|_| EnvelopeError::Backend)
}

/// The raw 32-byte public key of an X25519 private key.
///
/// # Errors
/// [`EnvelopeError::Backend`] if the backend cannot compute it.
pub fn public_key_bytes(private: &PrivateKey) -> Result<[u8; KEY_LEN], EnvelopeError> {
    let public = private
        .compute_public_key()
        .map_err(|_| EnvelopeError::Backend)?;
    public
        .as_ref()
        .try_into()
        .map_err(|_| EnvelopeError::Backend)
}

/// Fill a fixed-size array from the system random source.
///
/// # Errors
/// [`EnvelopeError::Backend`] if the random source fails.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], EnvelopeError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| EnvelopeError::Backend)?;
    Ok(out)
}

/// Decode one standard-base64 field (Go's `base64.StdEncoding`, padded) of an exact length.
///
/// # Errors
/// [`EnvelopeError::Base64`] or [`EnvelopeError::FieldLength`], naming `field`.
pub(crate) fn decode_field<const N: usize>(
    field: &'static str,
    b64: &str,
) -> Result<[u8; N], EnvelopeError> {
    let bytes = decode_field_vec(field, b64)?;
    let got = bytes.len();
    bytes.try_into().map_err(|_| EnvelopeError::FieldLength {
        field,
        got,
        expected: N,
    })
}

/// Decode one standard-base64 field of any length.
///
/// # Errors
/// [`EnvelopeError::Base64`], naming `field`.
pub(crate) fn decode_field_vec(field: &'static str, b64: &str) -> Result<Vec<u8>, EnvelopeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| EnvelopeError::Base64 { field })
}

#[cfg(test)]
/// Well-known low-order Curve25519 u-coordinates, including the non-canonical encodings p and p + 1
/// that reduce to 0 and 1. Any of these as a peer key makes the shared secret all zero.
pub(crate) const LOW_ORDER_POINTS: [&str; 7] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

/// Low-order points p and p + 1 are non-canonical encodings and are refused as such, before agreement.
#[cfg(test)]
pub(crate) fn expected_rejection(hex_point: &str) -> EnvelopeError {
    if hex_point.starts_with("ed") || hex_point.starts_with("ee") {
        EnvelopeError::NonCanonicalPublicKey
    } else {
        EnvelopeError::WeakPublicKey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_peer_keys_are_rejected() {
        let ours = generate().unwrap();
        for hex_point in LOW_ORDER_POINTS {
            let point: [u8; 32] = hex::decode(hex_point).unwrap().try_into().unwrap();
            assert_eq!(
                agree_and_derive(&ours, &point, b"salt", b"").unwrap_err(),
                expected_rejection(hex_point),
                "{hex_point}"
            );
        }
    }

    #[test]
    fn non_canonical_peer_keys_are_rejected() {
        let ours = generate().unwrap();
        let mut peer = public_key_bytes(&generate().unwrap()).unwrap();
        agree_and_derive(&ours, &peer, b"s", b"").unwrap();
        peer[31] |= 0x80;
        assert_eq!(
            agree_and_derive(&ours, &peer, b"s", b"").unwrap_err(),
            EnvelopeError::NonCanonicalPublicKey
        );
        // p + 2 (a non-canonical encoding of 2, not low order) and 2^255 − 1.
        let mut p_plus_2 = [0xffu8; 32];
        p_plus_2[0] = 0xef;
        p_plus_2[31] = 0x7f;
        let mut max = [0xffu8; 32];
        max[31] = 0x7f;
        for u in [p_plus_2, max] {
            assert_eq!(
                agree_and_derive(&ours, &u, b"s", b"").unwrap_err(),
                EnvelopeError::NonCanonicalPublicKey
            );
        }
        // p − 1 is canonical (and low order): rejected as weak, not as non-canonical.
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert_eq!(
            agree_and_derive(&ours, &p_minus_1, b"s", b"").unwrap_err(),
            EnvelopeError::WeakPublicKey
        );
    }

    #[test]
    fn decode_field_names_the_field() {
        assert_eq!(
            decode_field::<12>("nonce", "not base64!").unwrap_err(),
            EnvelopeError::Base64 { field: "nonce" }
        );
        assert_eq!(
            decode_field::<12>("nonce", "AAAA").unwrap_err(),
            EnvelopeError::FieldLength {
                field: "nonce",
                got: 3,
                expected: 12
            }
        );
        // Unpadded input is not Go's StdEncoding.
        assert!(decode_field_vec("x", "AA").is_err());
    }
}
