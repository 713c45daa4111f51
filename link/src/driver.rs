//! Setting a connection up (hello exchange) and the task that owns its socket.
//!
//! Shutdown order, which the tests rely on: (1) the close is recorded and every waiter fails,
//! (2) reading stops, (3) in-flight handlers get `drain_grace` to finish and queue their answers,
//! (4) the writer flushes what is queued and shuts the stream down. A frame is never half-written
//! by a graceful close, and never half-read: reading stops only between frames.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use vettid_protocol::io::{read_frame, write_chunked};
use vettid_protocol::{
    CodecError, Decoded, ErrorCode, Frame, FrameCodec, Heartbeat, Hello, Side, WireError,
    PROTOCOL_VERSION,
};

use crate::connection::{
    CloseReason, Connection, ConnectionStats, Handler, LinkConfig, LinkError, Pending, RequestCtx,
    Shared,
};

/// Frames smaller than this are coalesced into one write with whatever else is queued.
const COALESCE_LIMIT: usize = 64 * 1024;
/// How long the writer may take to flush queued frames after a close.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// The task that owns a connection's socket. Await it to learn why the connection ended; it
/// resolves only after in-flight handlers have finished or been cancelled at the drain grace.
#[derive(Debug)]
pub struct ConnectionTask {
    handle: JoinHandle<CloseReason>,
}

impl Future for ConnectionTask {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        Pin::new(&mut self.handle).poll(cx).map(|r| {
            r.unwrap_or_else(|e| CloseReason::Local(format!("connection task failed: {e}")))
        })
    }
}

/// A frame this end writes: its request bodies are the ones side `S` sends (every other kind is
/// the same in both directions).
type Outgoing<S> = Frame<<S as Side>::Sends>;

impl<S: Side> Connection<S> {
    /// Exchanges hellos over `io`, then starts the connection task.
    ///
    /// # Errors
    /// [`LinkError`] if the peer does not answer with a compatible hello within `hello_timeout`.
    pub async fn establish<T, H>(
        io: T,
        config: LinkConfig,
        handler: Arc<H>,
    ) -> Result<(Connection<S>, ConnectionTask), LinkError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
        H: Handler<Side = S>,
    {
        let in_codec = FrameCodec::new(config.max_frame_len);
        let (mut rd, mut wr) = tokio::io::split(io);
        let hello = Outgoing::<S>::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            role: config.role,
            software: env!("CARGO_PKG_VERSION").into(),
            capabilities: config.capabilities.clone(),
            max_frame_len: u32::try_from(config.max_frame_len).unwrap_or(u32::MAX),
        });
        write_chunked(&mut wr, &in_codec.encode_to_bytes(&hello)?).await?;
        wr.flush().await.map_err(CodecError::Io)?;

        let mut buf = BytesMut::with_capacity(16 * 1024);
        let first = tokio::time::timeout(
            config.hello_timeout,
            read_frame::<_, S::Serves>(&mut rd, &mut buf, &in_codec),
        )
        .await
        .map_err(|_| LinkError::NoHello(format!("nothing within {:?}", config.hello_timeout)))??;
        let peer_hello = match first {
            Some(Decoded::Frame(Frame::Hello(h))) => h,
            Some(other) => return Err(LinkError::NoHello(format!("first frame was {other:?}"))),
            None => return Err(LinkError::NoHello("peer closed before hello".into())),
        };
        if peer_hello.protocol_version != PROTOCOL_VERSION {
            let refusal = Outgoing::<S>::Error {
                id: None,
                error: WireError::new(ErrorCode::Rejected, "unsupported protocol version"),
            };
            if let Ok(bytes) = in_codec.encode_to_bytes(&refusal) {
                let _ = write_chunked(&mut wr, &bytes).await;
            }
            return Err(LinkError::Version {
                ours: PROTOCOL_VERSION,
                peer: peer_hello.protocol_version,
            });
        }

        let out_len = config.max_frame_len.min(peer_hello.max_frame_len as usize);
        let (out_tx, out_rx) = mpsc::channel(config.write_queue.max(1));
        let shared = Arc::new(Shared {
            out_codec: FrameCodec::new(out_len),
            serve_slots: Arc::new(Semaphore::new(config.max_concurrent_serve.max(1))),
            config,
            peer_hello,
            pending: Mutex::new(Pending {
                closed: None,
                waiters: Default::default(),
            }),
            next_id: AtomicU64::new(1),
            out_tx,
            close_tx: tokio::sync::watch::channel(None).0,
            started: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            stats: ConnectionStats::default(),
        });
        let conn = Connection {
            shared,
            side: std::marker::PhantomData,
        };
        let driver = Driver {
            conn: conn.clone(),
            handler,
            in_codec,
            handlers: JoinSet::new(),
        };
        let handle = tokio::spawn(driver.run(rd, wr, buf, out_rx));
        Ok((conn, ConnectionTask { handle }))
    }
}

