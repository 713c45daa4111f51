//! Codec errors (local, never sent) and wire errors (sent to the peer in an error frame).

use serde::{Deserialize, Serialize};

/// Why bytes could not be turned into a frame. Only [`CodecError::FrameTooLarge`] and
/// [`CodecError::Io`] are fatal for a connection: a length prefix we refuse leaves us unable to
/// find the next frame boundary, whereas a bad body still has a known length and can be skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announces more than the configured cap. Checked before allocating.
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// A frame we were asked to send encodes to more than the cap; it was not sent.
    #[error("outgoing frame of {len} bytes exceeds the {max}-byte cap")]
    OutgoingTooLarge {
        /// Encoded length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("stream ended inside a frame ({have} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes announced (including the prefix).
        want: usize,
    },
    /// CBOR encoding failed (a bug in our types, never peer input).
    #[error("cbor encoding failed: {0}")]
    Encode(String),
    /// The underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// Whether the connection must be closed after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            CodecError::OutgoingTooLarge { .. } | CodecError::Encode(_)
        )
    }
}

/// Stable error codes a peer may see. Never carries internal detail such as paths or AWS
/// messages; the free-text `message` of [`WireError`] is for humans and must be equally bland.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame body was not valid CBOR or not the shape its kind requires.
    Malformed,
    /// The frame kind is not one this peer knows.
    UnknownKind,
    /// The request type is not one this peer serves.
    UnknownRequest,
    /// The peer is at its concurrency bound; retry later.
    Busy,
    /// The request's deadline passed before it completed.
    Timeout,
    /// The peer is shutting down and takes no new work.
    ShuttingDown,
    /// A dependency of the peer (NATS, S3, KMS) is unavailable.
    Unavailable,
    /// The request was understood but refused.
    Rejected,
    /// Anything else. Details are in the peer's own logs.
    Internal,
    /// A code this build does not know (from a newer peer).
    #[serde(other)]
    Other,
}

/// An error answered to the peer in place of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Short human-readable text; never secrets, paths or upstream error text.
    pub message: String,
}

impl WireError {
    /// Builds an error from a code and a static or formatted message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
