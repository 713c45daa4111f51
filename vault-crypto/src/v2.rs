//! The v2 envelope: app → enclave requests that name what they are for, and enclave → app replies
//! that only the app that sent the request can open (docs/VAULT.md, "The v2 envelope", is the
//! normative text; `app-client` is the app's independent implementation).
//!
//! ```text
//! shared  = X25519(recipient_private, eph_public)                   (all-zero ⇒ rejected)
//! info    = "vettid-v2" ‖ lp(op) ‖ lp(owner) ‖ lp(key_ref) ‖ eph_public (32) ‖ recipient_public (32)
//!           where lp(x) = u16 big-endian length of x ‖ x
//! okm     = HKDF-SHA256(ikm = shared, salt = "vettid-v2", info, L = 64)
//! k_req   = okm[0..32],  k_reply = okm[32..64]
//! request = eph_public (32) ‖ nonce (24) ‖ XChaCha20-Poly1305(k_req,   nonce, plaintext, aad = "vettid-v2 request")
//! reply   =                  nonce (24) ‖ XChaCha20-Poly1305(k_reply, nonce, reply,     aad = "vettid-v2 reply")
//! ```
//!
//! Why each part:
//! - The recipient key is single use (an attestation key or a UTK) or the vault's own key for
//!   reads, so a request cannot be replayed into a second effect (UTK spent on success).
//! - `op`, `owner` and `key_ref` (the UTK id, or `attestation` / `vault`) are in the key
//!   derivation: the host cannot turn a `secrets.retrieve` into a `secrets.delete`, move a request
//!   to another vault, or pair the ciphertext with another UTK id; any of those fails the tag.
//! - The reply key comes from the request's own secret, so a reply is authenticated to exactly
//!   the app that made the request, by whichever enclave opened it (any host can answer; nothing
//!   per-host is needed), and the host can neither read nor forge it. Fresh `eph_public` per
//!   request makes old replies useless for new requests.
//! - Distinct AAD strings for the two directions: a reply is never a valid request.

use aws_lc_rs::agreement::PrivateKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::x25519::{self, EnvelopeError, KEY_LEN};

/// HKDF salt and the first bytes of `info`.
pub const LABEL: &[u8] = b"vettid-v2";
/// AAD of a request.
pub const REQUEST_AAD: &[u8] = b"vettid-v2 request";
/// AAD of a reply.
pub const REPLY_AAD: &[u8] = b"vettid-v2 reply";
/// XChaCha20-Poly1305 nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Shortest valid request envelope (empty plaintext).
pub const MIN_REQUEST_LEN: usize = KEY_LEN + NONCE_LEN + TAG_LEN;
/// `key_ref` of a request sealed to an attestation key (`pin.setup`).
pub const KEY_REF_ATTESTATION: &str = "attestation";
/// `key_ref` of a request sealed to the vault's own key (reads).
pub const KEY_REF_VAULT: &str = "vault";

/// What a request is bound to; every field enters the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The canonical operation name (`pin.unlock`, `secrets.add`, …).
    pub op: &'a str,
    /// The owner-space GUID.
    pub owner: &'a str,
    /// The UTK id, [`KEY_REF_ATTESTATION`] or [`KEY_REF_VAULT`].
    pub key_ref: &'a str,
}

impl Binding<'_> {
    /// The HKDF `info` for this binding and the two public keys.
    ///
    /// # Errors
    /// [`EnvelopeError::FieldLength`] if a field is longer than 65 535 bytes.
    pub fn info(
        &self,
        eph_public: &[u8; KEY_LEN],
        recipient_public: &[u8; KEY_LEN],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut info = Vec::with_capacity(LABEL.len() + 6 + 64 + 64);
        info.extend_from_slice(LABEL);
        for (name, field) in [
            ("op", self.op),
            ("owner", self.owner),
            ("key_ref", self.key_ref),
        ] {
            let len = u16::try_from(field.len()).map_err(|_| EnvelopeError::FieldLength {
                field: name,
                got: field.len(),
                expected: u16::MAX as usize,
            })?;
            info.extend_from_slice(&len.to_be_bytes());
            info.extend_from_slice(field.as_bytes());
        }
        info.extend_from_slice(eph_public);
        info.extend_from_slice(recipient_public);
        Ok(info)
    }
}

/// The key a reply to one request is sealed under. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReplyKey([u8; 32]);

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(<redacted>)")
    }
}

