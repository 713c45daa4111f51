//! What the caller accepts: trusted roots, PCR sets, freshness window and expected binding values.
//!
//! The defaults fail closed. A policy trusts only the pinned AWS root; extra roots (the dev mock NSM's) must be
//! added by name with [`Policy::with_extra_root`]. A policy with no PCR set refuses every document
//! ([`Error::EmptyPcrPolicy`]); skipping the PCR check takes the explicitly named
//! [`Policy::skip_pcr_check_unsafe`]. This closes the fail-open spots of earlier verifiers (an empty set list
//! that passed, an all-zero fallback set, a mock root trusted by default).

use std::collections::BTreeMap;

use crate::error::Error;

/// One accepted enclave build: PCR0, PCR1 and PCR2 (required) plus any other PCRs that must also match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSet {
    id: String,
    values: BTreeMap<u8, Vec<u8>>,
}

impl PcrSet {
    /// A set with the three image PCRs. `id` names the set in [`crate::Verified::matched_pcr_set`].
    ///
    /// Values must be 32, 48 or 64 bytes, and none of PCR0/1/2 may be all zeros (that is a debug enclave,
    /// which is never accepted).
    pub fn new(
        id: impl Into<String>,
        pcr0: impl Into<Vec<u8>>,
        pcr1: impl Into<Vec<u8>>,
        pcr2: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::InvalidPolicy("PCR set id is empty".into()));
        }
        Self {
            id,
            values: BTreeMap::new(),
        }
        .with_pcr(0, pcr0)?
        .with_pcr(1, pcr1)?
        .with_pcr(2, pcr2)
    }

    /// Like [`PcrSet::new`] with hex values (either case).
    pub fn from_hex(
        id: impl Into<String>,
        pcr0: &str,
        pcr1: &str,
        pcr2: &str,
    ) -> Result<Self, Error> {
        Self::new(
            id,
            decode_hex(0, pcr0)?,
            decode_hex(1, pcr1)?,
            decode_hex(2, pcr2)?,
        )
    }

    /// Adds (or replaces) another PCR that must match, for example PCR3 (parent IAM role) or PCR8 (signing
    /// certificate).
    pub fn with_pcr(mut self, index: u8, value: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let value = value.into();
        if index > crate::document::MAX_PCR_INDEX {
            return Err(Error::InvalidPolicy(format!(
                "PCR index {index} out of range"
            )));
        }
        if !matches!(value.len(), 32 | 48 | 64) {
            return Err(Error::InvalidPolicy(format!(
                "PCR{index} must be 32, 48 or 64 bytes"
            )));
        }
        if index <= 2 && is_all_zero(&value) {
            return Err(Error::InvalidPolicy(format!(
                "PCR{index} is all zeros (debug enclave)"
            )));
        }
        self.values.insert(index, value);
        Ok(self)
    }

    /// The set's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The PCRs this set requires, by index.
    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.values
    }

    /// True if every PCR of the set is present in `pcrs` with the same value.
    pub(crate) fn matches(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
        self.values
            .iter()
            .all(|(index, want)| pcrs.get(index).is_some_and(|got| ct_eq(got, want)))
    }
}

/// How PCRs are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PcrRequirement {
    /// The document must match one of these sets; an empty list refuses everything.
    OneOf(Vec<PcrSet>),
    /// No PCR check at all (tools only).
    SkipUnsafe,
}

/// Everything [`crate::verify`] checks beyond the AWS procedure itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    extra_roots: Vec<Vec<u8>>,
    pcrs: PcrRequirement,
    max_age_ms: u64,
    max_future_skew_ms: u64,
    expected_nonce: Option<Vec<u8>>,
    expected_user_data: Option<Vec<u8>>,
    expected_public_key: Option<Vec<u8>>,
}

impl Policy {
    /// Default maximum document age: five minutes, enough for a request round trip, short enough to limit replay.
    pub const DEFAULT_MAX_AGE_MS: u64 = 300_000;
    /// Default allowance for a phone clock that runs behind the NSM clock.
    pub const DEFAULT_MAX_FUTURE_SKEW_MS: u64 = 60_000;

