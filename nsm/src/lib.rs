//! The Nitro Security Module (NSM) behind one trait.
//!
//! This crate owns every call to the NSM: signed attestation documents, the module description and
//! PCR values, and the NSM's entropy source. [`RealNsm`] talks to `/dev/nsm` through the AWS
//! driver and is always compiled. `MockNsm` produces documents in exactly the AWS format, signed by
//! a local P-384 dev CA, so the production verify path runs unchanged in tests and on laptops.
//!
//! What this crate must never do:
//! - **put the mock in a release build.** The mock exists only with the non-default `mock` feature
//!   (and under `cfg(test)`); resolver 2 keeps a dev-dependency's features out of release builds.
//!   [`MOCK_COMPILED_IN`] lets a binary or the EIF builder assert that at start-up or build time.
//! - **make a mock document look real.** Its `module_id` starts with `mock-nsm-` and every
//!   certificate's subject CN says `VettID MOCK NSM (dev only)`; the mock root is never an AWS root,
//!   so a verifier pinned to the AWS root rejects it.
//! - **send an oversized request to the device.** [`AttestationRequest::validate`] checks the AWS
//!   size limits once, for both implementations, before anything touches the NSM.
//! - **decode CBOR with `serde_cbor`.** The AWS driver uses it internally (RUSTSEC-2021-0127,
//!   accepted, see `README.md`); our own code uses `ciborium`.
//!
//! Calls are synchronous (an `ioctl` on the real device): async callers wrap them in
//! `tokio::task::spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;

mod error;
mod real;

#[cfg(any(feature = "mock", test))]
mod document;
#[cfg(any(feature = "mock", test))]
pub mod mock;

pub use error::{DeviceError, NsmError};
#[cfg(any(feature = "mock", test))]
pub use mock::{Clock, MockNsm, MockPcrs, SystemClock};
pub use real::{RealNsm, NSM_DEVICE};

/// Largest `nonce` accepted in an attestation request, in bytes.
///
/// AWS: `nonce` is an optional byte string of 0..512 bytes
/// (aws-nitro-enclaves-nsm-api `docs/attestation_process.md` §3.2.2); the NSM refuses larger ones.
pub const MAX_NONCE_LEN: usize = 512;

/// Largest `user_data` accepted in an attestation request, in bytes (AWS: 0..512 bytes).
pub const MAX_USER_DATA_LEN: usize = 512;

/// Largest `public_key` accepted in an attestation request, in bytes (AWS: 1..1024 bytes).
///
/// Larger than the other two fields because AWS sizes it for a DER-encoded RSA key (KMS's
/// `Recipient` flow puts an RSA-2048 SubjectPublicKeyInfo, 294 bytes, here).
pub const MAX_PUBLIC_KEY_LEN: usize = 1024;

/// Smallest `public_key` accepted when one is given (AWS: 1..1024 bytes, so never empty).
///
/// Unlike `nonce` and `user_data`, an empty `public_key` is outside the AWS rules, and a strict
/// verifier rejects a document carrying one; omit the field instead.
pub const MIN_PUBLIC_KEY_LEN: usize = 1;

/// Largest number of random bytes one [`Nsm::random`] call may ask for.
///
/// The NSM hands out at most [`NSM_RANDOM_CHUNK`] bytes per request, so this bounds the number of
/// device round trips (and the allocation) a single caller can trigger. Callers need keys and
/// nonces, tens of bytes; 64 KiB leaves ample room.
pub const MAX_RANDOM_LEN: usize = 64 * 1024;

/// Most bytes one AWS NSM `GetRandom` request returns; [`Nsm::random`] loops to fill larger requests.
pub const NSM_RANDOM_CHUNK: usize = 256;

/// `true` when this build contains the mock NSM (feature `mock`).
///
/// Production binaries and the EIF build assert this is `false`.
pub const MOCK_COMPILED_IN: bool = cfg!(feature = "mock");