impl ReplyKey {
    /// Seals `reply` (fresh random nonce): `nonce ‖ ct ‖ tag`.
    ///
    /// # Errors
    /// [`EnvelopeError::Backend`] if the random source fails.
    pub fn seal(&self, reply: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.seal_with(x25519::random()?, reply)
    }

    pub(crate) fn seal_with(
        &self,
        nonce: [u8; NONCE_LEN],
        reply: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let ct = cipher(&self.0)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: reply,
                    aad: REPLY_AAD,
                },
            )
            .map_err(|_| EnvelopeError::Backend)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a sealed reply (what the app does; the enclave's tests use it).
    ///
    /// # Errors
    /// [`EnvelopeError::Truncated`] or [`EnvelopeError::Decrypt`].
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(EnvelopeError::Truncated {
                got: sealed.len(),
                min: NONCE_LEN + TAG_LEN,
            });
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Backend)?;
        cipher(&self.0)
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: REPLY_AAD,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| EnvelopeError::Decrypt)
    }
}

/// An opened request: its plaintext and the key its reply must be sealed under.
#[derive(Debug)]
pub struct Opened {
    /// The request's plaintext (JSON for every vault operation).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The reply key.
    pub reply_key: ReplyKey,
}

/// Opens a request envelope sealed to `our_private` (whose public half is `our_public`) for
/// `binding`.
///
/// # Errors
/// [`EnvelopeError::Truncated`], the key errors of X25519, or [`EnvelopeError::Decrypt`] when the
/// key, any bound field or any byte is wrong.
pub fn open(
    our_private: &PrivateKey,
    our_public: &[u8; KEY_LEN],
    binding: &Binding<'_>,
    envelope: &[u8],
) -> Result<Opened, EnvelopeError> {
    if envelope.len() < MIN_REQUEST_LEN {
        return Err(EnvelopeError::Truncated {
            got: envelope.len(),
            min: MIN_REQUEST_LEN,
        });
    }
    let (eph, rest) = envelope.split_at(KEY_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let eph: &[u8; KEY_LEN] = eph.try_into().map_err(|_| EnvelopeError::Backend)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Backend)?;
    let okm =
        x25519::agree_and_expand::<64>(our_private, eph, LABEL, &binding.info(eph, our_public)?)?;
    let (k_req, k_reply) = split(&okm);
    let plaintext = cipher(&k_req)
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ct,
                aad: REQUEST_AAD,
            },
        )
        .map_err(|_| EnvelopeError::Decrypt)?;
    Ok(Opened {
        plaintext: Zeroizing::new(plaintext),
        reply_key: k_reply,
    })
}

/// Seals a request to `recipient_public` for `binding`, as an app does (fresh ephemeral key and
/// nonce). Returns the envelope and the key its reply will come under. The enclave never needs
/// this; its tests and the test harness do.
///
/// # Errors
/// The key errors of X25519; [`EnvelopeError::Backend`] if the random source fails.
pub fn seal_request(
    recipient_public: &[u8; KEY_LEN],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), EnvelopeError> {
    seal_request_with(
        &x25519::generate()?,
        x25519::random()?,
        recipient_public,
        binding,
        plaintext,
    )
}

pub(crate) fn seal_request_with(
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    recipient_public: &[u8; KEY_LEN],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), EnvelopeError> {
    let eph_public = x25519::public_key_bytes(ephemeral)?;
    let okm = x25519::agree_and_expand::<64>(
        ephemeral,
        recipient_public,
        LABEL,
        &binding.info(&eph_public, recipient_public)?,
    )?;
    let (k_req, k_reply) = split(&okm);
    let ct = cipher(&k_req)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: REQUEST_AAD,
            },
        )
        .map_err(|_| EnvelopeError::Backend)?;
    let mut out = Vec::with_capacity(KEY_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(&eph_public);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok((out, k_reply))
}

fn split(okm: &[u8; 64]) -> (Zeroizing<[u8; 32]>, ReplyKey) {
    let mut k_req = Zeroizing::new([0u8; 32]);
    k_req.copy_from_slice(&okm[..32]);
    let mut k_reply = [0u8; 32];
    k_reply.copy_from_slice(&okm[32..]);
    (k_req, ReplyKey(k_reply))
}