    /// A policy that trusts the pinned AWS root only and accepts documents matching one of `accepted`.
    ///
    /// An empty list is allowed here but every verification then fails with [`Error::EmptyPcrPolicy`].
    pub fn new(accepted: impl IntoIterator<Item = PcrSet>) -> Self {
        Self::with_requirement(PcrRequirement::OneOf(accepted.into_iter().collect()))
    }

    /// A policy that does **not** check PCRs: any enclave image passes.
    ///
    /// Only for tools that verify a document's origin and then print its fields. An app deciding whether to
    /// trust an enclave must use [`Policy::new`] with the accepted sets.
    pub fn skip_pcr_check_unsafe() -> Self {
        Self::with_requirement(PcrRequirement::SkipUnsafe)
    }

    fn with_requirement(pcrs: PcrRequirement) -> Self {
        Self {
            extra_roots: Vec::new(),
            pcrs,
            max_age_ms: Self::DEFAULT_MAX_AGE_MS,
            max_future_skew_ms: Self::DEFAULT_MAX_FUTURE_SKEW_MS,
            expected_nonce: None,
            expected_user_data: None,
            expected_public_key: None,
        }
    }

    /// Also trusts `root_der` (a DER CA certificate) as a chain anchor, besides the AWS root.
    ///
    /// This is how dev builds accept the mock NSM's documents. Release builds must never call it: the mock
    /// root's DER should only be reachable behind the NSM crate's `mock` feature.
    pub fn with_extra_root(mut self, root_der: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let root_der = root_der.into();
        crate::chain::check_extra_root(&root_der)?;
        self.extra_roots.push(root_der);
        Ok(self)
    }

    /// Sets the maximum document age (against the caller's clock).
    pub fn with_max_age_ms(mut self, max_age_ms: u64) -> Self {
        self.max_age_ms = max_age_ms;
        self
    }

    /// Sets how far in the future a document timestamp may be (the caller's clock may lag).
    pub fn with_max_future_skew_ms(mut self, max_future_skew_ms: u64) -> Self {
        self.max_future_skew_ms = max_future_skew_ms;
        self
    }

    /// Requires the document's `nonce` to equal `nonce` (the challenge this caller sent).
    pub fn expect_nonce(mut self, nonce: impl Into<Vec<u8>>) -> Self {
        self.expected_nonce = Some(nonce.into());
        self
    }

    /// Requires the document's `user_data` to equal `user_data`.
    pub fn expect_user_data(mut self, user_data: impl Into<Vec<u8>>) -> Self {
        self.expected_user_data = Some(user_data.into());
        self
    }

    /// Requires the document's `public_key` to equal `public_key`.
    pub fn expect_public_key(mut self, public_key: impl Into<Vec<u8>>) -> Self {
        self.expected_public_key = Some(public_key.into());
        self
    }

    /// The accepted PCR sets (`None` when the PCR check is skipped).
    pub fn pcr_sets(&self) -> Option<&[PcrSet]> {
        match &self.pcrs {
            PcrRequirement::OneOf(sets) => Some(sets),
            PcrRequirement::SkipUnsafe => None,
        }
    }

    pub(crate) fn extra_roots(&self) -> impl Iterator<Item = &[u8]> {
        self.extra_roots.iter().map(Vec::as_slice)
    }

    pub(crate) fn max_age_ms(&self) -> u64 {
        self.max_age_ms
    }

    pub(crate) fn max_future_skew_ms(&self) -> u64 {
        self.max_future_skew_ms
    }

    /// Fails early, before any parsing, when the policy can accept nothing.
    pub(crate) fn check_usable(&self) -> Result<(), Error> {
        match &self.pcrs {
            PcrRequirement::OneOf(sets) if sets.is_empty() => Err(Error::EmptyPcrPolicy),
            _ => Ok(()),
        }
    }

