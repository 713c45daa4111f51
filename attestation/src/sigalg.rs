//! The one certificate signature algorithm Nitro chains use, ECDSA P-384 with SHA-384, for `rustls-webpki`.
//!
//! webpki ships algorithms only for `ring` and `aws-lc-rs`, which carry C and assembly and do not build for
//! every app target; this adapter backs the same algorithm identifiers with the pure-Rust `p384` crate. Every
//! certificate of every real Nitro chain uses exactly this pair (P-384 key, ecdsa-with-SHA384 signature), so no
//! other algorithm is offered: a chain using anything else fails to build.

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{DerSignature, VerifyingKey};
use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm,
};

/// ECDSA over P-384 with SHA-384; high-S signatures are valid (no low-S rule in X.509).
pub(crate) static ECDSA_P384_SHA384: &dyn SignatureVerificationAlgorithm = &EcdsaP384Sha384;

#[derive(Debug)]
struct EcdsaP384Sha384;

impl SignatureVerificationAlgorithm for EcdsaP384Sha384 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P384
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA384
    }
}