/// The cipher zeroizes its key copy on drop (`ZeroizeOnDrop` in chacha20poly1305 0.10).
fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Binding<'static> = Binding {
        op: "pin.unlock",
        owner: "user-1",
        key_ref: "utk-00",
    };

    fn pair() -> (PrivateKey, [u8; 32]) {
        let k = x25519::generate().unwrap();
        let p = x25519::public_key_bytes(&k).unwrap();
        (k, p)
    }

    #[test]
    fn round_trip_and_reply() {
        let (k, p) = pair();
        let (env, app_reply) = seal_request(&p, &B, br#"{"pin":"123456"}"#).unwrap();
        let opened = open(&k, &p, &B, &env).unwrap();
        assert_eq!(opened.plaintext.as_slice(), br#"{"pin":"123456"}"#);
        let sealed = opened.reply_key.seal(b"ok").unwrap();
        assert_eq!(app_reply.open(&sealed).unwrap().as_slice(), b"ok");
        // A reply is not a request and vice versa (distinct AAD).
        assert!(opened.reply_key.open(&env[KEY_LEN..]).is_err());
    }

    #[test]
    fn every_bound_field_and_every_byte_matters() {
        let (k, p) = pair();
        let (env, _) = seal_request(&p, &B, b"x").unwrap();
        for other in [
            Binding {
                op: "pin.change",
                ..B
            },
            Binding {
                owner: "user-2",
                ..B
            },
            Binding {
                key_ref: "utk-01",
                ..B
            },
            // Length prefixes: moving a byte between fields changes the info.
            Binding {
                op: "pin.unlockuser-1",
                owner: "",
                ..B
            },
        ] {
            assert_eq!(
                open(&k, &p, &other, &env).unwrap_err(),
                EnvelopeError::Decrypt
            );
        }
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(open(&k, &p, &B, &bad).is_err(), "byte {i}");
        }
        let (other_k, _) = pair();
        assert!(open(&other_k, &p, &B, &env).is_err(), "wrong key");
        assert!(matches!(
            open(&k, &p, &B, &env[..MIN_REQUEST_LEN - 1]),
            Err(EnvelopeError::Truncated { .. })
        ));
    }

    /// The known-answer vector of docs/VAULT.md (app-client/tests/vectors.rs checks the same
    /// bytes with RustCrypto).
    #[test]
    fn known_answer_vector() {
        use aws_lc_rs::agreement::X25519;
        let recipient = PrivateKey::from_private_key(&X25519, &[0x11; 32]).unwrap();
        let recipient_public = x25519::public_key_bytes(&recipient).unwrap();
        let ephemeral = PrivateKey::from_private_key(&X25519, &[0x22; 32]).unwrap();
        let binding = Binding {
            op: "pin.unlock",
            owner: "user-1",
            key_ref: "utk-0011223344556677",
        };
        let (env, reply_key) = seal_request_with(
            &ephemeral,
            [0x33; 24],
            &recipient_public,
            &binding,
            br#"{"pin":"123456"}"#,
        )
        .unwrap();
        assert_eq!(hex::encode(recipient_public), VECTOR_RECIPIENT_PUBLIC);
        assert_eq!(hex::encode(&env), VECTOR_REQUEST);
        let opened = open(&recipient, &recipient_public, &binding, &env).unwrap();
        assert_eq!(opened.plaintext.as_slice(), br#"{"pin":"123456"}"#);
        let reply = reply_key
            .seal_with([0x44; 24], br#"{"status":"unlocked"}"#)
            .unwrap();
        assert_eq!(hex::encode(&reply), VECTOR_REPLY);
    }

    const VECTOR_RECIPIENT_PUBLIC: &str =
        "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13";
    const VECTOR_REQUEST: &str = "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20333333333333333333333333333333333333333333333333598f44e2dc0689ab52968c7871db2970c84dba7f0a050bf525e5c15f77f47387";
    const VECTOR_REPLY: &str = "44444444444444444444444444444444444444444444444426deee15198e83ca77bef1a9027c9358db9ecf792297282e2024bbd3907359772152abc8ed";

    #[test]
    fn replies_from_another_request_do_not_open() {
        let (k, p) = pair();
        let (env1, r1) = seal_request(&p, &B, b"a").unwrap();
        let (_env2, r2) = seal_request(&p, &B, b"b").unwrap();
        let o1 = open(&k, &p, &B, &env1).unwrap();
        let sealed = o1.reply_key.seal(b"reply").unwrap();
        assert!(r1.open(&sealed).is_ok());
        assert!(r2.open(&sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(r1.open(&bad).is_err());
    }
}
