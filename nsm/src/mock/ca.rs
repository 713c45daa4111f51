//! The mock's P-384 certificate chain: root → intermediate → leaf, shaped like the AWS chain.
//!
//! - Root: CA without a path length limit, keyCertSign; 10 years; persisted by `store.rs`.
//! - Intermediate: CA, pathLen 0; 1 year; per process.
//! - Leaf: `CA:FALSE`, digitalSignature + nonRepudiation, no Authority Key Identifier (like AWS);
//!   3 hours; per process, reissued before it expires.
//!
//! rcgen builds the certificates (with aws-lc-rs underneath); the leaf's COSE signatures use an
//! aws-lc-rs key with fixed-length `r || s` output, loaded from the same PKCS#8 bytes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P384_SHA384_FIXED_SIGNING};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::document::ES384_SIGNATURE_LEN;
use crate::NsmError;

/// Every mock certificate's subject CN contains this, so nobody mistakes one for AWS's.
pub const MOCK_CN_MARKER: &str = "VettID MOCK NSM (dev only)";

const ROOT_CN: &str = "VettID MOCK NSM (dev only) root";
const INTERMEDIATE_CN: &str = "VettID MOCK NSM (dev only) intermediate";
const ORGANIZATION: &str = "VettID dev (not AWS)";

const MINUTE_MS: u64 = 60 * 1000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Root lifetime: 10 years from creation.
pub const ROOT_LIFETIME_MS: u64 = 3650 * DAY_MS;
/// Intermediate lifetime: 1 year from issue.
pub const INTERMEDIATE_LIFETIME_MS: u64 = 365 * DAY_MS;
/// Leaf lifetime: 3 hours from issue, like the AWS signing certificate.
pub const LEAF_LIFETIME_MS: u64 = 3 * HOUR_MS;
/// The leaf is reissued once it is this close to expiry, so a document is always usable for a
/// while after it is made.
pub const LEAF_REFRESH_MARGIN_MS: u64 = 30 * MINUTE_MS;

/// Certificates start this long before their issue time, to absorb clock skew between the
/// enclave and its verifiers (AWS leaves start a few seconds early).
const BACKDATE_MS: u64 = MINUTE_MS;

/// The root's `notBefore`: 2020-01-01T00:00:00Z rather than its creation time, so tests may pin
/// the mock's clock to any date since 2020 (the real sample documents are from 2022–2025) and
/// still get a chain a verifier accepts at the document's own timestamp.
const ROOT_NOT_BEFORE_MS: u64 = 1_577_836_800_000;

// === Root ===

/// The mock root: its key (kept to sign intermediates) and its certificate.
pub(crate) struct Root {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
    pem: String,
}

impl Root {
    /// A fresh root valid for [`ROOT_LIFETIME_MS`] from `now_ms`. Returns the PKCS#8 key bytes too,
    /// for the caller to persist.
    pub(crate) fn generate(
        rng: &SystemRandom,
        now_ms: u64,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), NsmError> {
        let pkcs8 = generate_pkcs8(rng)?;
        let key = KeyPair::try_from(pkcs8.as_slice())?;
        let mut params = root_params();
        params.not_before = to_date(ROOT_NOT_BEFORE_MS.min(now_ms))?;
        params.not_after = to_date(now_ms.saturating_add(ROOT_LIFETIME_MS))?;
        let cert = params.self_signed(&key)?;
        let root = Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        };
        Ok((root, pkcs8))
    }

    /// Rebuild a stored root from its PKCS#8 key and PEM certificate.
    ///
    /// The issuer name and key identifier of the intermediates come from [`root_params`] and the
    /// key, which is what the stored certificate was built from; the checks below make sure the
    /// files really are such a pair.
    ///
    /// # Errors
    /// A short reason when the files do not form a mock root.
    pub(crate) fn from_parts(pkcs8: &[u8], pem_text: &str) -> Result<Self, &'static str> {
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8)
            .map_err(|_| "mock-root.key is not a P-384 PKCS#8 key")?;
        let key = KeyPair::try_from(pkcs8).map_err(|_| "mock-root.key is not a usable key")?;
        let pem = pem::parse(pem_text).map_err(|_| "mock-root.pem is not PEM")?;
        if pem.tag() != "CERTIFICATE" {
            return Err("mock-root.pem does not hold a CERTIFICATE");
        }
        let der = pem.contents().to_vec();
        // Without an X.509 parser in the release dependency set, check containment: the
        // certificate must carry this key's public point and the mock root's name.
        if !contains(&der, signer.public_key().as_ref()) {
            return Err("mock-root.pem does not match mock-root.key; delete both to start over");
        }
        if !contains(&der, ROOT_CN.as_bytes()) {
            return Err("mock-root.pem is not a VettID mock root; delete both to start over");
        }
        Ok(Self {
            key,
            params: root_params(),
            der,
            pem: pem_text.to_owned(),
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }
}

