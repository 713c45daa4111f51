//! The frame layer: a big-endian `u32` length prefix, then one CBOR value of that many bytes.
//!
//! Two kinds of failure are kept apart on purpose. A length prefix we refuse (over the cap) is
//! fatal: we cannot trust it to find the next frame, and we refuse *before* allocating so a
//! hostile peer cannot make us reserve 4 GiB. A body that fails to decode is not fatal: its length
//! was fine, so it is skipped and answered with a typed error, and the connection carries on.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{CodecError, ErrorCode, WireError};
use crate::frame::{Frame, FrameKind, RequestId, WireFrame};
use crate::message::RequestBody;
use crate::outline::Outline;

/// Size of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Default cap on a frame body: large enough for a sealed vault blob with room to spare, small
/// enough that a burst of maximal frames cannot exhaust enclave memory.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest single write to the stream. Nitro's vsock transport has lost data on writes of 32 KiB
/// and more under load (a known kernel issue), so large frames go out in smaller pieces.
pub const MAX_WRITE_CHUNK: usize = 30 * 1024;

/// Result of decoding one complete frame body, for a receiver that serves requests `R`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<R> {
    /// A well-formed frame.
    Frame(Frame<R>),
    /// A frame whose length was fine but whose body was not; answer `error` to the peer.
    Invalid {
        /// The request id, when the body was intact enough to name one.
        id: Option<RequestId>,
        /// Typed reason, suitable for sending back.
        error: WireError,
    },
}

/// Encoder/decoder for frames with a size cap.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    /// A codec that refuses frame bodies longer than `max_len` bytes (capped at `u32::MAX`).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.min(u32::MAX as usize),
        }
    }

    /// The configured cap.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Takes one frame off the front of `buf` if a whole one is there, decoding a request body
    /// as `R` (the requests the receiver serves).
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case, once the prefix has been read
    /// and accepted, `buf` has been grown to hold the whole frame so the caller's next read can
    /// fill it.
    ///
    /// # Errors
    /// [`CodecError::FrameTooLarge`] when the prefix exceeds the cap. Fatal for the connection.
    pub fn decode<R: RequestBody>(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<Decoded<R>>, CodecError> {
        if buf.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        let want = LENGTH_PREFIX_LEN + len;
        if buf.len() < want {
            buf.reserve(want - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX_LEN);
        let body = buf.split_to(len);
        Ok(Some(decode_body(&body)))
    }

    /// Appends the encoded frame (prefix and body) to `dst`.
    ///
    /// # Errors
    /// [`CodecError::OutgoingTooLarge`] if the body would exceed the cap; `dst` is left as it was.
    pub fn encode<R: serde::Serialize>(
        &self,
        frame: &Frame<R>,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let start = dst.len();
        dst.put_u32(0);
        if let Err(e) = ciborium::into_writer(frame, dst.writer()) {
            dst.truncate(start);
            return Err(CodecError::Encode(e.to_string()));
        }
        let len = dst.len() - start - LENGTH_PREFIX_LEN;
        if len > self.max_len {
            dst.truncate(start);
            return Err(CodecError::OutgoingTooLarge {
                len,
                max: self.max_len,
            });
        }
        dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    /// Encodes one frame into its own buffer.
    ///
    /// # Errors
    /// As [`FrameCodec::encode`].
    pub fn encode_to_bytes<R: serde::Serialize>(
        &self,
        frame: &Frame<R>,
    ) -> Result<Bytes, CodecError> {
        let mut b = BytesMut::with_capacity(256);
        self.encode(frame, &mut b)?;
        Ok(b.freeze())
    }
}

/// Decodes a frame body (without its prefix) for a receiver that serves requests `R`. Never
/// fails: a bad body becomes [`Decoded::Invalid`] with as much context as could be recovered.
///
/// Memory: a structural pass ([`crate::outline`]) first refuses bodies over
/// [`MAX_FRAME_ITEMS`](crate::MAX_FRAME_ITEMS) items or [`MAX_FRAME_DEPTH`](crate::MAX_FRAME_DEPTH)
/// levels without allocating, and reads the kind, id and request type on the way; the typed
/// decode then runs once, and a body it refuses is diagnosed from what the pass read, never by
/// buffering the body again. A bad body therefore costs at most its own strings' length plus a
/// bounded per-item overhead (measured in `protocol/tests/frame_memory.rs`).
pub fn decode_body<R: RequestBody>(body: &[u8]) -> Decoded<R> {
    if body.is_empty() {
        return invalid(None, ErrorCode::Malformed, "empty frame");
    }
    let outline = Outline::of(body);
    if let Err(reason) = outline.checked {
        if outline.kind.is_none() {
            return invalid(
                None,
                ErrorCode::Malformed,
                "frame is not a valid CBOR frame array",
            );
        }
        return invalid(outline.id, ErrorCode::Malformed, reason);
    }
    let mut rest = body;
    match ciborium::from_reader::<WireFrame<R>, _>(&mut rest) {
        // The outline pass already refused trailing bytes; kept so the decoder stands alone.
        Ok(_) if !rest.is_empty() => {
            invalid(None, ErrorCode::Malformed, "trailing bytes after frame")
        }
        Ok(WireFrame::Known(frame)) => Decoded::Frame(frame),
        Ok(WireFrame::UnknownKind { id }) => {
            invalid(id, ErrorCode::UnknownKind, "unknown frame kind")
        }
        Err(_) => diagnose::<R>(&outline),
    }
}

/// Says, for a well-formed body that failed the typed decode, which request it was and why it
/// failed, from what the outline pass read: a request whose body names one type the receiver does
/// not serve is `UnknownRequest` (with a message saying "wrong direction" when the type is one
/// the other side serves), anything else `Malformed`.
fn diagnose<R: RequestBody>(outline: &Outline<'_>) -> Decoded<R> {
    if outline.kind.is_none() {
        return invalid(
            None,
            ErrorCode::Malformed,
            "frame is not a valid CBOR frame array",
        );
    }
    if FrameKind::from_tag(outline.kind) == FrameKind::Request {
        // A request type without a body travels as a bare tag; only a wrong-direction tag is
        // diagnosed from it (an unknown bare tag stays `Malformed`, as before the split).
        let name = outline.body_key.or(outline.body_tag);
        if let Some(name) = name.filter(|n| R::WRONG_WAY.contains(n)) {
            return invalid(
                outline.id,
                ErrorCode::UnknownRequest,
                &format!("{name} is served by the other side (wrong direction)"),
            );
        }
        if let Some(name) = outline.body_key {
            if !R::NAMES.contains(&name) {
                return invalid(
                    outline.id,
                    ErrorCode::UnknownRequest,
                    "unknown request type",
                );
            }
        }
    }
    invalid(
        outline.id,
        ErrorCode::Malformed,
        "frame body does not match its kind",
    )
}

fn invalid<R>(id: Option<RequestId>, code: ErrorCode, message: &str) -> Decoded<R> {
    Decoded::Invalid {
        id,
        error: WireError::new(code, message),
    }
}
