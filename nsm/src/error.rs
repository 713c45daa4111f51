//! The crate's one error type.
//!
//! These errors stay inside the enclave: they carry paths and device detail that must never be
//! copied into a response frame. The enclave maps them to its own client-facing error enum.

use aws_nitro_enclaves_nsm_api::api::ErrorCode;

/// Everything that can go wrong talking to an NSM, real or mock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsmError {
    /// There is no NSM device: this is not a Nitro Enclave.
    #[error(
        "no /dev/nsm: this build needs a Nitro Enclave; dev builds use the mock NSM (feature `mock`) [{detail}]"
    )]
    NoDevice {
        /// Why opening failed (missing device file, or the driver could not open it).
        detail: &'static str,
    },

    /// A request field is larger than the AWS limit; rejected before the device was touched.
    #[error("{field} is {len} bytes; the NSM accepts at most {max}")]
    TooLarge {
        /// Which field (`nonce`, `user_data`, `public_key`, or `random` for a random-bytes request).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit (one of the crate's `MAX_*` constants).
        max: usize,
    },

    /// A request field is smaller than the AWS minimum (an empty `public_key`).
    #[error("{field} is {len} bytes; the NSM needs at least {min}")]
    TooSmall {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },

    /// The NSM answered a request with an error code.
    #[error("the NSM refused {request}: {code}")]
    Device {
        /// The request that failed (`Attestation`, `DescribeNSM`, `DescribePCR`, `GetRandom`).
        request: &'static str,
        /// What the NSM said.
        code: DeviceError,
    },

    /// The NSM answered with a response of the wrong kind (the driver's `InvalidResponse` case,
    /// seen from our side).
    #[error("the NSM answered {request} with an unexpected response")]
    UnexpectedResponse {
        /// The request that was sent.
        request: &'static str,
    },

    /// `GetRandom` returned no bytes; looping again could spin forever.
    #[error("the NSM returned no random bytes")]
    EmptyRandom,

    #[cfg(any(feature = "mock", test))]
    /// Reading or writing the mock CA's files failed.
    #[error("mock NSM: {action} {}: {source}", path.display())]
    MockIo {
        /// What was being done (`reading`, `writing`, …).
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    #[cfg(any(feature = "mock", test))]
    /// The stored mock root is unusable (half-written, corrupt, or key and certificate disagree).
    #[error("mock NSM root in {}: {reason}", dir.display())]
    MockRoot {
        /// The directory holding `mock-root.key` and `mock-root.pem`.
        dir: std::path::PathBuf,
        /// What is wrong and what to do about it.
        reason: &'static str,
    },

    /// The mock's clock is outside the range certificates can express.
    #[cfg(any(feature = "mock", test))]
    #[error("mock NSM: clock value {now_ms} ms is outside the certificate date range")]
    MockClock {
        /// What the clock said, in ms since the Unix epoch.
        now_ms: u64,
    },

    /// A mock PCR index outside the NSM's range (0..32).
    #[cfg(any(feature = "mock", test))]
    #[error("mock NSM: PCR index {index} is out of range (0..{max})")]
    MockPcrIndex {
        /// The index given.
        index: u16,
        /// One past the highest index allowed.
        max: u16,
    },

    /// The mock could not build a certificate.
    #[cfg(any(feature = "mock", test))]
    #[error("mock NSM: certificate generation failed: {0}")]
    MockCertificate(#[from] rcgen::Error),

    #[cfg(any(feature = "mock", test))]
    /// A cryptographic operation in the mock failed (aws-lc-rs gives no further detail).
    #[error("mock NSM: {0} failed")]
    MockCrypto(&'static str),

    #[cfg(any(feature = "mock", test))]
    /// The mock could not CBOR-encode a document.
    #[error("mock NSM: CBOR encoding failed: {0}")]
    MockEncode(String),
}

/// The NSM's own error codes (`aws_nitro_enclaves_nsm_api::api::ErrorCode`), mirrored so callers
/// do not depend on the driver crate's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DeviceError {
    /// The NSM said `Success` but sent no payload.
    #[error("success code without a payload")]
    Success,
    /// Input argument(s) invalid.
    #[error("invalid argument")]
    InvalidArgument,
    /// PCR index out of bounds.
    #[error("invalid PCR index")]
    InvalidIndex,
    /// The response did not match the request.
    #[error("invalid response")]
    InvalidResponse,
    /// The PCR is locked.
    #[error("PCR is read-only")]
    ReadOnlyIndex,
    /// The NSM lacks the capability.
    #[error("invalid operation")]
    InvalidOperation,
    /// The output buffer was too small.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The request was too large for the device.
    #[error("input too large")]
    InputTooLarge,
    /// The NSM failed internally. The driver also reports this when the `ioctl` itself fails
    /// (for example on a closed descriptor).
    #[error("internal error")]
    InternalError,
}

impl From<ErrorCode> for DeviceError {
    // `ErrorCode` is a plain enum (not `#[non_exhaustive]`), so this match is exhaustive: a new
    // upstream code becomes a compile error here, not a silent mapping.
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Success => Self::Success,
            ErrorCode::InvalidArgument => Self::InvalidArgument,
            ErrorCode::InvalidIndex => Self::InvalidIndex,
            ErrorCode::InvalidResponse => Self::InvalidResponse,
            ErrorCode::ReadOnlyIndex => Self::ReadOnlyIndex,
            ErrorCode::InvalidOperation => Self::InvalidOperation,
            ErrorCode::BufferTooSmall => Self::BufferTooSmall,
            ErrorCode::InputTooLarge => Self::InputTooLarge,
            ErrorCode::InternalError => Self::InternalError,
        }
    }
}
