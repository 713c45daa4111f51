//! The multiplexed RPC connection.
//!
//! A [`Connection`] is a cheap handle (an `Arc`) shared by every task that talks to the peer. It
//! owns the table of requests waiting for an answer; the [`crate::ConnectionTask`] owns the socket.
//!
//! Invariants worth knowing before changing this file:
//! * The table of pending requests and the "closed" flag live under one lock, so a request can
//!   never be registered after the close drained the table (it would otherwise wait forever).
//! * The reader never blocks on our own work: a request arriving when all serve slots are taken
//!   is answered `Busy` at once. Blocking the reader would stop it reading the answers our own
//!   handlers are waiting for, and both sides would deadlock.
//! * Dropping a [`Connection::request`] future (cancellation) removes its table entry; a late
//!   answer for it is discarded.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};
use vettid_protocol::{
    CodecError, Event, Frame, FrameCodec, Hello, RequestId, Response, Role, Side, WireError,
    DEFAULT_MAX_FRAME_LEN,
};

/// Settings of one connection. Every bound is named and documented (STYLE rule 16).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Who we are, announced in our hello.
    pub role: Role,
    /// Capabilities announced in our hello.
    pub capabilities: Vec<String>,
    /// Largest frame body we accept (and announce). The peer's own cap bounds what we send.
    pub max_frame_len: usize,
    /// Requests from the peer served at once; beyond this the peer is answered `Busy`.
    pub max_concurrent_serve: usize,
    /// Frames queued for the writer before senders wait (back-pressure on our side).
    pub write_queue: usize,
    /// How often we send a heartbeat ping.
    pub heartbeat_interval: Duration,
    /// Silence after which the peer is declared dead and every waiter fails.
    pub dead_after: Duration,
    /// How long to wait for the peer's hello.
    pub hello_timeout: Duration,
    /// On close, how long in-flight handlers may run before they are cancelled.
    pub drain_grace: Duration,
}

impl LinkConfig {
    /// Defaults suitable for the parent↔enclave link.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            capabilities: Vec::new(),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_concurrent_serve: 1024,
            write_queue: 1024,
            heartbeat_interval: Duration::from_millis(500),
            dead_after: Duration::from_secs(3),
            hello_timeout: Duration::from_secs(5),
            drain_grace: Duration::from_secs(5),
        }
    }
}

/// Context handed to a [`Handler`] with each request.
#[derive(Debug)]
pub struct RequestCtx<S: Side> {
    /// The peer's id for this request.
    pub id: RequestId,
    /// When the peer stops waiting.
    pub deadline: Instant,
    /// The connection the request came on, to call the peer back mid-request.
    pub peer: Connection<S>,
}

impl<S: Side> Clone for RequestCtx<S> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            deadline: self.deadline,
            peer: self.peer.clone(),
        }
    }
}

/// Serves requests and events arriving from the peer, on one [`Side`] of the link: the handler
/// receives only the requests that side serves (the codec answers any other with a typed
/// `UnknownRequest` before a handler runs), and its connection sends only the requests that side
/// sends.
pub trait Handler: Send + Sync + 'static {
    /// Which end of the link this handler serves.
    type Side: Side;

    /// Answers one request. Runs concurrently with other requests; the connection enforces the
    /// deadline and answers `Timeout` if it passes.
    fn handle(
        &self,
        request: <Self::Side as Side>::Serves,
        ctx: RequestCtx<Self::Side>,
    ) -> impl Future<Output = Result<Response, WireError>> + Send;

    /// Receives a fire-and-forget event. Must not block.
    fn event(&self, event: Event, peer: &Connection<Self::Side>) {
        let _ = (event, peer);
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the stream between frames.
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer sent no frame for longer than `dead_after`.
    #[error("peer silent for more than {0:?}")]
    PeerDead(Duration),
    /// A fatal framing error (over-cap prefix, truncated frame).
    #[error("framing error: {0}")]
    Framing(String),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// We closed it.
    #[error("closed locally: {0}")]
    Local(String),
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The connection is gone (or went while we waited).
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered with an error.
    #[error("peer error: {0}")]
    Remote(WireError),
    /// The request could not be encoded (too large for the peer's cap).
    #[error("request not sent: {0}")]
    Encode(String),
}

/// Failure to set a connection up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The socket failed during the hello exchange.
    #[error("hello exchange failed: {0}")]
    Codec(#[from] CodecError),
    /// The peer's first frame was not a hello, or it never came.
    #[error("peer did not say hello: {0}")]
    NoHello(String),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {peer}, we speak {ours}")]
    Version {
        /// Ours.
        ours: u16,
        /// Theirs.
        peer: u16,
    },
}