struct Driver<H: Handler> {
    conn: Connection<H::Side>,
    handler: Arc<H>,
    in_codec: FrameCodec,
    handlers: JoinSet<()>,
}

impl<H: Handler> Driver<H> {
    async fn run<T: AsyncRead + AsyncWrite + Send + 'static>(
        mut self,
        mut rd: ReadHalf<T>,
        wr: WriteHalf<T>,
        mut buf: BytesMut,
        out_rx: mpsc::Receiver<Bytes>,
    ) -> CloseReason {
        let shared = self.conn.shared.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let writer = write_loop(wr, out_rx, stop_rx, shared.clone());
        tokio::pin!(writer);
        let mut close_rx = shared.close_tx.subscribe();
        let mut heartbeat = tokio::time::interval(shared.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut writer_done = false;

        let reason = loop {
            tokio::select! {
                biased;
                _ = close_rx.changed() => {
                    break close_rx.borrow().clone().unwrap_or(CloseReason::Local("closed".into()));
                }
                res = &mut writer => {
                    writer_done = true;
                    break match res {
                        Ok(()) => CloseReason::Local("writer stopped".into()),
                        Err(e) => CloseReason::Io(e.to_string()),
                    };
                }
                frame = read_frame(&mut rd, &mut buf, &self.in_codec) => match frame {
                    Ok(Some(decoded)) => {
                        shared.heard();
                        shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                        self.dispatch(decoded);
                    }
                    Ok(None) => break CloseReason::PeerClosed,
                    Err(CodecError::Io(e)) => break CloseReason::Io(e.to_string()),
                    Err(e) => break CloseReason::Framing(e.to_string()),
                },
                _ = heartbeat.tick() => {
                    let silent = self.conn.last_heard();
                    if silent > shared.config.dead_after {
                        break CloseReason::PeerDead(silent);
                    }
                    seq += 1;
                    self.queue(Outgoing::<H::Side>::Heartbeat(Heartbeat { seq, pong: false }));
                }
                Some(_) = self.handlers.join_next(), if !self.handlers.is_empty() => {}
            }
        };
        match &reason {
            CloseReason::Local(_) => tracing::debug!(%reason, "link closing"),
            _ => tracing::warn!(%reason, "link closed"),
        }
        shared.mark_closed(reason.clone());
        drop(rd);

        // Let in-flight handlers finish and queue their answers while the writer keeps writing.
        let grace = tokio::time::sleep(shared.config.drain_grace);
        tokio::pin!(grace);
        while !self.handlers.is_empty() {
            tokio::select! {
                _ = self.handlers.join_next() => {}
                res = &mut writer, if !writer_done => { writer_done = true; let _ = res; }
                _ = &mut grace => {
                    tracing::warn!(left = self.handlers.len(), "drain grace over, cancelling handlers");
                    self.handlers.shutdown().await;
                }
            }
        }
        if !writer_done {
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(FLUSH_GRACE, writer).await;
        }
        reason
    }

    fn dispatch(&mut self, decoded: Decoded<<H::Side as Side>::Serves>) {
        let shared = &self.conn.shared;
        match decoded {
            Decoded::Frame(Frame::Request {
                id,
                deadline_ms,
                body,
            }) => {
                let Ok(permit) = shared.serve_slots.clone().try_acquire_owned() else {
                    shared.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                    self.queue(Outgoing::<H::Side>::Error {
                        id: Some(id),
                        error: WireError::new(ErrorCode::Busy, "too many requests in flight"),
                    });
                    return;
                };
                let serving = (shared.config.max_concurrent_serve.max(1)
                    - shared.serve_slots.available_permits()) as u64;
                shared
                    .stats
                    .max_serving
                    .fetch_max(serving, Ordering::Relaxed);
                let deadline = Instant::now() + Duration::from_millis(deadline_ms.into());
                let ctx = RequestCtx {
                    id,
                    deadline,
                    peer: self.conn.clone(),
                };
                let handler = self.handler.clone();
                let conn = self.conn.clone();
                self.handlers.spawn(async move {
                    let work = handler.handle(body, ctx);
                    let frame: Outgoing<H::Side> =
                        match tokio::time::timeout_at(deadline.into(), work).await {
                            Ok(Ok(body)) => Frame::Response { id, body },
                            Ok(Err(error)) => Frame::Error {
                                id: Some(id),
                                error,
                            },
                            Err(_) => Frame::Error {
                                id: Some(id),
                                error: WireError::new(ErrorCode::Timeout, "deadline passed"),
                            },
                        };
                    send_answer(&conn, id, frame).await;
                    drop(permit);
                });
            }
            Decoded::Frame(Frame::Response { id, body }) => self.complete(id, Ok(body)),
            Decoded::Frame(Frame::Error {
                id: Some(id),
                error,
            }) => self.complete(id, Err(crate::RpcError::Remote(error))),
            Decoded::Frame(Frame::Error { id: None, error }) => {
                tracing::warn!(code = ?error.code, message = %error.message, "peer rejected one of our frames");
            }
            Decoded::Frame(Frame::Event(event)) => self.handler.event(event, &self.conn),
            Decoded::Frame(Frame::Heartbeat(Heartbeat { seq, pong: false })) => {
                self.queue(Outgoing::<H::Side>::Heartbeat(Heartbeat {
                    seq,
                    pong: true,
                }));
            }
            Decoded::Frame(Frame::Heartbeat(_)) => {}
            Decoded::Frame(Frame::Hello(_)) => {
                self.queue(Outgoing::<H::Side>::Error {
                    id: None,
                    error: WireError::new(ErrorCode::Malformed, "hello after start"),
                });
            }
            Decoded::Invalid { id, error } => {
                shared.stats.bad_frames_in.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?id, code = ?error.code, "undecodable frame from peer");
                self.queue(Outgoing::<H::Side>::Error { id, error });
            }
        }
    }

    fn complete(&self, id: u64, result: Result<vettid_protocol::Response, crate::RpcError>) {
        let waiter = self.conn.shared.lock_pending().waiters.remove(&id);
        match waiter {
            Some(w) => {
                let _ = w.send(result);
            }
            None => tracing::debug!(id, "answer for a request nobody waits for (timed out?)"),
        }
    }

    /// Queues a small control frame without waiting; if the queue is full the peer is already
    /// flooded and a lost heartbeat or error notice is harmless.
    fn queue(&self, frame: Outgoing<H::Side>) {
        if let Ok(bytes) = self.conn.shared.out_codec.encode_to_bytes(&frame) {
            let _ = self.conn.shared.out_tx.try_send(bytes);
        }
    }
}

