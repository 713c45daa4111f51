//! The parent's check of the enclave, on every (re)connect: "which code am I about to feed?"
//!
//! The parent sends a fresh 32-byte nonce, gets an NSM document back and verifies it with the same
//! verifier crate the apps use: chain to the pinned AWS root (plus, in dev mode only, the mock NSM
//! root), signature, freshness, the nonce, debug-enclave rejection, and PCR0/1/2 against the
//! accepted sets. Until that passes the link is not offered to the NATS bridge and `/health` says
//! why. This protects the host's operators from feeding requests to an unexpected image; it is not
//! what protects user data (apps verify attestation themselves, KMS enforces PCRs on keys).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use bytes::Bytes;
use vettid_attestation::manifest::{Manifest, VerifiedManifest};
use vettid_attestation::{PcrSet, Policy};
use vettid_link::Connection;
use vettid_protocol::{ParentSide, Response, ToEnclave};

use crate::config::{AttestationConfig, PcrSource};

/// Why the enclave was refused (or the check could not be set up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A configured file could not be read or parsed.
    #[error("attestation setup: {0}")]
    Setup(String),
    /// The enclave did not produce a document.
    #[error("enclave gave no attestation: {0}")]
    NoDocument(String),
    /// The document did not verify (the reason names the failed check).
    #[error("enclave attestation rejected: {0}")]
    Rejected(#[from] vettid_attestation::Error),
}

/// Why a configured key or certificate file could not be turned into DER.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file looks like PEM (a `-----BEGIN` line) but has no key or certificate section.
    #[error("PEM file has no key or certificate section")]
    NoSection,
    /// A section is malformed: bad base64, a missing end line, and so on.
    #[error("not valid PEM: {0}")]
    Invalid(#[from] rustls_pki_types::pem::Error),
}

/// What passed, for logs and `/health`.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The enclave's module id.
    pub module_id: String,
    /// The accepted PCR set that matched (None under the dev any-PCRs policy).
    pub pcr_set: Option<String>,
    /// Hex PCR0 of the enclave.
    pub pcr0: String,
}

enum Accepted {
    Manifest(VerifiedManifest),
    Sets(Vec<PcrSet>),
    DevAny,
}

/// The loaded policy.
pub struct EnclaveCheck {
    accepted: Accepted,
    manifest_bytes: Option<Bytes>,
    dev_root: Option<Vec<u8>>,
    max_age: Duration,
}

