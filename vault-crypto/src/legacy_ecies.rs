//! VettID v1 "legacy ECIES": how deployed apps encrypt a PIN to the enclave.
//!
//! Used for `pin.setup` (to the attestation key) and `pin.unlock` / `pin.change` (to the vault's ECIES key).
//! Frozen by the deployed apps (reference §3.4), so nothing here may change:
//!
//! ```text
//! shared = X25519(our_private, ephemeral_public)          (all-zero ⇒ rejected)
//! key    = HKDF-SHA256(ikm = shared, salt = "VettID-HKDF-Salt-v1", info = "enclave-encryption-v1", L = 32)
//! ct     = ChaCha20-Poly1305(key, nonce (12 bytes, random), aad = none, plaintext)
//! wire   = ephemeral_public (32) ‖ nonce (12) ‖ ct ‖ tag (16)
//! ```
//!
//! `pin.setup` sends the three parts as separate standard-base64 JSON fields (`ephemeral_public_key`,
//! `nonce`, `encrypted_pin` = ct ‖ tag); unlock and change send the concatenation, base64-encoded, as
//! `encrypted_payload`. The scheme has no replay protection of its own (G3): the caller must bind payloads to
//! single-use keys.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use aws_lc_rs::agreement::PrivateKey;
use zeroize::Zeroizing;

use crate::x25519::{self, EnvelopeError, KEY_LEN};

/// HKDF salt fixed by the v1 apps.
pub const HKDF_SALT: &[u8] = b"VettID-HKDF-Salt-v1";
/// HKDF info fixed by the v1 apps.
pub const HKDF_INFO: &[u8] = b"enclave-encryption-v1";
/// ChaCha20-Poly1305 nonce length.
pub const NONCE_LEN: usize = 12;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Shortest valid combined envelope (empty plaintext).
pub const MIN_LEN: usize = KEY_LEN + NONCE_LEN + TAG_LEN;

/// Open a combined envelope `ephemeral_public ‖ nonce ‖ ct ‖ tag` (already base64-decoded).
///
/// # Errors
/// [`EnvelopeError::Truncated`] if shorter than [`MIN_LEN`]; [`EnvelopeError::WeakPublicKey`] for a
/// low-order ephemeral key; [`EnvelopeError::Decrypt`] for a wrong key or any tampering.
pub fn open(
    our_private: &PrivateKey,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if envelope.len() < MIN_LEN {
        return Err(EnvelopeError::Truncated {
            got: envelope.len(),
            min: MIN_LEN,
        });
    }
    let (eph, rest) = envelope.split_at(KEY_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    // The splits above have exactly these lengths, so the conversions cannot fail.
    let eph: &[u8; KEY_LEN] = eph.try_into().map_err(|_| EnvelopeError::Backend)?;
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Backend)?;
    open_parts(our_private, eph, nonce, ct)
}

/// Open the `pin.setup` form: three standard-base64 fields as they arrive in the JSON payload.
///
/// # Errors
/// [`EnvelopeError::Base64`] / [`EnvelopeError::FieldLength`] naming the bad field, then as [`open_parts`].
pub fn open_fields(
    our_private: &PrivateKey,
    encrypted_pin_b64: &str,
    ephemeral_public_key_b64: &str,
    nonce_b64: &str,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let eph = x25519::decode_field::<KEY_LEN>("ephemeral_public_key", ephemeral_public_key_b64)?;
    let nonce = x25519::decode_field::<NONCE_LEN>("nonce", nonce_b64)?;
    let ct = x25519::decode_field_vec("encrypted_pin", encrypted_pin_b64)?;
    open_parts(our_private, &eph, &nonce, &ct)
}

