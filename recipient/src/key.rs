//! The RSA recipient key and the identifier KMS addresses it by.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256,
};
use zeroize::Zeroizing;

use crate::error::RecipientError;

/// Length of the subject key identifier KMS puts in the envelope (a SHA-256 digest).
pub const SKI_LEN: usize = 32;

/// Smallest and largest RSA moduli accepted from [`RecipientKey::from_pkcs8`], in bits.
const MIN_BITS: usize = 2048;
const MAX_BITS: usize = 4096;

/// The subject key identifier KMS uses for a recipient: SHA-256 over the whole SubjectPublicKeyInfo DER (the
/// `public_key` field of the attestation document), not RFC 5280's SHA-1 over the key bits.
///
/// Established from the real KMS sample in `tests/data`: its 32-byte `rid` equals SHA-256 of the 294-byte SPKI
/// of `kms-sample-key.pem`.
pub fn subject_key_identifier(spki_der: &[u8]) -> [u8; SKI_LEN] {
    let mut ski = [0u8; SKI_LEN];
    ski.copy_from_slice(digest::digest(&digest::SHA256, spki_der).as_ref());
    ski
}

/// An RSA private key that KMS wraps content keys to. Use a fresh one for every KMS call: the public half
/// travels in an attestation document through the untrusted parent, and a per-call key limits what one
/// leaked envelope or one timing trace could ever be about.
pub struct RecipientKey {
    key: OaepPrivateDecryptingKey,
    spki: Vec<u8>,
    ski: [u8; SKI_LEN],
}

impl RecipientKey {
    /// Size of the keys [`RecipientKey::generate`] makes (what KMS expects for `RSAES_OAEP_SHA_256`).
    pub const BITS: usize = 2048;

    /// A fresh RSA-2048 key from aws-lc-rs (about 80 ms).
    ///
    /// # Errors
    /// [`RecipientError::Key`] if aws-lc cannot generate or encode the key.
    pub fn generate() -> Result<Self, RecipientError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| RecipientError::Key("RSA key generation failed"))?;
        Self::from_private(key)
    }

    /// Loads an existing key from PKCS#8 DER (tests and tools; the enclave always generates).
    ///
    /// # Errors
    /// [`RecipientError::Key`] if the DER is not an RSA PKCS#8 key of 2048 to 4096 bits.
    pub fn from_pkcs8(pkcs8_der: &[u8]) -> Result<Self, RecipientError> {
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8_der)
            .map_err(|_| RecipientError::Key("not an RSA PKCS#8 private key"))?;
        if !(MIN_BITS..=MAX_BITS).contains(&key.key_size_bits()) {
            return Err(RecipientError::Key("RSA key size outside 2048..=4096 bits"));
        }
        Self::from_private(key)
    }

    fn from_private(key: PrivateDecryptingKey) -> Result<Self, RecipientError> {
        let spki = key
            .public_key()
            .as_der()
            .map_err(|_| RecipientError::Key("public key encoding failed"))?
            .as_ref()
            .to_vec();
        let ski = subject_key_identifier(&spki);
        let key = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| RecipientError::Key("RSA-OAEP key setup failed"))?;
        Ok(Self { key, spki, ski })
    }

    /// The SubjectPublicKeyInfo DER of the public half (294 bytes for RSA-2048): what goes in the attestation
    /// document's `public_key`.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// The identifier an envelope for this key carries ([`subject_key_identifier`] of [`Self::public_key_der`]).
    pub fn subject_key_identifier(&self) -> &[u8; SKI_LEN] {
        &self.ski
    }

    /// Size of an RSA block for this key: the exact length of a valid `encryptedKey`.
    pub(crate) fn modulus_len(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) decryption of a wrapped content key.
    ///
    /// aws-lc's OAEP decoding is constant time; that a ciphertext decoded at all may show in the caller's
    /// timing, which OAEP's chosen-ciphertext security allows for (unlike PKCS#1 v1.5, where it is Bleichenbacher's
    /// oracle).
    pub(crate) fn unwrap_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, RecipientError> {
        if wrapped.len() != self.modulus_len() {
            return Err(RecipientError::Decrypt);
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let len = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| RecipientError::Decrypt)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

// Never prints key material; the SKI is public (it is in every envelope).
impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("bits", &self.key.key_size_bits())
            .field("ski", &HexBytes(&self.ski))
            .finish_non_exhaustive()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}
