//! The v2 envelope, app side (docs/VAULT.md "The v2 envelope" is the normative text).
//!
//! Written from that text with RustCrypto (x25519-dalek, hkdf, chacha20poly1305), independently
//! of the enclave's aws-lc implementation, so the two agreeing on the wire and on the vectors in
//! `tests/vectors.rs` is evidence that the text says what both do.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// HKDF salt and the first bytes of `info`.
pub const LABEL: &[u8] = b"vettid-v2";
/// AAD of a request.
pub const REQUEST_AAD: &[u8] = b"vettid-v2 request";
/// AAD of a reply.
pub const REPLY_AAD: &[u8] = b"vettid-v2 reply";
/// XChaCha20-Poly1305 nonce length.
pub const NONCE_LEN: usize = 24;
/// `key_ref` of `pin.setup` (sealed to the attestation key).
pub const KEY_REF_ATTESTATION: &str = "attestation";
/// `key_ref` of reads (sealed to the vault's own key).
pub const KEY_REF_VAULT: &str = "vault";

/// What a request is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Canonical operation name (`pin.unlock`, …).
    pub op: &'a str,
    /// Owner-space GUID.
    pub owner: &'a str,
    /// UTK id, [`KEY_REF_ATTESTATION`] or [`KEY_REF_VAULT`].
    pub key_ref: &'a str,
}

impl Binding<'_> {
    fn info(&self, eph: &[u8; 32], recipient: &[u8; 32]) -> Result<Vec<u8>, Error> {
        let mut info = LABEL.to_vec();
        for field in [self.op, self.owner, self.key_ref] {
            let len = u16::try_from(field.len()).map_err(|_| Error::FieldTooLong)?;
            info.extend_from_slice(&len.to_be_bytes());
            info.extend_from_slice(field.as_bytes());
        }
        info.extend_from_slice(eph);
        info.extend_from_slice(recipient);
        Ok(info)
    }
}

/// The key the reply to one request comes under; only this app holds it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReplyKey([u8; 32]);

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(<redacted>)")
    }
}

impl ReplyKey {
    /// Opens `nonce ‖ ct ‖ tag`.
    ///
    /// # Errors
    /// [`Error::ReplyNotAuthentic`] for anything that is not this request's reply.
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(Error::ReplyNotAuthentic);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::ReplyNotAuthentic)?;
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: REPLY_AAD,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::ReplyNotAuthentic)
    }
}

/// Seals `plaintext` to `recipient` for `binding` with a fresh ephemeral key and nonce.
///
/// # Errors
/// [`Error::Random`] if the OS random source fails; [`Error::FieldTooLong`].
pub fn seal(
    recipient: &[u8; 32],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), Error> {
    let mut scalar = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(scalar.as_mut()).map_err(|_| Error::Random)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|_| Error::Random)?;
    seal_with(&scalar, nonce, recipient, binding, plaintext)
}

/// [`seal`] with a given ephemeral scalar and nonce (test vectors only: reusing them reuses the
/// keystream).
///
/// # Errors
/// [`Error::WeakKey`] for a recipient key that gives an all-zero secret; [`Error::FieldTooLong`].
pub fn seal_with(
    scalar: &[u8; 32],
    nonce: [u8; NONCE_LEN],
    recipient: &[u8; 32],
    binding: &Binding<'_>,
    plaintext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), Error> {
    let secret = StaticSecret::from(*scalar);
    let eph = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(Error::WeakKey);
    }
    let mut okm = Zeroizing::new([0u8; 64]);
    Hkdf::<Sha256>::new(Some(LABEL), shared.as_bytes())
        .expand(&binding.info(&eph, recipient)?, okm.as_mut())
        .map_err(|_| Error::FieldTooLong)?;
    let mut k_req = Zeroizing::new([0u8; 32]);
    k_req.copy_from_slice(&okm[..32]);
    let mut k_reply = [0u8; 32];
    k_reply.copy_from_slice(&okm[32..]);
    let ct = XChaCha20Poly1305::new((&*k_req).into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: REQUEST_AAD,
            },
        )
        .map_err(|_| Error::Random)?;
    let mut out = Vec::with_capacity(32 + NONCE_LEN + ct.len());
    out.extend_from_slice(&eph);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok((out, ReplyKey(k_reply)))
}