/// Open from already separated parts; `ciphertext` is ct ‖ tag.
///
/// # Errors
/// [`EnvelopeError::Truncated`] if `ciphertext` is shorter than the tag, otherwise as [`open`].
pub fn open_parts(
    our_private: &PrivateKey,
    ephemeral_public: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if ciphertext.len() < TAG_LEN {
        return Err(EnvelopeError::Truncated {
            got: ciphertext.len(),
            min: TAG_LEN,
        });
    }
    let key = x25519::agree_and_derive(our_private, ephemeral_public, HKDF_SALT, HKDF_INFO)?;
    let aead = aead_key(&key)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let plain_len = aead
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::empty(),
            buf.as_mut_slice(),
        )
        .map_err(|_| EnvelopeError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Encrypt `plaintext` to `recipient_public` the way a v1 app does, with a fresh ephemeral key and nonce.
/// Returns the combined envelope. The enclave itself never needs this; the test harness and test client do.
///
/// # Errors
/// [`EnvelopeError::WeakPublicKey`] for a low-order recipient key; [`EnvelopeError::Backend`] if the
/// random source fails.
pub fn seal(recipient_public: &[u8; KEY_LEN], plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let ephemeral = x25519::generate()?;
    seal_with(&ephemeral, x25519::random()?, recipient_public, plaintext)
}

/// [`seal`] with a caller-chosen ephemeral key and nonce: for known-answer vectors only. Reusing an
/// ephemeral key and nonce for two messages to the same recipient reuses the keystream.
pub(crate) fn seal_with(
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    recipient_public: &[u8; KEY_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let key = x25519::agree_and_derive(ephemeral, recipient_public, HKDF_SALT, HKDF_INFO)?;
    let aead = aead_key(&key)?;
    let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
    out.extend_from_slice(&x25519::public_key_bytes(ephemeral)?);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    aead.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .map_err(|_| EnvelopeError::Backend)?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, EnvelopeError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| EnvelopeError::Backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};

    fn keypair() -> (PrivateKey, [u8; 32]) {
        let private = x25519::generate().unwrap();
        let public = x25519::public_key_bytes(&private).unwrap();
        (private, public)
    }

    #[test]
    fn round_trip_combined_and_fields() {
        let (ours, public) = keypair();
        let sealed = seal(&public, br#"{"pin":"123456"}"#).unwrap();
        assert_eq!(
            open(&ours, &sealed).unwrap().as_slice(),
            br#"{"pin":"123456"}"#
        );

        let (eph, rest) = sealed.split_at(32);
        let (nonce, ct) = rest.split_at(12);
        let plain = open_fields(
            &ours,
            &STANDARD.encode(ct),
            &STANDARD.encode(eph),
            &STANDARD.encode(nonce),
        );
        assert_eq!(plain.unwrap().as_slice(), br#"{"pin":"123456"}"#);
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (ours, public) = keypair();
        let sealed = seal(&public, b"1234").unwrap();
        // Ephemeral key, nonce, ciphertext and tag: every bit is covered (incl. the X25519-ignored bit 255).
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                let err = open(&ours, &bad).unwrap_err();
                let expected = [
                    EnvelopeError::Decrypt,
                    EnvelopeError::WeakPublicKey,
                    EnvelopeError::NonCanonicalPublicKey,
                ];
                assert!(expected.contains(&err), "byte {i} bit {bit}: {err:?}");
            }
        }
    }

    #[test]
    fn wrong_key_and_truncation_are_rejected() {
        let (_, public) = keypair();
        let (other, _) = keypair();
        let sealed = seal(&public, b"1234").unwrap();
        assert_eq!(open(&other, &sealed).unwrap_err(), EnvelopeError::Decrypt);
        for len in [0, 31, 32, 44, MIN_LEN - 1] {
            assert_eq!(
                open(&other, &sealed[..len]).unwrap_err(),
                EnvelopeError::Truncated {
                    got: len,
                    min: MIN_LEN
                }
            );
        }
        // Dropping plaintext bytes keeps the length valid but breaks the tag.
        assert_eq!(
            open(&other, &sealed[..sealed.len() - 1]).unwrap_err(),
            EnvelopeError::Decrypt
        );
    }

    #[test]
    fn low_order_ephemeral_key_is_rejected() {
        let (ours, public) = keypair();
        for point in crate::x25519::LOW_ORDER_POINTS {
            let mut sealed = seal(&public, b"1234").unwrap();
            sealed[..32].copy_from_slice(&hex::decode(point).unwrap());
            let want = crate::x25519::expected_rejection(point);
            assert_eq!(open(&ours, &sealed).unwrap_err(), want);
            let low: [u8; 32] = hex::decode(point).unwrap().try_into().unwrap();
            assert_eq!(seal(&low, b"1234").unwrap_err(), want);
        }
    }

    #[test]
    fn bad_base64_fields_name_the_field() {
        let (ours, _) = keypair();
        let eph = STANDARD.encode([9u8; 32]);
        let nonce = STANDARD.encode([0u8; 12]);
        let ct = STANDARD.encode([0u8; 20]);
        let short = STANDARD.encode([0u8; 15]);
        let cases = [
            (
                ("%%%", eph.as_str(), nonce.as_str()),
                EnvelopeError::Base64 {
                    field: "encrypted_pin",
                },
            ),
            (
                (ct.as_str(), "%%%", nonce.as_str()),
                EnvelopeError::Base64 {
                    field: "ephemeral_public_key",
                },
            ),
            (
                (ct.as_str(), eph.as_str(), "%%%"),
                EnvelopeError::Base64 { field: "nonce" },
            ),
            (
                (ct.as_str(), "AAAA", nonce.as_str()),
                EnvelopeError::FieldLength {
                    field: "ephemeral_public_key",
                    got: 3,
                    expected: 32,
                },
            ),
            (
                (ct.as_str(), eph.as_str(), "AAAA"),
                EnvelopeError::FieldLength {
                    field: "nonce",
                    got: 3,
                    expected: 12,
                },
            ),
            (
                (short.as_str(), eph.as_str(), nonce.as_str()),
                EnvelopeError::Truncated { got: 15, min: 16 },
            ),
        ];
        for ((c, e, n), want) in cases {
            assert_eq!(open_fields(&ours, c, e, n).unwrap_err(), want);
        }
    }
}
