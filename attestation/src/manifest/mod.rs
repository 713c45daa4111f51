//! The signed PCR manifest: the list of enclave builds an app accepts, published by VettID and signed with an
//! ECDSA P-256 key (AWS KMS) whose public half is compiled into the apps.
//!
//! Wire format (JSON, the one the v1 apps download):
//!
//! ```json
//! {"version": 7, "timestamp": "2026-01-18T00:00:00Z",
//!  "pcr_sets": [{"id": "2026-01-18-v1", "pcr0": "<hex>", "pcr1": "<hex>", "pcr2": "<hex>",
//!                "valid_from": "2026-01-18T00:00:00Z", "valid_until": null, "is_current": true,
//!                "description": "…"}],
//!  "signature": "<base64>"}
//! ```
//!
//! **Signed bytes.** The signature covers the RFC 8785 canonical JSON ([`crate::jcs`]) of the whole manifest
//! object with the `signature` member removed, and nothing else: every other member, known or not, is covered.
//! **Signature encoding.** `signature` is standard base64 (with padding) of the DER-encoded ECDSA signature, the
//! form AWS KMS returns; raw 64-byte `r || s` is refused so there is exactly one encoding. ECDSA P-256 with
//! SHA-256 over the signed bytes; high-S signatures are valid (KMS does not normalise S).
//! **Rules.** `version` is an integer; `timestamp`, `valid_from` and `valid_until` are RFC 3339; there is at
//! least one set; set ids are unique; PCR0/1/2 are required hex (32, 48 or 64 bytes, never all zeros) and
//! optional `pcr3`…`pcr31` add constraints; several sets may be valid at once (rolling updates), each over
//! `valid_from <= t < valid_until` (no `valid_until` means open-ended).
//! **Rollback.** A manifest cannot know which versions an app has seen; apps store the highest verified
//! `version` and call [`VerifiedManifest::ensure_version_at_least`].

mod body;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

use body::Body;
pub use body::ManifestPcrSet;

use crate::jcs::{self, JcsError};
use crate::policy::Policy;

/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Most PCR sets in one manifest.
pub const MAX_PCR_SETS: usize = 256;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest exceeds [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes (limit {MAX_MANIFEST_BYTES})")]
    TooLarge(usize),
    /// Not strict JSON (duplicate key, non-integer number…) or not canonicalisable.
    #[error(transparent)]
    Json(#[from] JcsError),
    /// The top level is not a JSON object.
    #[error("manifest is not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("missing field `{0}`")]
    MissingField(String),
    /// A member has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// Path of the member, for example `pcr_sets[1].pcr0`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `pcr_sets` is empty: a manifest must accept at least one build.
    #[error("manifest has no PCR sets")]
    NoPcrSets,
    /// More than [`MAX_PCR_SETS`] sets.
    #[error("manifest has {0} PCR sets (limit {MAX_PCR_SETS})")]
    TooManySets(usize),
    /// Two sets share an id.
    #[error("duplicate PCR set id {0:?}")]
    DuplicateSetId(String),
    /// `signature` is not base64 of a DER ECDSA signature.
    #[error("signature is not base64 of a DER ECDSA signature")]
    SignatureEncoding,
    /// The pinned public key is neither a P-256 SPKI (DER) nor a SEC1 point.
    #[error("invalid P-256 public key")]
    PublicKey,
    /// The signature does not verify with the pinned key.
    #[error("manifest signature does not verify")]
    BadSignature,
    /// [`sign_manifest`] was given a manifest that already has a `signature`.
    #[error("input already carries a signature")]
    AlreadySigned,
    /// The manifest is older than one the app has already accepted.
    #[error("manifest version {version} is below the minimum {minimum}")]
    Rollback {
        /// This manifest's version.
        version: u64,
        /// The highest version the app has seen.
        minimum: u64,
    },
}

/// A parsed manifest whose signature has not been checked yet; only [`Manifest::verify`] exposes its sets.
#[derive(Debug, Clone)]
pub struct Manifest {
    body: Body,
    signed_bytes: Vec<u8>,
    signature: Signature,
}

impl Manifest {
    /// Parses a signed manifest and computes the exact bytes its signature must cover.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut value = parse_object(bytes)?;
        let signature = match value.as_object_mut().and_then(|m| m.remove("signature")) {
            Some(Value::String(s)) => s,
            Some(_) => return Err(invalid("signature", "not a string")),
            None => return Err(ManifestError::MissingField("signature".into())),
        };
        let der = STANDARD
            .decode(signature)
            .map_err(|_| ManifestError::SignatureEncoding)?;
        let signature = Signature::from_der(&der).map_err(|_| ManifestError::SignatureEncoding)?;
        let body = Body::from_json(&value)?;
        let signed_bytes = jcs::canonicalize(&value)?.into_bytes();
        Ok(Self {
            body,
            signed_bytes,
            signature,
        })
    }

    /// The canonical bytes the signature covers (RFC 8785 JSON of the manifest minus `signature`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed_bytes
    }

    /// Checks the signature with the pinned key: a DER SubjectPublicKeyInfo or a SEC1 point (33 or 65 bytes).
    pub fn verify(&self, public_key: &[u8]) -> Result<VerifiedManifest, ManifestError> {
        let key = if public_key.first() == Some(&0x30) {
            VerifyingKey::from_public_key_der(public_key)
        } else {
            VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| p256::pkcs8::spki::Error::KeyMalformed)
        }
        .map_err(|_| ManifestError::PublicKey)?;
        key.verify(&self.signed_bytes, &self.signature)
            .map_err(|_| ManifestError::BadSignature)?;
        Ok(VerifiedManifest {
            body: self.body.clone(),
        })
    }
}

