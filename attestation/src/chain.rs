//! The certificate chain: leaf, `cabundle[n-1]` … `cabundle[1]`, then a trusted root, checked at the document's
//! own timestamp.
//!
//! Path building and the X.509 rules it covers (signatures, validity of leaf and intermediates, CA flag,
//! pathLen, critical extensions) are `rustls-webpki`'s, fed with one pure-Rust P-384 algorithm. What webpki does
//! not check for us is checked here after the path is built: keyCertSign on every CA, digitalSignature on the
//! leaf, and the validity of the root itself (AWS's procedure requires all three). `cabundle[0]` is never
//! offered to webpki: a bundle can carry any self-signed root, so only the pinned AWS root (and roots the
//! policy adds explicitly) can end a path.

use std::time::Duration;

use der::oid::AssociatedOid;
use der::Decode;
use p384::ecdsa::VerifyingKey;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

use crate::error::{Error, Malformed};
use crate::sigalg::ECDSA_P384_SHA384;

/// DER of the AWS Nitro Enclaves root (`CN=aws.nitro-enclaves`), valid 2019-10-28 to 2049-10-28.
pub const AWS_NITRO_ROOT_DER: &[u8] = include_bytes!("../roots/aws-nitro-root.der");
/// SHA-256 of [`AWS_NITRO_ROOT_DER`], as AWS publishes it; a test checks the embedded file against it.
pub const AWS_NITRO_ROOT_SHA256_HEX: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Public facts about one certificate of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertInfo {
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    /// Issuer distinguished name (RFC 4514 string).
    pub issuer: String,
    /// Serial number, lowercase hex of the DER integer bytes.
    pub serial_hex: String,
    /// Start of validity, ms since the Unix epoch.
    pub not_before_ms: u64,
    /// End of validity, ms since the Unix epoch.
    pub not_after_ms: u64,
    /// SHA-256 of the DER certificate.
    pub sha256: [u8; 32],
}

/// The P-384 key of the leaf certificate, the only key type Nitro uses.
pub(crate) fn leaf_key(leaf_der: &[u8]) -> Result<VerifyingKey, Error> {
    let cert =
        Certificate::from_der(leaf_der).map_err(|e| Malformed::Certificate(e.to_string()))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(Error::UnsupportedAlgorithm(format!(
            "leaf key {} (curve {curve:?}); only P-384 is accepted",
            spki.algorithm.oid
        )));
    }
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| Malformed::Certificate("invalid P-384 public key".into()).into())
}

/// Nitro certificates carry no extended key usage; accept any (webpki applies this to every certificate).
struct AnyEku;

impl ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, mut iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        iter.try_for_each(|id| id.map(drop))
    }
}

/// Validates the chain at `timestamp_ms` and returns it leaf first, root last.
pub(crate) fn validate(
    leaf_der: &[u8],
    cabundle: &[Vec<u8>],
    roots: &[&[u8]],
    timestamp_ms: u64,
) -> Result<Vec<CertInfo>, Error> {
    let root_certs: Vec<CertificateDer<'_>> =
        roots.iter().map(|der| CertificateDer::from(*der)).collect();
    let anchors = root_certs
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<TrustAnchor<'_>>, _>>()
        .map_err(|e| Error::InvalidPolicy(format!("trusted root: {e}")))?;
    let leaf = CertificateDer::from(leaf_der);
    let end_entity =
        EndEntityCert::try_from(&leaf).map_err(|e| Error::BadChain(format!("leaf: {e}")))?;
    // cabundle[0] is left out on purpose: only `roots` may end a path.
    let intermediates: Vec<CertificateDer<'_>> = cabundle
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(Duration::from_millis(timestamp_ms));

    let path = end_entity
        .verify_for_usage(
            &[ECDSA_P384_SHA384],
            &anchors,
            &intermediates,
            time,
            AnyEku,
            None,
            None,
        )
        .map_err(|e| map_webpki_error(e, cabundle, roots))?;

    let root_index = anchors
        .iter()
        .position(|a| {
            a.subject == path.anchor().subject
                && a.subject_public_key_info == path.anchor().subject_public_key_info
        })
        .ok_or(Error::UntrustedRoot)?;

    let mut chain = Vec::with_capacity(cabundle.len() + 1);
    let leaf = parse(leaf_der)?;
    require_key_usage(&leaf, "leaf", KeyUsage::digital_signature)?;
    chain.push(info(&leaf, leaf_der));
    for intermediate in path.intermediate_certificates() {
        let der = intermediate.der();
        let cert = parse(&der)?;
        require_key_usage(&cert, "intermediate CA", KeyUsage::key_cert_sign)?;
        chain.push(info(&cert, &der));
    }
    let root_der = roots[root_index];
    let root = parse(root_der)?;
    check_root(&root, timestamp_ms)?;
    chain.push(info(&root, root_der));
    Ok(chain)
}

