//! The typed frame and its CBOR shape.
//!
//! On the wire a frame body is a 4-element CBOR array `[kind, id, deadline_ms, body]`:
//! `kind` is a short text tag, `id` the request id (null where the kind has none), `deadline_ms`
//! the sender's remaining budget for a request (relative, because the two clocks are not
//! synchronised), and `body` the kind's payload. An array keeps decoding single-pass: the kind is
//! read first and selects the body type, with no buffering of unknown content.
//!
//! A frame is typed by the request body `R` of the direction it travels: a request the enclave
//! receives is a `Frame<ToEnclave>`, one the parent receives a `Frame<ToParent>`. Every other kind
//! carries the same body in both directions, so it encodes to the same bytes whatever `R` is.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::WireError;
use crate::message::{Event, RequestBody, Response};

/// Request ids are chosen by the sender of the request and are unique per direction per
/// connection. Responses and errors echo them.
pub type RequestId = u64;

/// Which side of the link a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The host daemon.
    Parent,
    /// The enclave service.
    Enclave,
    /// A test or tool client.
    Tool,
}

/// First frame each side sends on a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u16,
    /// Who is speaking.
    pub role: Role,
    /// Software version of the sender (`CARGO_PKG_VERSION`), for logs.
    pub software: String,
    /// Optional features the sender supports (for example `"storage"`).
    pub capabilities: Vec<String>,
    /// The largest frame the sender accepts; the peer must not send more.
    pub max_frame_len: u32,
}

/// Liveness probe. A `ping` is answered by a heartbeat with the same `seq` and `pong = true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender's sequence number.
    pub seq: u64,
    /// True on the answer.
    pub pong: bool,
}

/// One frame, with `R` the request body of the direction it travels.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<R> {
    /// Version and capability exchange; the first frame in each direction.
    Hello(Hello),
    /// A request the receiver must answer with a response or an error carrying the same id.
    Request {
        /// Sender-chosen id.
        id: RequestId,
        /// Milliseconds the sender will wait; the receiver may drop work past it.
        deadline_ms: u32,
        /// What is asked.
        body: R,
    },
    /// A successful answer.
    Response {
        /// Id of the request answered.
        id: RequestId,
        /// The answer.
        body: Response,
    },
    /// A failed answer, or a complaint about a frame that had no usable id.
    Error {
        /// Id of the request answered, if the failed frame had one.
        id: Option<RequestId>,
        /// What went wrong.
        error: WireError,
    },
    /// Fire-and-forget notification (a log line, a publication).
    Event(Event),
    /// Liveness probe or its answer.
    Heartbeat(Heartbeat),
}

/// The kind tag of a frame. `Unknown` catches tags from newer peers so they can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameKind {
    /// [`Frame::Hello`]
    #[serde(rename = "hello")]
    Hello,
    /// [`Frame::Request`]
    #[serde(rename = "req")]
    Request,
    /// [`Frame::Response`]
    #[serde(rename = "res")]
    Response,
    /// [`Frame::Error`]
    #[serde(rename = "err")]
    Error,
    /// [`Frame::Event`]
    #[serde(rename = "evt")]
    Event,
    /// [`Frame::Heartbeat`]
    #[serde(rename = "hb")]
    Heartbeat,
    /// Any tag this build does not know.
    #[serde(other)]
    Unknown,
}

impl FrameKind {
    /// The kind a wire tag names (`Unknown` for none or a tag this build does not know).
    pub(crate) fn from_tag(tag: Option<&str>) -> Self {
        match tag {
            Some("hello") => FrameKind::Hello,
            Some("req") => FrameKind::Request,
            Some("res") => FrameKind::Response,
            Some("err") => FrameKind::Error,
            Some("evt") => FrameKind::Event,
            Some("hb") => FrameKind::Heartbeat,
            _ => FrameKind::Unknown,
        }
    }
}

