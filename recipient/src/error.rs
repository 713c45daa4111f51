//! Why an envelope was refused, one variant per failure class.
//!
//! The enclave maps these to different log lines and replies: a `RecipientMismatch` or `Malformed` envelope
//! points at the parent or a broken stand-in, an `UnsupportedAlgorithm` at a downgrade attempt. Every detail is
//! a `&'static str` chosen here, so no byte of the input (let alone of a key) can reach a log through an error.

/// An envelope could not be opened, or a recipient key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecipientError {
    /// The input is larger than [`crate::MAX_INPUT_LEN`]; nothing was parsed.
    #[error("CiphertextForRecipient is {len} bytes, above the {max}-byte limit")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The bytes are not a well-formed CMS EnvelopedData of the shape KMS sends; the detail names the rule.
    #[error("malformed CiphertextForRecipient: {0}")]
    Malformed(&'static str),

    /// Well-formed, but with an algorithm or structure we refuse (PKCS#1 v1.5, SHA-1 OAEP, AES-128, …).
    #[error("unsupported CiphertextForRecipient: {0}")]
    UnsupportedAlgorithm(&'static str),

    /// The envelope is addressed to another key (its subject key identifier is not ours).
    #[error("CiphertextForRecipient is not addressed to this recipient key")]
    RecipientMismatch,

    /// Addressed to our key but the key transport or the content does not decrypt (bad OAEP or CBC padding,
    /// wrong content-key length). Deliberately one variant, without detail: no padding oracle by error type.
    #[error("CiphertextForRecipient does not decrypt with this recipient key")]
    Decrypt,

    /// A recipient key could not be generated, loaded or used (size or encoding out of range).
    #[error("recipient key: {0}")]
    Key(&'static str),
}
