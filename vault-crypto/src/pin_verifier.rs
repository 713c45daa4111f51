//! The PIN verifier v1 lacks (G2): a wrong PIN is detected on every request, warm or cold vault.
//!
//! ```text
//! verifier = HMAC-SHA256(key = DEK, msg = "vettid-pin-verifier-v1")      32 bytes
//! ```
//!
//! In v1 a wrong PIN just produced a different DEK; a warm vault never noticed and a cold one noticed only
//! through an AES-GCM failure on `vault_state.enc`. We store this verifier at enrolment (and on every PIN
//! change) and compare on every unlock / change, before touching any state and after counting the attempt.
//!
//! Why this does not weaken the PIN:
//!
//! - To test a PIN guess against the verifier an attacker must compute the DEK for that guess, i.e. run the
//!   full Argon2id (256 MiB, t = 3) **and** know the sealed material M. That is exactly the work and
//!   knowledge any stored DEK-encrypted object already offers (decrypting it is also a DEK check), so the
//!   verifier adds no faster oracle. It is a PRF output under the DEK, so it reveals nothing about the DEK.
//! - It is stored inside the enclave's sealed record, never in the clear: the host does not even see it.
//! - The fixed label gives this HMAC use of the DEK its own domain: no other construction keyed by the DEK
//!   (AEAD of stored objects, future derived keys) computes HMAC-SHA256 over this message, so the verifier
//!   can be neither a key nor a tag used elsewhere.
//!
//! Online guessing is bounded by the attempt counter the vault keeps; offline guessing by M being sealed.

use aws_lc_rs::hmac;

use crate::secret::Dek;

/// Domain-separation label; changing it invalidates every stored verifier.
pub const LABEL: &[u8] = b"vettid-pin-verifier-v1";
/// Verifier length in bytes.
pub const LEN: usize = 32;

/// A stored verifier. Redacted in `Debug` (not secret on its own, but there is no reason to log it).
#[derive(Clone, PartialEq, Eq)]
pub struct PinVerifier([u8; LEN]);

/// A stored verifier had the wrong length.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("PIN verifier must be {LEN} bytes, got {0}")]
pub struct VerifierLengthError(pub usize);

impl PinVerifier {
    /// Compute the verifier of `dek` (at enrolment and after a PIN change).
    pub fn derive(dek: &Dek) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, dek.expose());
        let mut out = [0u8; LEN];
        out.copy_from_slice(hmac::sign(&key, LABEL).as_ref());
        Self(out)
    }

    /// Restore a verifier from the sealed record.
    ///
    /// # Errors
    /// [`VerifierLengthError`] unless exactly [`LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifierLengthError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| VerifierLengthError(bytes.len()))
    }

    /// The bytes to store in the sealed record.
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// Whether `dek` (derived from a presented PIN) is the enrolled one. Constant time: HMAC verification
    /// in aws-lc-rs compares tags without early exit.
    pub fn matches(&self, dek: &Dek) -> bool {
        check(dek, self)
    }
}

/// Whether `dek` produces `stored`; constant time.
pub fn check(dek: &Dek, stored: &PinVerifier) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, dek.expose());
    hmac::verify(&key, LABEL, &stored.0).is_ok()
}

impl std::fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinVerifier(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dek::{derive_dek, KdfParams, Pin};
    use crate::secret::Material;

    const SMALL: KdfParams = KdfParams::for_tests(64, 1, 1);

    #[test]
    fn wrong_pin_is_detected_every_time() {
        let m = Material::from_bytes([3; 32]);
        let enrolled = derive_dek(&Pin::parse("2468").unwrap(), &m, "owner", &SMALL).unwrap();
        let verifier = PinVerifier::derive(&enrolled);
        // Simulate a cold vault: the verifier comes back from storage as bytes.
        let stored = PinVerifier::from_bytes(verifier.as_bytes()).unwrap();
        for _ in 0..3 {
            assert!(check(
                &derive_dek(&Pin::parse("2468").unwrap(), &m, "owner", &SMALL).unwrap(),
                &stored
            ));
            assert!(!stored
                .matches(&derive_dek(&Pin::parse("2469").unwrap(), &m, "owner", &SMALL).unwrap()));
        }
    }

    #[test]
    fn stored_bytes_are_length_checked_and_not_the_dek() {
        let dek = Dek::from_bytes([5; 32]);
        let v = PinVerifier::derive(&dek);
        assert_ne!(v.as_bytes(), dek.expose());
        assert_eq!(
            PinVerifier::from_bytes(&[0; 31]).unwrap_err(),
            VerifierLengthError(31)
        );
        assert_eq!(
            PinVerifier::from_bytes(&[0; 33]).unwrap_err(),
            VerifierLengthError(33)
        );
        let mut tampered = *v.as_bytes();
        tampered[31] ^= 1;
        assert!(!check(&dek, &PinVerifier::from_bytes(&tampered).unwrap()));
        assert_eq!(format!("{v:?}"), "PinVerifier(<redacted>)");
    }
}