impl<R> Frame<R> {
    /// The kind tag of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::Request { .. } => FrameKind::Request,
            Frame::Response { .. } => FrameKind::Response,
            Frame::Error { .. } => FrameKind::Error,
            Frame::Event(_) => FrameKind::Event,
            Frame::Heartbeat(_) => FrameKind::Heartbeat,
        }
    }
}

// === impl Serialize for Frame ===

impl<R: Serialize> Serialize for Frame<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.kind())?;
        match self {
            Frame::Hello(h) => {
                t.serialize_element(&None::<u64>)?;
                t.serialize_element(&None::<u32>)?;
                t.serialize_element(h)?;
            }
            Frame::Request {
                id,
                deadline_ms,
                body,
            } => {
                t.serialize_element(&Some(*id))?;
                t.serialize_element(&Some(*deadline_ms))?;
                t.serialize_element(body)?;
            }
            Frame::Response { id, body } => {
                t.serialize_element(&Some(*id))?;
                t.serialize_element(&None::<u32>)?;
                t.serialize_element(body)?;
            }
            Frame::Error { id, error } => {
                t.serialize_element(id)?;
                t.serialize_element(&None::<u32>)?;
                t.serialize_element(error)?;
            }
            Frame::Event(e) => {
                t.serialize_element(&None::<u64>)?;
                t.serialize_element(&None::<u32>)?;
                t.serialize_element(e)?;
            }
            Frame::Heartbeat(h) => {
                t.serialize_element(&None::<u64>)?;
                t.serialize_element(&None::<u32>)?;
                t.serialize_element(h)?;
            }
        }
        t.end()
    }
}

// === impl Deserialize ===

/// What a frame body decodes to before validation: a frame, or an unknown kind whose id we keep
/// so the peer can be told.
pub(crate) enum WireFrame<R> {
    Known(Frame<R>),
    UnknownKind { id: Option<RequestId> },
}

impl<'de, R: RequestBody> Deserialize<'de> for WireFrame<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FrameVisitor(PhantomData))
    }
}

struct FrameVisitor<R>(PhantomData<R>);

fn missing<E: de::Error>(what: &'static str) -> E {
    E::custom(format_args!("frame is missing its {what}"))
}

impl<'de, R: RequestBody> Visitor<'de> for FrameVisitor<R> {
    type Value = WireFrame<R>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a frame array [kind, id, deadline_ms, body]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireFrame<R>, A::Error> {
        let kind: FrameKind = seq.next_element()?.ok_or_else(|| missing("kind"))?;
        let id: Option<u64> = seq.next_element()?.ok_or_else(|| missing("id"))?;
        let deadline: Option<u32> = seq.next_element()?.ok_or_else(|| missing("deadline"))?;
        let need_id = || id.ok_or_else(|| missing::<A::Error>("request id"));
        let frame = match kind {
            FrameKind::Hello => Frame::Hello(seq.next_element()?.ok_or_else(|| missing("body"))?),
            FrameKind::Request => Frame::Request {
                id: need_id()?,
                deadline_ms: deadline.ok_or_else(|| missing("deadline"))?,
                body: seq.next_element()?.ok_or_else(|| missing("body"))?,
            },
            FrameKind::Response => Frame::Response {
                id: need_id()?,
                body: seq.next_element()?.ok_or_else(|| missing("body"))?,
            },
            FrameKind::Error => Frame::Error {
                id,
                error: seq.next_element()?.ok_or_else(|| missing("body"))?,
            },
            FrameKind::Event => Frame::Event(seq.next_element()?.ok_or_else(|| missing("body"))?),
            FrameKind::Heartbeat => {
                Frame::Heartbeat(seq.next_element()?.ok_or_else(|| missing("body"))?)
            }
            FrameKind::Unknown => {
                let _: Option<IgnoredAny> = seq.next_element()?;
                return drain(seq).map(|()| WireFrame::UnknownKind { id });
            }
        };
        drain(seq).map(|()| WireFrame::Known(frame))
    }
}

/// Rejects extra array elements: a frame is exactly four values.
fn drain<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    match seq.next_element::<IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(de::Error::custom("frame array has more than four elements")),
    }
}