/// A manifest whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    body: Body,
}

impl VerifiedManifest {
    /// The manifest's version (monotonic; see [`VerifiedManifest::ensure_version_at_least`]).
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// When the manifest was issued, ms since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.body.timestamp_ms
    }

    /// Every set of the manifest, in manifest order.
    pub fn pcr_sets(&self) -> &[ManifestPcrSet] {
        &self.body.sets
    }

    /// The sets whose validity window contains `now_ms` (several during a rolling update).
    pub fn sets_valid_at(&self, now_ms: u64) -> Vec<&ManifestPcrSet> {
        self.body
            .sets
            .iter()
            .filter(|s| s.is_valid_at(now_ms))
            .collect()
    }

    /// A verifier policy accepting exactly the sets valid at `now_ms` (pinned AWS root, default freshness).
    ///
    /// If no set is valid then, the policy is empty and [`crate::verify`] fails with `EmptyPcrPolicy`.
    pub fn policy_at(&self, now_ms: u64) -> Policy {
        Policy::new(
            self.sets_valid_at(now_ms)
                .into_iter()
                .map(|s| s.pcr_set.clone()),
        )
    }

    /// Refuses a manifest older than the highest version the app has already accepted.
    pub fn ensure_version_at_least(&self, minimum: u64) -> Result<(), ManifestError> {
        if self.body.version < minimum {
            return Err(ManifestError::Rollback {
                version: self.body.version,
                minimum,
            });
        }
        Ok(())
    }
}

/// Signs an unsigned manifest (JSON without `signature`) and returns the signed manifest as canonical JSON.
///
/// The input is validated with the same rules as [`Manifest::parse`], so an invalid manifest is never signed.
/// Signing is deterministic (RFC 6979), so the same input and key always give the same bytes.
pub fn sign_manifest(unsigned: &[u8], key: &SigningKey) -> Result<Vec<u8>, ManifestError> {
    let mut value = parse_object(unsigned)?;
    if value.get("signature").is_some() {
        return Err(ManifestError::AlreadySigned);
    }
    Body::from_json(&value)?;
    let signed_bytes = jcs::canonicalize(&value)?;
    let signature: Signature = key.sign(signed_bytes.as_bytes());
    let encoded = STANDARD.encode(signature.to_der().as_bytes());
    if let Some(map) = value.as_object_mut() {
        map.insert("signature".into(), Value::String(encoded));
    }
    Ok(jcs::canonicalize(&value)?.into_bytes())
}

fn parse_object(bytes: &[u8]) -> Result<Value, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let value = jcs::parse_strict(bytes)?;
    if !value.is_object() {
        return Err(ManifestError::NotAnObject);
    }
    Ok(value)
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}