/// Access to a Nitro Security Module.
///
/// Synchronous on purpose: the real implementation is a blocking `ioctl`. Async callers run each
/// call inside `spawn_blocking`. Implementations are shared across threads (`Send + Sync`).
pub trait Nsm: Send + Sync + 'static {
    /// Ask the NSM for a signed attestation document (untagged COSE_Sign1 bytes).
    ///
    /// # Errors
    /// [`NsmError::TooLarge`] / [`NsmError::TooSmall`] when a field breaks the AWS size limits
    /// (checked before the device is touched); [`NsmError::Device`] when the NSM refuses;
    /// mock-specific errors when the dev CA cannot sign.
    fn attest(&self, req: &AttestationRequest) -> Result<Vec<u8>, NsmError>;

    /// Module id, PCR digest, PCR values, and whether this is the mock.
    ///
    /// # Errors
    /// [`NsmError::Device`] or [`NsmError::UnexpectedResponse`] when the NSM cannot describe itself.
    fn describe(&self) -> Result<Description, NsmError>;

    /// `len` random bytes from the NSM's entropy source.
    ///
    /// # Errors
    /// [`NsmError::TooLarge`] above [`MAX_RANDOM_LEN`]; [`NsmError::Device`] or
    /// [`NsmError::EmptyRandom`] when the entropy source fails.
    fn random(&self, len: usize) -> Result<Vec<u8>, NsmError>;
}

/// The caller-supplied fields of an attestation document. Each is echoed verbatim in the document
/// (or as CBOR `null` when absent).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AttestationRequest {
    /// A verifier-chosen challenge, for freshness (at most [`MAX_NONCE_LEN`] bytes).
    pub nonce: Option<Vec<u8>>,
    /// A public key the verifier may encrypt to (at most [`MAX_PUBLIC_KEY_LEN`] bytes, never empty).
    pub public_key: Option<Vec<u8>>,
    /// Protocol binding data (at most [`MAX_USER_DATA_LEN`] bytes).
    pub user_data: Option<Vec<u8>>,
}

impl AttestationRequest {
    /// Check the request against the AWS size limits.
    ///
    /// Both implementations call this first, so the mock refuses exactly what the device refuses
    /// and an oversized field never reaches the driver.
    ///
    /// # Errors
    /// [`NsmError::TooLarge`] naming the first field over its limit; [`NsmError::TooSmall`] for an
    /// empty `public_key`.
    pub fn validate(&self) -> Result<(), NsmError> {
        check_max("nonce", self.nonce.as_deref(), MAX_NONCE_LEN)?;
        check_max("user_data", self.user_data.as_deref(), MAX_USER_DATA_LEN)?;
        check_max("public_key", self.public_key.as_deref(), MAX_PUBLIC_KEY_LEN)?;
        if let Some(key) = &self.public_key {
            if key.len() < MIN_PUBLIC_KEY_LEN {
                return Err(NsmError::TooSmall {
                    field: "public_key",
                    len: key.len(),
                    min: MIN_PUBLIC_KEY_LEN,
                });
            }
        }
        Ok(())
    }
}

// Shows lengths only: a nonce or key in a log line is noise at best.
impl fmt::Debug for AttestationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map(Vec::len);
        f.debug_struct("AttestationRequest")
            .field("nonce_len", &len(&self.nonce))
            .field("public_key_len", &len(&self.public_key))
            .field("user_data_len", &len(&self.user_data))
            .finish()
    }
}

fn check_max(field: &'static str, value: Option<&[u8]>, max: usize) -> Result<(), NsmError> {
    match value {
        Some(v) if v.len() > max => Err(NsmError::TooLarge {
            field,
            len: v.len(),
            max,
        }),
        _ => Ok(()),
    }
}

/// The one bound on [`Nsm::random`], shared by both implementations.
fn check_random_len(len: usize) -> Result<(), NsmError> {
    if len > MAX_RANDOM_LEN {
        return Err(NsmError::TooLarge {
            field: "random",
            len,
            max: MAX_RANDOM_LEN,
        });
    }
    Ok(())
}