/// Sends a handler's answer, replacing it with an error if it is too large for the peer.
async fn send_answer<S: Side>(conn: &Connection<S>, id: u64, frame: Outgoing<S>) {
    let codec = &conn.shared.out_codec;
    let bytes = match codec.encode_to_bytes(&frame) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(id, error = %e, "answer could not be encoded");
            let error = WireError::new(ErrorCode::Internal, "answer exceeds the frame cap");
            match codec.encode_to_bytes(&Outgoing::<S>::Error {
                id: Some(id),
                error,
            }) {
                Ok(b) => b,
                Err(_) => return,
            }
        }
    };
    let _ = conn.shared.out_tx.send(bytes).await;
}

async fn write_loop<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    mut rx: mpsc::Receiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            Some(first) = rx.recv() => first,
            _ = &mut stop => {
                while let Ok(bytes) = rx.try_recv() {
                    write_chunked(&mut wr, &bytes).await.map_err(into_io)?;
                }
                wr.flush().await?;
                return wr.shutdown().await;
            }
        };
        let mut frames = 1;
        if first.len() >= COALESCE_LIMIT {
            write_chunked(&mut wr, &first).await.map_err(into_io)?;
        } else {
            batch.extend_from_slice(&first);
            while batch.len() < COALESCE_LIMIT {
                match rx.try_recv() {
                    Ok(more) => {
                        batch.extend_from_slice(&more);
                        frames += 1;
                    }
                    Err(_) => break,
                }
            }
            write_chunked(&mut wr, &batch).await.map_err(into_io)?;
            batch.clear();
        }
        wr.flush().await?;
        shared.stats.frames_out.fetch_add(frames, Ordering::Relaxed);
    }
}

fn into_io(e: CodecError) -> io::Error {
    match e {
        CodecError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
