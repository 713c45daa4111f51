//! The PCR values a mock NSM reports.

use std::collections::BTreeMap;

use aws_lc_rs::digest;

use crate::NsmError;

/// Length of a SHA-384 PCR.
pub const PCR_LEN: usize = 48;

/// PCRs 0..=15 are always present, as in real documents (16 entries).
pub const MOCK_DEFAULT_PCRS: u16 = 16;

/// The NSM exposes 32 PCRs; indices at or above this are refused.
pub const MAX_PCR_INDEX_EXCLUSIVE: u16 = 32;

/// Domain label for [`MockPcrs::from_measurement`], so a mock PCR never equals a plain hash of the
/// same bytes computed for some other purpose.
const MEASUREMENT_LABEL: &[u8] = b"vettid/mock-nsm/pcr/v1";

/// PCR index → value for a mock NSM. PCRs 0..=15 always exist (zero unless set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockPcrs {
    values: BTreeMap<u16, [u8; PCR_LEN]>,
}

impl MockPcrs {
    /// PCR0, PCR1 and PCR2 derived from `measurement` (for example the dev binary's bytes or a
    /// build id): `PCRi = SHA-384(label || i || measurement)`.
    ///
    /// Deterministic, so a dev enclave keeps the same PCRs across restarts and clients can pin
    /// them; non-zero, so the dev enclave does not look like a debug-mode enclave (which reports
    /// PCR0..2 as zeros and which verifiers must reject).
    pub fn from_measurement(measurement: &[u8]) -> Self {
        let derive = |index: u8| {
            let mut ctx = digest::Context::new(&digest::SHA384);
            ctx.update(MEASUREMENT_LABEL);
            ctx.update(&[index]);
            ctx.update(measurement);
            let mut out = [0u8; PCR_LEN];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        Self::new(derive(0), derive(1), derive(2))
    }

    /// Explicit PCR0 (image), PCR1 (kernel + bootstrap) and PCR2 (application); 3..=15 zero.
    pub fn new(pcr0: [u8; PCR_LEN], pcr1: [u8; PCR_LEN], pcr2: [u8; PCR_LEN]) -> Self {
        let mut values: BTreeMap<u16, [u8; PCR_LEN]> =
            (0..MOCK_DEFAULT_PCRS).map(|i| (i, [0; PCR_LEN])).collect();
        values.insert(0, pcr0);
        values.insert(1, pcr1);
        values.insert(2, pcr2);
        Self { values }
    }

    /// What a debug-mode enclave reports: PCR0..2 all zero. For tests of debug rejection.
    pub fn debug_mode() -> Self {
        Self::new([0; PCR_LEN], [0; PCR_LEN], [0; PCR_LEN])
    }

    /// Set one more PCR (for example PCR8, the EIF signing certificate, or PCR16, which an enclave
    /// may extend itself).
    ///
    /// # Errors
    /// [`NsmError::MockPcrIndex`] for an index of 32 or more.
    pub fn with_pcr(mut self, index: u16, value: [u8; PCR_LEN]) -> Result<Self, NsmError> {
        if index >= MAX_PCR_INDEX_EXCLUSIVE {
            return Err(NsmError::MockPcrIndex {
                index,
                max: MAX_PCR_INDEX_EXCLUSIVE,
            });
        }
        self.values.insert(index, value);
        Ok(self)
    }

    /// The value of one PCR, if present.
    pub fn get(&self, index: u16) -> Option<&[u8; PCR_LEN]> {
        self.values.get(&index)
    }

    /// All PCRs, by index.
    pub fn as_map(&self) -> &BTreeMap<u16, [u8; PCR_LEN]> {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_pcrs_are_stable_distinct_and_non_zero() {
        let a = MockPcrs::from_measurement(b"build-1");
        assert_eq!(a, MockPcrs::from_measurement(b"build-1"));
        assert_ne!(a, MockPcrs::from_measurement(b"build-2"));
        let (p0, p1, p2) = (a.get(0).unwrap(), a.get(1).unwrap(), a.get(2).unwrap());
        assert!(p0 != p1 && p1 != p2 && p0 != p2);
        for p in [p0, p1, p2] {
            assert_ne!(p, &[0; PCR_LEN]);
        }
        assert_eq!(a.as_map().len(), 16);
        assert_eq!(a.get(3), Some(&[0; PCR_LEN]));
    }

    #[test]
    fn debug_mode_zeroes_pcr0_to_2() {
        let d = MockPcrs::debug_mode();
        assert!((0..3).all(|i| d.get(i) == Some(&[0; PCR_LEN])));
    }

    #[test]
    fn extra_pcrs_are_bounded() {
        let p = MockPcrs::debug_mode().with_pcr(16, [9; PCR_LEN]).unwrap();
        assert_eq!(p.as_map().len(), 17);
        assert!(matches!(
            MockPcrs::debug_mode().with_pcr(32, [0; PCR_LEN]),
            Err(NsmError::MockPcrIndex { index: 32, .. })
        ));
    }
}
