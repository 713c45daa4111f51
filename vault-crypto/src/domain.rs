//! The VettID v1 "domain" envelope: UTK payloads from the app, the credential blob sealed to the CEK, and
//! secret values the enclave returns to an app-chosen `reply_key`.
//!
//! The scheme is frozen by the deployed apps (reference §3.4); `Reply` adds a domain to it, not a scheme:
//!
//! ```text
//! shared = X25519(our_private, ephemeral_public)          (all-zero ⇒ rejected)
//! key    = HKDF-SHA256(ikm = shared, salt = domain string, info = none, L = 32)
//! ct     = XChaCha20-Poly1305(key, nonce (24 bytes, random), aad = none, plaintext)
//! wire   = ephemeral_public (32) ‖ nonce (24) ‖ ct ‖ tag (16)
//! ```
//!
//! The domain string is the only thing that separates a UTK payload from a CEK blob or a reply, so
//! [`Domain`] is a closed enum: a caller cannot pass an arbitrary salt. The separation matters because the
//! requester chooses the `reply_key`: a request naming one of the enclave's own UTK public keys as its
//! `reply_key` would otherwise get back an envelope the enclave also accepts as a UTK payload. Distinct
//! salts give distinct keys for the same X25519 secret, so an envelope opens in its own domain only.
//!
//! XChaCha20-Poly1305 comes from RustCrypto's `chacha20poly1305` because aws-lc-rs has no 24-byte-nonce
//! variant.

use aws_lc_rs::agreement::PrivateKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::x25519::{self, EnvelopeError, KEY_LEN};

/// XChaCha20-Poly1305 nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Shortest valid envelope (empty plaintext).
pub const MIN_LEN: usize = KEY_LEN + NONCE_LEN + TAG_LEN;

/// Which purpose an envelope belongs to; its string is the HKDF salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// `vettid-utk-v1`: app → enclave payloads encrypted to a UTK (credential.create, password change, …).
    Utk,
    /// `vettid-cek-v1`: the credential blob encrypted to the app's credential encryption key.
    Cek,
    /// `vettid-pin-v1`: defined by v1 but unused there; kept so the salt is reserved.
    Pin,
    /// `vettid-reply-v1`: enclave → app. Secret values the enclave sends back in a response, encrypted to
    /// the ephemeral X25519 key (`reply_key`) the app put in its request, so the parent relaying the
    /// response never sees them. Added by this system (v1 has no such reply); frozen once apps use it.
    Reply,
}

impl Domain {
    /// The HKDF salt bytes for this domain, exactly as v1 spells them (`Reply` is this system's own).
    pub const fn salt(self) -> &'static [u8] {
        match self {
            Domain::Utk => b"vettid-utk-v1",
            Domain::Cek => b"vettid-cek-v1",
            Domain::Pin => b"vettid-pin-v1",
            Domain::Reply => b"vettid-reply-v1",
        }
    }
}

/// Open an envelope `ephemeral_public ‖ nonce ‖ ct ‖ tag` in `domain`.
///
/// # Errors
/// [`EnvelopeError::Truncated`] if shorter than [`MIN_LEN`]; [`EnvelopeError::WeakPublicKey`] for a
/// low-order ephemeral key; [`EnvelopeError::Decrypt`] for a wrong key, a wrong domain or any tampering.
pub fn open(
    domain: Domain,
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
    // The splits give exactly these lengths, so the conversions cannot fail.
    let eph: &[u8; KEY_LEN] = eph.try_into().map_err(|_| EnvelopeError::Backend)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Backend)?;
    let key = x25519::agree_and_derive(our_private, eph, domain.salt(), &[])?;
    let plain = cipher(&key)
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &[] })
        .map_err(|_| EnvelopeError::Decrypt)?;
    Ok(Zeroizing::new(plain))
}

