//! Reading and writing frames on a stream the caller owns.
//!
//! Both helpers are cancel-safe in the way the connection layer needs: [`read_frame`] keeps
//! partial input in the caller's buffer, so dropping it in a `select!` loses nothing and a frame is
//! never half-read; [`write_chunked`] should only be cancelled when the connection is being torn
//! down anyway.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{Decoded, FrameCodec, MAX_WRITE_CHUNK};
use crate::error::CodecError;
use crate::message::RequestBody;

/// Smallest spare capacity kept in the read buffer, so small frames arrive in few reads.
const READ_RESERVE: usize = 16 * 1024;

/// Reads until one whole frame is in `buf`, then decodes it (a request body as `R`).
///
/// Returns `Ok(None)` on a clean end of stream (between frames).
///
/// # Errors
/// [`CodecError::Truncated`] if the stream ends inside a frame, [`CodecError::FrameTooLarge`] on
/// an over-cap prefix, [`CodecError::Io`] on a stream error. All are fatal for the connection.
pub async fn read_frame<S: AsyncRead + Unpin, R: RequestBody>(
    reader: &mut S,
    buf: &mut BytesMut,
    codec: &FrameCodec,
) -> Result<Option<Decoded<R>>, CodecError> {
    loop {
        if let Some(decoded) = codec.decode(buf)? {
            return Ok(Some(decoded));
        }
        if buf.capacity() - buf.len() < READ_RESERVE {
            buf.reserve(READ_RESERVE);
        }
        if reader.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            let want = if buf.len() >= 4 {
                4 + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
            } else {
                4
            };
            return Err(CodecError::Truncated {
                have: buf.len(),
                want,
            });
        }
    }
}

/// Writes `bytes` in pieces of at most [`MAX_WRITE_CHUNK`] bytes (see its doc for why).
///
/// # Errors
/// [`CodecError::Io`] when the stream fails.
pub async fn write_chunked<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> Result<(), CodecError> {
    for chunk in bytes.chunks(MAX_WRITE_CHUNK) {
        writer.write_all(chunk).await?;
    }
    Ok(())
}
