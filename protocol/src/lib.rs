//! Wire types and the frame codec shared by `vettid-parent` and `vettid-enclave`.
//!
//! This crate owns the bytes that cross the vsock boundary and nothing else: the frame format
//! (a big-endian `u32` length, then one CBOR value), the message types carried in frames, and a
//! codec error enum. It does **no I/O of its own**: the codec works on byte buffers, and the two
//! async helpers in [`io`] work on any `AsyncRead`/`AsyncWrite` handed to them. No sockets, no
//! runtime, no AWS types.
//!
//! Both sides of a link may send requests, so every request carries an id chosen by its sender and
//! every response or error names that id; many requests are in flight at once in both directions.
//! Requests are typed by direction ([`ToEnclave`], [`ToParent`]; a [`Side`] names which one an
//! end sends and which it serves), so neither side has a request type it must refuse at run time.
//!
//! Layering (STYLE rule 3): [`codec`] turns bytes into frames and checks the size cap *before*
//! allocating; [`frame`] is the typed frame; [`message`] holds the request/response/event bodies.

pub mod codec;
pub mod error;
pub mod frame;
pub mod io;
pub mod message;
mod outline;

pub use codec::{Decoded, FrameCodec, DEFAULT_MAX_FRAME_LEN, LENGTH_PREFIX_LEN, MAX_WRITE_CHUNK};
pub use error::{CodecError, ErrorCode, WireError};
pub use frame::{Frame, FrameKind, Heartbeat, Hello, RequestId, Role};
pub use message::{
    AwsCredentials, EnclaveSide, Event, ListedObject, LogEvent, LogLevel, NatsMessage, NatsReply,
    ParentSide, Publication, PutCondition, RequestBody, Response, Side, StorageRequest,
    StorageResponse, ToEnclave, ToParent,
};
pub use outline::{MAX_FRAME_DEPTH, MAX_FRAME_ITEMS};

/// Version of the frame format and message set. Peers with a different major version refuse
/// each other at hello time; minor additions are signalled through capabilities instead.
pub const PROTOCOL_VERSION: u16 = 1;