/// Encrypt `plaintext` to `recipient_public` in `domain` with a fresh ephemeral key and nonce.
///
/// The enclave uses this to seal the credential to the app's CEK and replies to the app's `reply_key`;
/// tests use it as the app would for UTKs.
///
/// # Errors
/// [`EnvelopeError::WeakPublicKey`] for a low-order recipient key; [`EnvelopeError::Backend`] if the
/// random source fails.
pub fn seal(
    domain: Domain,
    recipient_public: &[u8; KEY_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let ephemeral = x25519::generate()?;
    seal_with(
        domain,
        &ephemeral,
        x25519::random()?,
        recipient_public,
        plaintext,
    )
}

/// [`seal`] with a caller-chosen ephemeral key and nonce: for known-answer vectors only.
pub(crate) fn seal_with(
    domain: Domain,
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    recipient_public: &[u8; KEY_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let key = x25519::agree_and_derive(ephemeral, recipient_public, domain.salt(), &[])?;
    let ct = cipher(&key)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &[],
            },
        )
        .map_err(|_| EnvelopeError::Backend)?;
    let mut out = Vec::with_capacity(KEY_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(&x25519::public_key_bytes(ephemeral)?);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The cipher zeroizes its key copy on drop (`ZeroizeOnDrop` in chacha20poly1305 0.10).
fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every domain; the match makes a new variant a compile error here until it is listed.
    const ALL: [Domain; 4] = [Domain::Utk, Domain::Cek, Domain::Pin, Domain::Reply];
    const _: () = match Domain::Utk {
        Domain::Utk | Domain::Cek | Domain::Pin | Domain::Reply => (),
    };

    fn keypair() -> (PrivateKey, [u8; 32]) {
        let private = x25519::generate().unwrap();
        let public = x25519::public_key_bytes(&private).unwrap();
        (private, public)
    }

    #[test]
    fn round_trip_in_each_domain() {
        let (ours, public) = keypair();
        for domain in ALL {
            let sealed = seal(domain, &public, b"{\"password_hash\":\"x\"}").unwrap();
            assert_eq!(sealed.len(), MIN_LEN + 21);
            assert_eq!(
                open(domain, &ours, &sealed).unwrap().as_slice(),
                b"{\"password_hash\":\"x\"}"
            );
        }
    }

    #[test]
    fn an_envelope_opens_in_its_own_domain_only() {
        let (ours, public) = keypair();
        for sealed_in in ALL {
            let sealed = seal(sealed_in, &public, b"payload").unwrap();
            for opened_in in ALL {
                let result = open(opened_in, &ours, &sealed);
                if opened_in == sealed_in {
                    assert_eq!(result.unwrap().as_slice(), b"payload");
                } else {
                    assert_eq!(
                        result.unwrap_err(),
                        EnvelopeError::Decrypt,
                        "{sealed_in:?} opened as {opened_in:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (ours, public) = keypair();
        let sealed = seal(Domain::Cek, &public, b"credential").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                let err = open(Domain::Cek, &ours, &bad).unwrap_err();
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
    fn wrong_key_truncation_and_low_order_are_rejected() {
        let (ours, public) = keypair();
        let (other, _) = keypair();
        let sealed = seal(Domain::Utk, &public, b"x").unwrap();
        assert_eq!(
            open(Domain::Utk, &other, &sealed).unwrap_err(),
            EnvelopeError::Decrypt
        );
        for len in [0, 32, 56, MIN_LEN - 1] {
            assert_eq!(
                open(Domain::Utk, &ours, &sealed[..len]).unwrap_err(),
                EnvelopeError::Truncated {
                    got: len,
                    min: MIN_LEN
                }
            );
        }
        for point in crate::x25519::LOW_ORDER_POINTS {
            let mut bad = sealed.clone();
            bad[..32].copy_from_slice(&hex::decode(point).unwrap());
            assert_eq!(
                open(Domain::Utk, &ours, &bad).unwrap_err(),
                crate::x25519::expected_rejection(point)
            );
        }
    }

    #[test]
    fn salts_match_v1_strings() {
        assert_eq!(Domain::Utk.salt(), b"vettid-utk-v1");
        assert_eq!(Domain::Cek.salt(), b"vettid-cek-v1");
        assert_eq!(Domain::Pin.salt(), b"vettid-pin-v1");
        assert_eq!(Domain::Reply.salt(), b"vettid-reply-v1");
        let salts: std::collections::HashSet<_> = ALL.iter().map(|d| d.salt()).collect();
        assert_eq!(salts.len(), ALL.len(), "two domains share a salt");
    }
}