/// Checks an extra root before a policy accepts it: a CA certificate that webpki can use as an anchor.
pub(crate) fn check_extra_root(der: &[u8]) -> Result<(), Error> {
    webpki::anchor_from_trusted_cert(&CertificateDer::from(der))
        .map_err(|e| Error::InvalidPolicy(format!("extra root: {e}")))?;
    let cert =
        Certificate::from_der(der).map_err(|e| Error::InvalidPolicy(format!("extra root: {e}")))?;
    match extension::<BasicConstraints>(&cert) {
        Ok(Some(bc)) if bc.ca => Ok(()),
        _ => Err(Error::InvalidPolicy(
            "extra root is not a CA certificate".into(),
        )),
    }
}

fn map_webpki_error(error: webpki::Error, cabundle: &[Vec<u8>], roots: &[&[u8]]) -> Error {
    match error {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Error::CertificateTime(error.to_string())
        }
        // No issuer found, or a signature that fails (a forged CA named like a trusted root): if the bundle
        // claims a trusted root in cabundle[0] it is a broken chain, otherwise it leads to a foreign root.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            if cabundle
                .first()
                .is_some_and(|c| roots.contains(&c.as_slice()))
            {
                Error::BadChain(error.to_string())
            } else {
                Error::UntrustedRoot
            }
        }
        other => Error::BadChain(other.to_string()),
    }
}

/// The root is configuration, not input, but AWS still asks for its validity and CA key usage.
fn check_root(root: &Certificate, timestamp_ms: u64) -> Result<(), Error> {
    let validity = &root.tbs_certificate.validity;
    let now = Duration::from_millis(timestamp_ms);
    if now < validity.not_before.to_unix_duration() || now > validity.not_after.to_unix_duration() {
        return Err(Error::CertificateTime(
            "trusted root not valid at the document timestamp".into(),
        ));
    }
    match extension::<KeyUsage>(root)? {
        Some(ku) if !ku.key_cert_sign() => Err(Error::BadChain("root lacks keyCertSign".into())),
        _ => Ok(()),
    }
}

/// Requires the keyUsage extension with the given bit (every real Nitro certificate carries it).
fn require_key_usage(
    cert: &Certificate,
    role: &str,
    bit: fn(&KeyUsage) -> bool,
) -> Result<(), Error> {
    match extension::<KeyUsage>(cert)? {
        Some(ku) if bit(&ku) => Ok(()),
        Some(_) => Err(Error::BadChain(format!(
            "{role} key usage does not allow this use"
        ))),
        None => Err(Error::BadChain(format!(
            "{role} has no key usage extension"
        ))),
    }
}

fn extension<T: AssociatedOid + for<'a> Decode<'a>>(
    cert: &Certificate,
) -> Result<Option<T>, Error> {
    let extensions = cert
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or_default();
    let mut found = extensions.iter().filter(|e| e.extn_id == T::OID);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(ext), None) => T::from_der(ext.extn_value.as_bytes())
            .map(Some)
            .map_err(|e| Error::BadChain(format!("extension {}: {e}", T::OID))),
        (Some(_), Some(_)) => Err(Error::BadChain(format!("duplicate extension {}", T::OID))),
    }
}

fn parse(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|e| Error::BadChain(format!("certificate: {e}")))
}

fn info(cert: &Certificate, der: &[u8]) -> CertInfo {
    let tbs = &cert.tbs_certificate;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    CertInfo {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial_hex: hex::encode(tbs.serial_number.as_bytes()),
        not_before_ms: ms(tbs.validity.not_before.to_unix_duration()),
        not_after_ms: ms(tbs.validity.not_after.to_unix_duration()),
        sha256: Sha256::digest(der).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn embedded_root_matches_published_fingerprint() {
        assert_eq!(
            hex::encode(Sha256::digest(AWS_NITRO_ROOT_DER)),
            AWS_NITRO_ROOT_SHA256_HEX
        );
        // And it re-encodes identically, so it is a single DER certificate and nothing else.
        let cert = Certificate::from_der(AWS_NITRO_ROOT_DER).unwrap();
        assert_eq!(cert.to_der().unwrap(), AWS_NITRO_ROOT_DER);
        assert!(check_extra_root(AWS_NITRO_ROOT_DER).is_ok());
    }
}