/// Counters for metrics and health.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent.
    pub frames_out: AtomicU64,
    /// Frames received that could not be decoded (answered with an error).
    pub bad_frames_in: AtomicU64,
    /// Peer requests answered `Busy` because every serve slot was taken.
    pub busy_rejections: AtomicU64,
    /// Events dropped because the write queue was full.
    pub events_dropped: AtomicU64,
    /// Largest number of peer requests served at once.
    pub max_serving: AtomicU64,
}

pub(crate) type Waiter = oneshot::Sender<Result<Response, RpcError>>;

pub(crate) struct Pending {
    pub(crate) closed: Option<CloseReason>,
    pub(crate) waiters: HashMap<RequestId, Waiter>,
}

pub(crate) struct Shared {
    pub(crate) config: LinkConfig,
    pub(crate) peer_hello: Hello,
    /// Encoder capped at the smaller of our and the peer's frame limits.
    pub(crate) out_codec: FrameCodec,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) next_id: AtomicU64,
    pub(crate) out_tx: mpsc::Sender<Bytes>,
    pub(crate) close_tx: tokio::sync::watch::Sender<Option<CloseReason>>,
    pub(crate) serve_slots: Arc<Semaphore>,
    pub(crate) started: Instant,
    /// Milliseconds since `started` when the last frame arrived.
    pub(crate) last_heard_ms: AtomicU64,
    pub(crate) stats: ConnectionStats,
}

/// Handle to a live (or closed) connection on side `S` of the link. Clone freely.
pub struct Connection<S: Side> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) side: PhantomData<fn() -> S>,
}

impl<S: Side> Clone for Connection<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            side: PhantomData,
        }
    }
}

impl<S: Side> std::fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer_hello.role)
            .finish()
    }
}

impl<S: Side> Connection<S> {
    /// Sends `body` and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`RpcError::Closed`] if the connection is or becomes closed, [`RpcError::Timeout`],
    /// [`RpcError::Remote`] when the peer answers with an error, [`RpcError::Encode`] if the
    /// request exceeds the peer's frame cap.
    pub async fn request(&self, body: S::Sends, timeout: Duration) -> Result<Response, RpcError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let bytes = self
            .shared
            .out_codec
            .encode_to_bytes(&Frame::Request {
                id,
                deadline_ms,
                body,
            })
            .map_err(|e| RpcError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.lock_pending();
            if let Some(reason) = &pending.closed {
                return Err(RpcError::Closed(reason.clone()));
            }
            pending.waiters.insert(id, tx);
        }
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };
        let exchange = async {
            self.shared
                .out_tx
                .send(bytes)
                .await
                .map_err(|_| self.closed_error())?;
            rx.await.map_err(|_| self.closed_error())?
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    /// Queues a fire-and-forget event. Never waits: if the write queue is full the event is
    /// dropped and counted, because events (log lines) must not stall request traffic.
    pub fn send_event(&self, event: Event) {
        let frame = Frame::<S::Sends>::Event(event);
        let Ok(bytes) = self.shared.out_codec.encode_to_bytes(&frame) else {
            self.shared
                .stats
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.shared.out_tx.try_send(bytes).is_err() {
            self.shared
                .stats
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The hello the peer sent.
    pub fn peer_hello(&self) -> &Hello {
        &self.shared.peer_hello
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.close_tx.borrow().is_some()
    }

    /// Why the connection closed, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.close_tx.borrow().clone()
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared.close_tx.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return CloseReason::Local("connection task gone".into());
            }
        }
    }

    /// Starts closing: stops reading, fails waiters, lets in-flight handlers finish within the
    /// drain grace. Idempotent.
    pub fn close(&self, why: &str) {
        self.shared.mark_closed(CloseReason::Local(why.into()));
    }

    /// Time since the peer last sent any frame.
    pub fn last_heard(&self) -> Duration {
        let now = self.shared.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.shared.last_heard_ms.load(Ordering::Relaxed)))
    }

    /// Requests currently waiting for an answer from the peer.
    pub fn in_flight(&self) -> usize {
        self.shared.lock_pending().waiters.len()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ConnectionStats {
        &self.shared.stats
    }

    fn closed_error(&self) -> RpcError {
        RpcError::Closed(
            self.close_reason()
                .unwrap_or(CloseReason::Local("closing".into())),
        )
    }
}

impl Shared {
    pub(crate) fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the close (first reason wins) and fails every waiter.
    pub(crate) fn mark_closed(&self, reason: CloseReason) {
        let waiters = {
            let mut pending = self.lock_pending();
            if pending.closed.is_some() {
                return;
            }
            pending.closed = Some(reason.clone());
            std::mem::take(&mut pending.waiters)
        };
        for (_, w) in waiters {
            let _ = w.send(Err(RpcError::Closed(reason.clone())));
        }
        self.close_tx.send_replace(Some(reason));
    }

    pub(crate) fn heard(&self) {
        self.last_heard_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Removes a request's table entry however its future ends (answer, timeout, cancellation).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: RequestId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock_pending().waiters.remove(&self.id);
    }
}