/// What an NSM says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The module id that also appears in every document (`mock-nsm-…` for the mock).
    pub module_id: String,
    /// The hash of the PCR bank (SHA-384 on every Nitro host seen so far).
    pub digest: PcrDigest,
    /// PCR index → value. The real NSM reports every index up to its `max_pcrs`; the mock 0..=15.
    pub pcrs: BTreeMap<u16, Vec<u8>>,
    /// `true` for the mock: nothing it signs proves anything.
    pub is_mock: bool,
    /// The request size limits this NSM enforces.
    pub limits: RequestLimits,
}

/// The hash function of the PCR bank, as the NSM reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcrDigest {
    /// SHA-256 (32-byte PCRs).
    Sha256,
    /// SHA-384 (48-byte PCRs); what Nitro uses, and what documents carry as `"SHA384"`.
    Sha384,
    /// SHA-512 (64-byte PCRs).
    Sha512,
}

impl PcrDigest {
    /// The name used in the attestation document's `digest` field (`"SHA384"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for PcrDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maximum sizes of the caller-supplied fields of an [`AttestationRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// See [`MAX_NONCE_LEN`].
    pub nonce: usize,
    /// See [`MAX_USER_DATA_LEN`].
    pub user_data: usize,
    /// See [`MAX_PUBLIC_KEY_LEN`].
    pub public_key: usize,
}

impl RequestLimits {
    /// The AWS NSM limits, enforced by both implementations.
    pub const AWS: Self = Self {
        nonce: MAX_NONCE_LEN,
        user_data: MAX_USER_DATA_LEN,
        public_key: MAX_PUBLIC_KEY_LEN,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(nonce: usize, public_key: usize, user_data: usize) -> AttestationRequest {
        AttestationRequest {
            nonce: Some(vec![1; nonce]),
            public_key: Some(vec![2; public_key]),
            user_data: Some(vec![3; user_data]),
        }
    }

    #[test]
    fn limits_follow_the_aws_documentation() {
        assert_eq!(
            (MAX_NONCE_LEN, MAX_USER_DATA_LEN, MAX_PUBLIC_KEY_LEN),
            (512, 512, 1024)
        );
    }

    #[test]
    fn requests_at_the_limits_are_accepted() {
        req(512, 1024, 512).validate().unwrap();
        AttestationRequest::default().validate().unwrap();
        // Empty nonce and user_data are legal (real documents carry a zero-length user_data).
        req(0, 1, 0).validate().unwrap();
    }

    #[test]
    fn each_oversized_field_is_named() {
        let cases = [
            (req(513, 1, 0), "nonce", 513, 512),
            (req(0, 1025, 0), "public_key", 1025, 1024),
            (req(0, 1, 513), "user_data", 513, 512),
        ];
        for (r, want_field, want_len, want_max) in cases {
            match r.validate() {
                Err(NsmError::TooLarge { field, len, max }) => {
                    assert_eq!((field, len, max), (want_field, want_len, want_max));
                }
                other => panic!("expected TooLarge for {want_field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_public_key_is_rejected() {
        assert!(matches!(
            req(0, 0, 0).validate(),
            Err(NsmError::TooSmall {
                field: "public_key",
                len: 0,
                min: 1
            })
        ));
    }

    #[test]
    fn debug_output_shows_lengths_not_bytes() {
        let shown = format!("{:?}", req(3, 4, 5));
        assert!(shown.contains("nonce_len: Some(3)"), "{shown}");
        assert!(!shown.contains("[1, 1, 1]"), "{shown}");
    }

    #[test]
    fn random_len_is_bounded() {
        check_random_len(MAX_RANDOM_LEN).unwrap();
        assert!(matches!(
            check_random_len(MAX_RANDOM_LEN + 1),
            Err(NsmError::TooLarge {
                field: "random",
                ..
            })
        ));
    }
}