impl EnclaveCheck {
    /// Reads and checks the configured files (the manifest's signature is verified here, once).
    ///
    /// # Errors
    /// [`CheckError::Setup`] naming the file and the problem.
    pub fn load(cfg: &AttestationConfig) -> Result<Self, CheckError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| CheckError::Setup(format!("{}: {e}", p.display())))
        };
        let (accepted, manifest_bytes) = match &cfg.pcrs {
            PcrSource::Manifest { path, public_key } => {
                let bytes = read(path)?;
                let key = pem_to_der(&read(public_key)?)
                    .map_err(|e| CheckError::Setup(format!("{}: {e}", public_key.display())))?;
                let verified = Manifest::parse(&bytes)
                    .and_then(|m| m.verify(&key))
                    .map_err(|e| CheckError::Setup(format!("{}: {e}", path.display())))?;
                (Accepted::Manifest(verified), Some(Bytes::from(bytes)))
            }
            PcrSource::Sets(sets) => {
                let sets = sets
                    .iter()
                    .map(|(id, p0, p1, p2)| PcrSet::from_hex(id.clone(), p0, p1, p2))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CheckError::Setup(format!("attestation.pcr_sets: {e}")))?;
                (Accepted::Sets(sets), None)
            }
            PcrSource::DevAny => (Accepted::DevAny, None),
        };
        let dev_root = cfg
            .dev_trust_root
            .as_deref()
            .map(|p| {
                read(p).and_then(|b| {
                    pem_to_der(&b).map_err(|e| CheckError::Setup(format!("{}: {e}", p.display())))
                })
            })
            .transpose()?;
        Ok(Self {
            accepted,
            manifest_bytes,
            dev_root,
            max_age: cfg.max_age,
        })
    }

    /// The manifest to hand to the enclave (and through it to apps), if one is configured.
    pub fn manifest_bytes(&self) -> Option<&Bytes> {
        self.manifest_bytes.as_ref()
    }

    fn policy(&self, now_ms: u64, nonce: &[u8]) -> Result<Policy, CheckError> {
        let mut policy = match &self.accepted {
            Accepted::Manifest(m) => m.policy_at(now_ms),
            Accepted::Sets(sets) => Policy::new(sets.iter().cloned()),
            Accepted::DevAny => Policy::skip_pcr_check_unsafe(),
        };
        if let Some(root) = &self.dev_root {
            policy = policy
                .with_extra_root(root.clone())
                .map_err(|e| CheckError::Setup(format!("dev_trust_root: {e}")))?;
        }
        Ok(policy
            .with_max_age_ms(self.max_age.as_millis() as u64)
            .expect_nonce(nonce.to_vec()))
    }

    /// Challenges the enclave on `conn` and verifies its answer.
    ///
    /// # Errors
    /// [`CheckError`] saying which step failed.
    pub async fn check(
        &self,
        conn: &Connection<ParentSide>,
        timeout: Duration,
    ) -> Result<Checked, CheckError> {
        let mut nonce = [0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CheckError::Setup("no randomness".into()))?;
        let document = match conn
            .request(
                ToEnclave::Attest {
                    nonce: Bytes::copy_from_slice(&nonce),
                },
                timeout,
            )
            .await
        {
            Ok(Response::Attestation { document }) => document,
            Ok(other) => {
                return Err(CheckError::NoDocument(format!(
                    "unexpected answer {other:?}"
                )))
            }
            Err(e) => return Err(CheckError::NoDocument(e.to_string())),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let verified =
            vettid_attestation::verify(&document, &self.policy(now_ms, &nonce)?, now_ms)?;
        Ok(Checked {
            module_id: verified.module_id,
            pcr_set: verified.matched_pcr_set,
            pcr0: verified.pcrs.get(&0).map(hex::encode).unwrap_or_default(),
        })
    }
}

/// DER from a PEM file (its first key or certificate section), or the bytes unchanged if they
/// are not PEM (no `-----BEGIN` line). A PEM file that does not decode is an error: it used to
/// become empty DER, which then failed later with a misleading "bad key".
///
/// # Errors
/// [`PemError`] for a PEM file without a usable section or with a malformed one.
pub fn pem_to_der(bytes: &[u8]) -> Result<Vec<u8>, PemError> {
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    match rustls_pki_types::pem::from_buf(&mut &bytes[..])? {
        Some((_, der)) => Ok(der),
        None => Err(PemError::NoSection),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_becomes_der_and_der_passes_through() {
        let pem = b"-----BEGIN PUBLIC KEY-----\nAQID\nBA==\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_to_der(pem).unwrap(), vec![1, 2, 3, 4]);
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        assert_eq!(pem_to_der(&der).unwrap(), der.to_vec());
    }

    #[test]
    fn bad_pem_is_a_typed_error_not_empty_der() {
        let bad_base64 = b"-----BEGIN PUBLIC KEY-----\n!!not base64!!\n-----END PUBLIC KEY-----\n";
        assert!(matches!(pem_to_der(bad_base64), Err(PemError::Invalid(_))));
        let unterminated = b"-----BEGIN CERTIFICATE-----\nAQID\n";
        assert!(matches!(
            pem_to_der(unterminated),
            Err(PemError::Invalid(_))
        ));
        let no_section = b"-----BEGIN NOTHING WE READ-----\nAQID\n-----END NOTHING WE READ-----\n";
        assert!(matches!(pem_to_der(no_section), Err(PemError::NoSection)));
    }
}