    /// The id of the first accepted set the PCRs match, or `None` when the check is skipped.
    pub(crate) fn match_pcrs(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> Result<Option<String>, Error> {
        match &self.pcrs {
            PcrRequirement::SkipUnsafe => Ok(None),
            PcrRequirement::OneOf(sets) if sets.is_empty() => Err(Error::EmptyPcrPolicy),
            PcrRequirement::OneOf(sets) => sets
                .iter()
                .find(|set| set.matches(pcrs))
                .map(|set| Some(set.id.clone()))
                .ok_or(Error::PcrMismatch),
        }
    }

    /// Checks the optional nonce, user_data and public_key expectations.
    pub(crate) fn check_expectations(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<(), Error> {
        let same = |want: &Option<Vec<u8>>, got: Option<&[u8]>| match (want, got) {
            (None, _) => true,
            (Some(want), Some(got)) => ct_eq(want, got),
            (Some(_), None) => false,
        };
        if !same(&self.expected_nonce, nonce) {
            return Err(Error::NonceMismatch);
        }
        if !same(&self.expected_user_data, user_data) {
            return Err(Error::UserDataMismatch);
        }
        if !same(&self.expected_public_key, public_key) {
            return Err(Error::PublicKeyMismatch);
        }
        Ok(())
    }
}

/// True if PCR0, PCR1 or PCR2 is all zeros: debug mode zeroes all three, and no measured image hashes to zero.
pub(crate) fn is_debug(pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
    (0..=2).any(|index| pcrs.get(&index).is_some_and(|v| is_all_zero(v)))
}

fn is_all_zero(value: &[u8]) -> bool {
    value.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Equality whose running time depends only on the lengths, so expected values do not leak through timing.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(index: u8, value: &str) -> Result<Vec<u8>, Error> {
    hex::decode(value).map_err(|_| Error::InvalidPolicy(format!("PCR{index} is not hex")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_image_pcr_refused_in_a_set() {
        let err = PcrSet::new("dev", vec![0; 48], vec![1; 48], vec![1; 48]).unwrap_err();
        assert!(matches!(err, Error::InvalidPolicy(_)));
        assert!(PcrSet::new("ok", vec![1; 48], vec![1; 48], vec![1; 48])
            .unwrap()
            .with_pcr(8, vec![0; 48])
            .is_ok());
    }

    #[test]
    fn bad_lengths_and_indices_refused() {
        assert!(PcrSet::new("x", vec![1; 47], vec![1; 48], vec![1; 48]).is_err());
        let set = PcrSet::new("x", vec![1; 48], vec![1; 48], vec![1; 48]).unwrap();
        assert!(set.with_pcr(32, vec![1; 48]).is_err());
        assert!(PcrSet::new("", vec![1; 48], vec![1; 48], vec![1; 48]).is_err());
    }

    #[test]
    fn set_matches_only_when_every_listed_pcr_is_equal() {
        let set = PcrSet::new("a", vec![1; 48], vec![2; 48], vec![3; 48])
            .unwrap()
            .with_pcr(8, vec![8; 48])
            .unwrap();
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..3).map(|i| (i, vec![i + 1; 48])).collect();
        assert!(!set.matches(&pcrs), "PCR8 missing from the document");
        pcrs.insert(8, vec![8; 48]);
        assert!(set.matches(&pcrs));
        pcrs.insert(2, vec![9; 48]);
        assert!(!set.matches(&pcrs));
    }

    #[test]
    fn empty_policy_is_an_error_not_a_pass() {
        let policy = Policy::new([]);
        assert_eq!(policy.check_usable(), Err(Error::EmptyPcrPolicy));
        assert_eq!(
            policy.match_pcrs(&BTreeMap::new()),
            Err(Error::EmptyPcrPolicy)
        );
        assert_eq!(
            Policy::skip_pcr_check_unsafe().match_pcrs(&BTreeMap::new()),
            Ok(None)
        );
    }

    #[test]
    fn expected_value_absent_from_document_is_a_mismatch() {
        let policy = Policy::skip_pcr_check_unsafe().expect_nonce(b"n".to_vec());
        assert_eq!(
            policy.check_expectations(None, None, None),
            Err(Error::NonceMismatch)
        );
        assert_eq!(policy.check_expectations(Some(b"n"), None, None), Ok(()));
    }

    #[test]
    fn any_zero_image_pcr_is_debug() {
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..3).map(|i| (i, vec![1; 48])).collect();
        assert!(!is_debug(&pcrs));
        pcrs.insert(1, vec![0; 48]);
        assert!(is_debug(&pcrs));
    }
}
