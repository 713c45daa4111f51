//! The mock NSM, for dev builds and tests only (feature `mock`, or `cfg(test)`).
//!
//! It signs documents in exactly the AWS format with a local P-384 chain root → intermediate →
//! leaf, so the production verifier runs unchanged against it; only the trust anchor differs. A
//! verifier pinned to the AWS root rejects every mock document, and a dev client that trusts
//! `mock-root.pem` trusts nothing else. Everything it signs says so: `module_id` starts with
//! `mock-nsm-` and every certificate's CN contains `VettID MOCK NSM (dev only)`.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::document::{sig_structure, sign1, Payload};
use crate::{
    check_random_len, AttestationRequest, Description, Nsm, NsmError, PcrDigest, RequestLimits,
};

mod ca;
mod pcrs;
mod store;

pub use ca::{
    INTERMEDIATE_LIFETIME_MS, LEAF_LIFETIME_MS, LEAF_REFRESH_MARGIN_MS, MOCK_CN_MARKER,
    ROOT_LIFETIME_MS,
};
pub use pcrs::{MockPcrs, MAX_PCR_INDEX_EXCLUSIVE, MOCK_DEFAULT_PCRS, PCR_LEN};
pub use store::{ROOT_CERT_FILE, ROOT_KEY_FILE};

use ca::{Intermediate, Leaf, Root};

/// Prefix of every mock `module_id`.
pub const MOCK_MODULE_ID_PREFIX: &str = "mock-nsm-";

/// The source of document timestamps and certificate validity, injectable so tests can pin time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken host; 0 makes every verifier reject the document.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<F> Clock for F
where
    F: Fn() -> u64 + Send + Sync + 'static,
{
    fn now_ms(&self) -> u64 {
        self()
    }
}

/// A mock Nitro Security Module signing with a local dev CA. See the module docs.
pub struct MockNsm {
    root: Root,
    pcrs: MockPcrs,
    module_id: String,
    clock: Box<dyn Clock>,
    rng: SystemRandom,
    /// Intermediate and leaf, issued on first use and reissued as they near expiry. Shared out
    /// as an `Arc` so signing does not hold the lock.
    signer: Mutex<Option<Arc<Signer>>>,
}

struct Signer {
    intermediate: Arc<Intermediate>,
    leaf: Leaf,
}

impl MockNsm {
    /// A mock whose root lives only in memory. For tests.
    ///
    /// # Errors
    /// [`NsmError::MockCertificate`] or [`NsmError::MockCrypto`] if the root cannot be generated.
    pub fn ephemeral(pcrs: MockPcrs) -> Result<Self, NsmError> {
        let rng = SystemRandom::new();
        let (root, _pkcs8) = Root::generate(&rng, SystemClock.now_ms())?;
        Self::with_root(root, pcrs, rng)
    }

    /// A mock whose root is stored in `dir` (`mock-root.key`, mode 0600, and `mock-root.pem`),
    /// created there on first use and loaded on every later start, so clients keep verifying with
    /// the same `mock-root.pem` across enclave restarts. The intermediate and leaf are per process.
    ///
    /// # Errors
    /// [`NsmError::MockIo`] when the files cannot be read or written; [`NsmError::MockRoot`] when
    /// only one of the two files exists or they do not form a mock root.
    pub fn load_or_create(dir: &Path, pcrs: MockPcrs) -> Result<Self, NsmError> {
        let rng = SystemRandom::new();
        let root = store::load_or_create(dir, &rng, SystemClock.now_ms())?;
        Self::with_root(root, pcrs, rng)
    }

    fn with_root(root: Root, pcrs: MockPcrs, rng: SystemRandom) -> Result<Self, NsmError> {
        let mut id = [0u8; 8];
        rng.fill(&mut id)
            .map_err(|_| NsmError::MockCrypto("drawing a module id"))?;
        let module_id = format!("{MOCK_MODULE_ID_PREFIX}{}", hex::encode(id));
        tracing::warn!(
            module_id = %module_id,
            "MOCK NSM in use: attestation documents are signed by a local dev CA and prove nothing"
        );
        Ok(Self {
            root,
            pcrs,
            module_id,
            clock: Box::new(SystemClock),
            rng,
            signer: Mutex::new(None),
        })
    }

