//! KMS's error shape: `{"__type": "<ExceptionName>", "message": "…"}` with an HTTP status.
//!
//! The type names are the real KMS ones, so `aws-sdk-kms` maps them to its typed errors
//! (`DecryptError::DisabledException`, …) exactly as it does against AWS, and the enclave's error mapping
//! (`KMSAccessDenied`, `KMSKeyDisabled`, …) is tested against the names it will really see. Messages name
//! keys by id or ARN (public) and never carry key material or plaintext.

use hyper::StatusCode;

/// A request refused, one variant per KMS exception we produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key (or the key named in a ciphertext) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key is in a state that does not allow the operation (pending deletion).
    #[error("{0}")]
    InvalidState(String),
    /// The ciphertext is not ours, was altered, or its encryption context does not match.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// The ciphertext was made under a key other than the `KeyId` given.
    #[error("{0}")]
    IncorrectKey(String),
    /// The key policy refused the request (attestation failed, PCR0 not allowed, Recipient required).
    #[error("{0}")]
    AccessDenied(String),
    /// A parameter is missing or out of range.
    #[error("{0}")]
    Validation(String),
    /// The body is not the JSON (or base64) the operation expects.
    #[error("{0}")]
    Serialization(String),
    /// The `X-Amz-Target` header is missing or names an operation we do not implement.
    #[error("{0}")]
    UnknownOperation(String),
    /// The body is larger than the server's bound.
    #[error("{0}")]
    TooLarge(String),
    /// A policy document given to CreateKey or PutKeyPolicy is not a policy.
    #[error("{0}")]
    MalformedPolicy(String),
    /// An alias name already exists in the account.
    #[error("{0}")]
    AlreadyExists(String),
    /// Something failed on our side (key file write, random generation).
    #[error("{0}")]
    Internal(String),
}

impl KmsError {
    /// The `__type` KMS uses for this error.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFoundException",
            Self::Disabled(_) => "DisabledException",
            Self::InvalidState(_) => "KMSInvalidStateException",
            Self::InvalidCiphertext(_) => "InvalidCiphertextException",
            Self::IncorrectKey(_) => "IncorrectKeyException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Validation(_) | Self::TooLarge(_) => "ValidationException",
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Internal(_) => "KMSInternalException",
            Self::MalformedPolicy(_) => "MalformedPolicyDocumentException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
        }
    }

    /// The HTTP status KMS answers with: 400 for every client error, 413 for a body over our bound (KMS would
    /// not see one), 500 for our own failures.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.type_name(), "message": self.to_string() })
    }
}

/// Start-up failure of the server (configuration or key file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The key file cannot be read, parsed or written.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file's path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is invalid; every problem found is listed.
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The TLS certificate or key cannot be read, made or used.
    #[error("TLS: {0}")]
    Tls(String),
}
