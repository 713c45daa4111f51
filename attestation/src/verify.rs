//! The verification procedure, in the order that gives each failure its most useful error.
//!
//! 1. The policy can accept something (else `EmptyPcrPolicy`, before touching the input).
//! 2. Envelope and payload are well-formed (size bounds, strict CBOR, AWS field rules).
//! 3. The COSE signature verifies with the leaf key. Checking it before the chain means any edit of the
//!    payload reports `BadSignature`, and that the timestamp used for the chain is the signed one.
//! 4. The chain leads to a trusted root, valid at the document's timestamp.
//! 5. The document is fresh against the caller's clock (`Stale`, `FromTheFuture`).
//! 6. It is not a debug enclave, its PCRs match an accepted set, and expected binding values match.

use std::collections::BTreeMap;

use crate::chain::{self, CertInfo, AWS_NITRO_ROOT_DER};
use crate::document::parse_with_envelope;
use crate::error::Error;
use crate::policy::{is_debug, Policy};

/// A document that passed every check of [`verify`]. Only this crate can construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Enclave identifier, `i-<instance>-enc<enclave>`.
    pub module_id: String,
    /// NSM time of the document, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// PCR digest algorithm (`"SHA384"`).
    pub digest: String,
    /// All PCRs of the document, by index.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The verified chain, leaf first, trusted root last.
    pub chain: Vec<CertInfo>,
    /// The document's `public_key`, if any.
    pub public_key: Option<Vec<u8>>,
    /// The document's `user_data`, if any (may be empty).
    pub user_data: Option<Vec<u8>>,
    /// The document's `nonce`, if any.
    pub nonce: Option<Vec<u8>>,
    /// Id of the accepted PCR set that matched; `None` only under [`Policy::skip_pcr_check_unsafe`].
    pub matched_pcr_set: Option<String>,
}

/// Verifies a Nitro attestation document (COSE_Sign1 bytes) against `policy`.
///
/// `now_ms` is the caller's clock (ms since the Unix epoch); it bounds the document's age. The certificate
/// chain is validated at the document's own signed timestamp, so the result does not depend on the caller's
/// clock beyond the freshness window. No I/O and no clock access happen here.
pub fn verify(document: &[u8], policy: &Policy, now_ms: u64) -> Result<Verified, Error> {
    policy.check_usable()?;
    let (doc, envelope) = parse_with_envelope(document)?;

    let leaf_key = chain::leaf_key(&doc.certificate)?;
    envelope.verify_signature(&leaf_key)?;

    let roots: Vec<&[u8]> = std::iter::once(AWS_NITRO_ROOT_DER)
        .chain(policy.extra_roots())
        .collect();
    let chain = chain::validate(&doc.certificate, &doc.cabundle, &roots, doc.timestamp_ms)?;

    check_freshness(doc.timestamp_ms, now_ms, policy)?;
    if is_debug(&doc.pcrs) {
        return Err(Error::DebugEnclave);
    }
    let matched_pcr_set = policy.match_pcrs(&doc.pcrs)?;
    policy.check_expectations(
        doc.nonce.as_deref(),
        doc.user_data.as_deref(),
        doc.public_key.as_deref(),
    )?;

    Ok(Verified {
        module_id: doc.module_id,
        timestamp_ms: doc.timestamp_ms,
        digest: doc.digest,
        pcrs: doc.pcrs,
        chain,
        public_key: doc.public_key,
        user_data: doc.user_data,
        nonce: doc.nonce,
        matched_pcr_set,
    })
}

fn check_freshness(timestamp_ms: u64, now_ms: u64, policy: &Policy) -> Result<(), Error> {
    if timestamp_ms > now_ms {
        let ahead_ms = timestamp_ms - now_ms;
        if ahead_ms > policy.max_future_skew_ms() {
            return Err(Error::FromTheFuture {
                ahead_ms,
                max_skew_ms: policy.max_future_skew_ms(),
            });
        }
    } else {
        let age_ms = now_ms - timestamp_ms;
        if age_ms > policy.max_age_ms() {
            return Err(Error::Stale {
                age_ms,
                max_age_ms: policy.max_age_ms(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_window_edges() {
        let policy = Policy::skip_pcr_check_unsafe();
        let t = 1_000_000_000;
        assert!(check_freshness(t, t + Policy::DEFAULT_MAX_AGE_MS, &policy).is_ok());
        assert!(matches!(
            check_freshness(t, t + Policy::DEFAULT_MAX_AGE_MS + 1, &policy),
            Err(Error::Stale { .. })
        ));
        assert!(check_freshness(t + Policy::DEFAULT_MAX_FUTURE_SKEW_MS, t, &policy).is_ok());
        assert!(matches!(
            check_freshness(t + Policy::DEFAULT_MAX_FUTURE_SKEW_MS + 1, t, &policy),
            Err(Error::FromTheFuture { .. })
        ));
        assert!(matches!(
            check_freshness(u64::MAX, 0, &policy),
            Err(Error::FromTheFuture { .. })
        ));
        assert!(matches!(
            check_freshness(1, u64::MAX, &policy),
            Err(Error::Stale { .. })
        ));
    }
}