    /// Replace the clock (tests pin it to check timestamps and leaf renewal).
    ///
    /// The root is valid from 2020-01-01, so any pinned time after that yields a chain that
    /// verifies at the document's timestamp.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The mock root certificate, DER: the trust anchor for verifying this mock's documents.
    pub fn root_der(&self) -> &[u8] {
        self.root.der()
    }

    /// The mock root certificate, PEM (the contents of `mock-root.pem`).
    pub fn root_pem(&self) -> &str {
        self.root.pem()
    }

    /// This mock's module id (`mock-nsm-` + 16 hex digits, new per process).
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The PCRs this mock reports.
    pub fn pcrs(&self) -> &MockPcrs {
        &self.pcrs
    }

    /// The intermediate and leaf to sign with at `now_ms`, reissuing whichever is due.
    fn signer(&self, now_ms: u64) -> Result<Arc<Signer>, NsmError> {
        // A panic elsewhere while holding the lock cannot leave a half-built signer: the slot is
        // only ever replaced whole. So a poisoned lock is safe to keep using.
        let mut slot = self.signer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = slot.as_ref() {
            if !current.leaf.needs_refresh(now_ms) {
                return Ok(Arc::clone(current));
            }
        }
        let intermediate = match slot.take() {
            Some(old) if old.intermediate.covers_leaf_issued_at(now_ms) => {
                Arc::clone(&old.intermediate)
            }
            _ => Arc::new(Intermediate::issue(&self.root, &self.rng, now_ms)?),
        };
        let leaf = Leaf::issue(&intermediate, &self.module_id, &self.rng, now_ms)?;
        tracing::debug!(module_id = %self.module_id, now_ms, "mock NSM issued a signing certificate");
        let signer = Arc::new(Signer { intermediate, leaf });
        *slot = Some(Arc::clone(&signer));
        Ok(signer)
    }
}

impl fmt::Debug for MockNsm {
    // No keys, no certificates: just enough to tell which mock this is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockNsm")
            .field("module_id", &self.module_id)
            .field("pcrs", &self.pcrs.as_map().len())
            .finish_non_exhaustive()
    }
}

// === impl Nsm for MockNsm ===

impl Nsm for MockNsm {
    fn attest(&self, req: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        req.validate()?;
        let now_ms = self.clock.now_ms();
        let signer = self.signer(now_ms)?;
        let payload = Payload {
            module_id: &self.module_id,
            timestamp_ms: now_ms,
            pcrs: self.pcrs.as_map(),
            certificate: signer.leaf.der(),
            cabundle: &[self.root.der(), signer.intermediate.der()],
            public_key: req.public_key.as_deref(),
            user_data: req.user_data.as_deref(),
            nonce: req.nonce.as_deref(),
        }
        .encode()?;
        let signature = signer.leaf.sign(&self.rng, &sig_structure(&payload)?)?;
        sign1(payload, &signature)
    }

    fn describe(&self) -> Result<Description, NsmError> {
        Ok(Description {
            module_id: self.module_id.clone(),
            digest: PcrDigest::Sha384,
            pcrs: self
                .pcrs
                .as_map()
                .iter()
                .map(|(i, v)| (*i, v.to_vec()))
                .collect(),
            is_mock: true,
            limits: RequestLimits::AWS,
        })
    }

    fn random(&self, len: usize) -> Result<Vec<u8>, NsmError> {
        check_random_len(len)?;
        let mut out = vec![0u8; len];
        self.rng
            .fill(&mut out)
            .map_err(|_| NsmError::MockCrypto("drawing random bytes"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