fn root_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(ROOT_CN);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

// === Intermediate ===

/// The per-process intermediate CA, pathLen 0, signed by the root.
pub(crate) struct Intermediate {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl Intermediate {
    pub(crate) fn issue(root: &Root, rng: &SystemRandom, now_ms: u64) -> Result<Self, NsmError> {
        let pkcs8 = generate_pkcs8(rng)?;
        let key = KeyPair::try_from(pkcs8.as_slice())?;
        let not_before_ms = whole_seconds(now_ms.saturating_sub(BACKDATE_MS));
        let not_after_ms = whole_seconds(now_ms.saturating_add(INTERMEDIATE_LIFETIME_MS));
        let mut params = CertificateParams::default();
        params.distinguished_name = name(INTERMEDIATE_CN);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_date(not_before_ms)?;
        params.not_after = to_date(not_after_ms)?;
        let issuer = Issuer::from_params(&root.params, &root.key);
        let der = params.signed_by(&key, &issuer)?.der().to_vec();
        Ok(Self {
            key,
            params,
            der,
            not_before_ms,
            not_after_ms,
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// Can a leaf issued at `now_ms` live out its whole lifetime under this intermediate?
    pub(crate) fn covers_leaf_issued_at(&self, now_ms: u64) -> bool {
        now_ms >= self.not_before_ms && now_ms.saturating_add(LEAF_LIFETIME_MS) < self.not_after_ms
    }
}

// === Leaf ===

/// The per-process signing certificate and its COSE signing key.
pub(crate) struct Leaf {
    signer: EcdsaKeyPair,
    der: Vec<u8>,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl Leaf {
    pub(crate) fn issue(
        intermediate: &Intermediate,
        module_id: &str,
        rng: &SystemRandom,
        now_ms: u64,
    ) -> Result<Self, NsmError> {
        let pkcs8 = generate_pkcs8(rng)?;
        let key = KeyPair::try_from(pkcs8.as_slice())?;
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8)
            .map_err(|_| NsmError::MockCrypto("loading the leaf key"))?;
        let not_before_ms = whole_seconds(now_ms.saturating_sub(BACKDATE_MS));
        let not_after_ms = whole_seconds(now_ms.saturating_add(LEAF_LIFETIME_MS));
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("{MOCK_CN_MARKER} leaf {module_id}"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        params.not_before = to_date(not_before_ms)?;
        params.not_after = to_date(not_after_ms)?;
        let issuer = Issuer::from_params(&intermediate.params, &intermediate.key);
        let der = params.signed_by(&key, &issuer)?.der().to_vec();
        Ok(Self {
            signer,
            der,
            not_before_ms,
            not_after_ms,
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// Reissue when the leaf is within [`LEAF_REFRESH_MARGIN_MS`] of expiry, or when the clock
    /// has moved before its start (a test pinning an earlier time).
    pub(crate) fn needs_refresh(&self, now_ms: u64) -> bool {
        now_ms < self.not_before_ms
            || now_ms.saturating_add(LEAF_REFRESH_MARGIN_MS) >= self.not_after_ms
    }

    /// ES384 over `message`, raw `r || s`.
    pub(crate) fn sign(
        &self,
        rng: &SystemRandom,
        message: &[u8],
    ) -> Result<[u8; ES384_SIGNATURE_LEN], NsmError> {
        let sig = self
            .signer
            .sign(rng, message)
            .map_err(|_| NsmError::MockCrypto("signing the document"))?;
        sig.as_ref()
            .try_into()
            .map_err(|_| NsmError::MockCrypto("signature length check"))
    }
}

// === helpers ===

fn generate_pkcs8(rng: &SystemRandom) -> Result<Zeroizing<Vec<u8>>, NsmError> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, rng)
        .map_err(|_| NsmError::MockCrypto("P-384 key generation"))?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Certificate times have one-second resolution; keep our copies of them exact.
fn whole_seconds(ms: u64) -> u64 {
    ms - ms % 1000
}

fn to_date(ms: u64) -> Result<OffsetDateTime, NsmError> {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| NsmError::MockClock { now_ms: ms })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
