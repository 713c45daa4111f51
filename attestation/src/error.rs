//! Why a document was refused, one variant per reason.
//!
//! Mobile apps show different messages (and retry differently) for "the enclave is not the one we expect"
//! (`PcrMismatch`), "your clock or the network replayed something" (`Stale`, `FromTheFuture`) and "this is not
//! an AWS document at all" (`UntrustedRoot`, `BadSignature`), so the reasons are never folded into a `bool` or a
//! string. Details are public facts about the document (never secrets), safe to log.

/// A document (or policy) was refused by [`crate::verify`] or [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed Nitro attestation document; the detail says which rule broke.
    #[error("malformed attestation document: {0}")]
    Malformed(#[from] Malformed),

    /// The COSE_Sign1 carries a CBOR tag other than 18 (the only tag AWS allows).
    #[error("unexpected CBOR tag {0} (only untagged or tag 18 COSE_Sign1 is accepted)")]
    UnexpectedTag(u64),

    /// The COSE algorithm is not ES384, or the leaf key is not a P-384 ECDSA key.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),

    /// The payload's `digest` field is not `"SHA384"`, the only value AWS defines.
    #[error("unsupported PCR digest {0:?} (only SHA384)")]
    UnsupportedDigest(String),

    /// A field is outside the size AWS allows (`len` is what the document carried).
    #[error("field `{field}` has size {len}, outside the allowed range")]
    SizeLimit {
        /// Which field (for example `cabundle`, `certificate`, `user_data`, `document`).
        field: &'static str,
        /// The size found, in bytes or entries.
        len: usize,
    },

    /// The chain does not end at a trusted root (the pinned AWS root, or a root the policy added explicitly).
    #[error("certificate chain does not end at a trusted root")]
    UntrustedRoot,

    /// The chain is broken for a reason other than time or trust anchor: CA flag, path length, key usage,
    /// a bad certificate signature, an unparsable certificate.
    #[error("invalid certificate chain: {0}")]
    BadChain(String),

    /// A certificate of the chain is expired or not yet valid at the document's own timestamp.
    #[error("certificate not valid at the document timestamp: {0}")]
    CertificateTime(String),

    /// The COSE signature does not verify with the leaf certificate's key.
    #[error("COSE signature does not verify")]
    BadSignature,

    /// The document is older than the policy's maximum age, measured against the caller's clock.
    #[error("document is {age_ms} ms old (limit {max_age_ms} ms)")]
    Stale {
        /// Age of the document when checked.
        age_ms: u64,
        /// The policy's limit.
        max_age_ms: u64,
    },

    /// The document's timestamp is further in the future than the policy's clock-skew allowance.
    #[error("document timestamp is {ahead_ms} ms in the future (allowed skew {max_skew_ms} ms)")]
    FromTheFuture {
        /// How far ahead of the caller's clock the document is.
        ahead_ms: u64,
        /// The policy's allowance.
        max_skew_ms: u64,
    },

    /// PCR0, PCR1 or PCR2 is all zeros: the enclave runs in debug mode, so its memory is readable by the host.
    #[error("debug-mode enclave (all-zero PCR0/1/2)")]
    DebugEnclave,

    /// The document's PCRs match none of the accepted sets.
    #[error("PCRs match none of the accepted sets")]
    PcrMismatch,

    /// The policy lists no accepted PCR set. Refused rather than treated as "accept anything".
    #[error("the policy accepts no PCR set")]
    EmptyPcrPolicy,

    /// The caller expected a nonce and the document carries another one (or none).
    #[error("nonce does not match the expected value")]
    NonceMismatch,

    /// The caller expected `user_data` and the document carries another value (or none).
    #[error("user_data does not match the expected value")]
    UserDataMismatch,

    /// The caller expected `public_key` and the document carries another value (or none).
    #[error("public_key does not match the expected value")]
    PublicKeyMismatch,

    /// The policy itself is invalid (a bad PCR set or extra root); raised when the policy is built.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
}

/// Which structural rule a malformed document broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The bytes are not well-formed CBOR (the decoder's message).
    #[error("{what}: invalid CBOR ({detail})")]
    Cbor {
        /// Which structure was being decoded.
        what: &'static str,
        /// The decoder's description.
        detail: String,
    },
    /// Bytes follow a complete CBOR item; they would be unsigned data smuggled next to signed data.
    #[error("{0}: trailing bytes after the CBOR item")]
    TrailingBytes(&'static str),
    /// A CBOR map repeats a key; parsers that keep the first and the last value would disagree.
    #[error("{0}: duplicate map key")]
    DuplicateKey(&'static str),
    /// The COSE_Sign1 envelope does not have the expected shape.
    #[error("COSE_Sign1: {0}")]
    Envelope(&'static str),
    /// The protected header is not exactly `{1: -35}`.
    #[error("protected header must be exactly {{1: -35}}")]
    ProtectedHeader,
    /// A required payload field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A payload field has the wrong CBOR type or an impossible value.
    #[error("invalid field `{0}`")]
    InvalidField(&'static str),
    /// The leaf certificate cannot be decoded.
    #[error("certificate: {0}")]
    Certificate(String),
}
