//! The tunnel listener: the enclave connects (vsock in production), names a target in its
//! preamble ([`super::preamble`]), and, if and only if the target is on the allow-list, the
//! parent opens a TCP connection to it and copies bytes both ways. TLS ends inside the enclave, so
//! all the parent relays is ciphertext; it logs targets, outcomes and byte counts, never content.
//!
//! Bounds: [`PREAMBLE_TIMEOUT`] for the preamble, `kms.connect_timeout_ms` for the connect,
//! `kms.max_tunnels` open at once (a semaphore; a connection past it is answered `busy` at once,
//! before its preamble is read, so a flood costs no preamble slot).
//!
//! Shutdown ([`TunnelServer::run`]): stop accepting, let open tunnels finish within a grace, then
//! close the rest. Every connection is a task in one `JoinSet` owned here; none is detached, and
//! stragglers are stopped through a signal their copy loop watches, not by `abort()`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use vettid_link::{Address, Listener, Stream};

use super::config::KmsConfig;
use super::preamble::{read_preamble, Reply, PREAMBLE_TIMEOUT};
use super::target::{AllowList, Target};
use crate::metrics::{Metrics, TunnelDirection, TunnelOutcome};

/// How long a refused connection is kept to deliver its one-line answer: after writing it we
/// half-close and read (and drop) what the client already sent, because closing a TCP socket with
/// unread bytes sends a reset that can destroy our answer before the client reads it.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Most bytes read and dropped while lingering on a refused connection.
pub const REFUSAL_DRAIN_MAX: usize = 64 * 1024;

/// Pause after a failed `accept` (EMFILE and the like) before trying again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Grace the parent gives open tunnels on shutdown. Short on purpose: the tunnels close together
/// with the enclave link, after which no answer of the enclave can reach this parent, so a KMS
/// call still open serves nothing. The grace only lets bytes already on their way finish. Most
/// open tunnels at that point are the enclave SDK's idle pooled connections, and a longer grace
/// only delayed every parent restart (it was 2 s; the fault table's SIGTERM row measured it).
pub const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// A bound tunnel listener, ready to [`run`](Self::run).
pub struct TunnelServer {
    listener: Listener,
    shared: Arc<Shared>,
    max_tunnels: usize,
}

/// What every tunnel task needs.
struct Shared {
    allow: AllowList,
    resolve: std::collections::BTreeMap<String, std::net::IpAddr>,
    connect_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl TunnelServer {
    /// Binds `config.tunnel_listen`.
    ///
    /// # Errors
    /// The bind error.
    pub async fn bind(config: &KmsConfig, metrics: Arc<Metrics>) -> io::Result<Self> {
        let listener = Listener::bind(&config.tunnel_listen).await?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                allow: config.allow.clone(),
                resolve: config.resolve.clone(),
                connect_timeout: config.connect_timeout,
                metrics,
            }),
            max_tunnels: config.max_tunnels,
        })
    }

    /// The address bound (resolves TCP port 0, for tests).
    ///
    /// # Errors
    /// The underlying `local_addr` error.
    pub fn local_addr(&self) -> io::Result<Address> {
        self.listener.local_addr()
    }

    /// Serves tunnels until `shutdown` turns true; then stops accepting, waits up to `grace` for
    /// open tunnels to end, closes any still open, and returns once every task has finished.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let Self {
            listener,
            shared,
            max_tunnels,
        } = self;
        let address = listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        tracing::info!(%address, allow = ?shared.allow.iter().map(Target::to_string).collect::<Vec<_>>(), max_tunnels, "kms tunnel listening");
        let slots = Arc::new(Semaphore::new(max_tunnels));
        let (close_tx, close_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                _ = crate::signalled(&mut shutdown) => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => report(done),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            tasks.spawn(serve(shared.clone(), stream, peer, slot, close_rx.clone()));
                        }
                        Err(_) => {
                            shared.metrics.kms_tunnel(TunnelOutcome::Busy);
                            tracing::warn!(%peer, outcome = "busy", max_tunnels, "kms tunnel refused: too many open");
                            tasks.spawn(refuse(stream, Reply::Busy));
                        }
                    },
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "kms tunnel accept failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            _ = crate::signalled(&mut shutdown) => break,
                        }
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(
            open = tasks.len(),
            ?grace,
            "kms tunnel listener closed; draining"
        );
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = tasks.join_next().await {
                report(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = tasks.len(),
                "kms tunnel drain grace over; closing the rest"
            );
            let _ = close_tx.send(true);
            while let Some(done) = tasks.join_next().await {
                report(done);
            }
        }
        tracing::info!("kms tunnel stopped");
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "kms tunnel task failed");
    }
}

/// One connection from the enclave, start to finish.
async fn serve(
    shared: Arc<Shared>,
    mut stream: Stream,
    peer: String,
    _slot: OwnedSemaphorePermit,
    mut close: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    // Until the tunnel is open, the close signal (drain grace over) ends it at once: a client
    // still sending its preamble or a slow connect must not hold shutdown up.
    let preamble = tokio::select! {
        r = tokio::time::timeout(PREAMBLE_TIMEOUT, read_preamble(&mut stream)) => r,
        _ = crate::signalled(&mut close) => return,
    };
    let target = match preamble {
        Ok(Ok(target)) => target,
        Ok(Err(e)) => {
            metrics.kms_tunnel(TunnelOutcome::BadPreamble);
            tracing::info!(%peer, outcome = "bad_preamble", error = %e, "kms tunnel refused");
            return refuse(stream, Reply::Denied).await;
        }
        Err(_) => {
            metrics.kms_tunnel(TunnelOutcome::BadPreamble);
            tracing::info!(%peer, outcome = "bad_preamble", error = "preamble timed out", "kms tunnel refused");
            return refuse(stream, Reply::Denied).await;
        }
    };
    // The allow-list is checked before any DNS lookup or connect: a denied target costs nothing
    // outside this process.
    if !shared.allow.allows(&target) {
        metrics.kms_tunnel(TunnelOutcome::Denied);
        tracing::info!(%peer, upstream = %target, outcome = "denied", "kms tunnel refused: not on kms.allow");
        return refuse(stream, Reply::Denied).await;
    }
    let host = match shared.resolve.get(target.host()) {
        Some(ip) => ip.to_string(),
        None => target.host().to_owned(),
    };
    let connect = TcpStream::connect((host.as_str(), target.port()));
    let connected = tokio::select! {
        r = tokio::time::timeout(shared.connect_timeout, connect) => r,
        _ = crate::signalled(&mut close) => return,
    };
    let upstream = match connected {
        Ok(Ok(s)) => s,
        result => {
            let error = match result {
                Ok(Err(e)) => e.to_string(),
                _ => "connect timed out".into(),
            };
            metrics.kms_tunnel(TunnelOutcome::Unreachable);
            tracing::info!(%peer, upstream = %target, outcome = "unreachable", %error, "kms tunnel refused");
            return refuse(stream, Reply::Unreachable).await;
        }
    };
    let _ = upstream.set_nodelay(true);
    metrics.kms_tunnel(TunnelOutcome::Ok);
    if let Err(e) = stream.write_all(Reply::Ok.line()).await {
        tracing::info!(%peer, upstream = %target, error = %e, "enclave left before the tunnel opened");
        return;
    }
    metrics.kms_tunnels_active.inc();
    tracing::info!(%peer, upstream = %target, outcome = "ok", "kms tunnel open");
    let started = Instant::now();
    // Bytes are counted as they are written, so a long tunnel shows in the metrics while open.
    let mut enclave = Counted::new(stream, metrics.kms_tunnel_bytes(TunnelDirection::FromKms));
    let mut kms = Counted::new(upstream, metrics.kms_tunnel_bytes(TunnelDirection::ToKms));
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut enclave, &mut kms) => match r {
            Ok(_) => "closed".to_string(),
            Err(e) => format!("error: {e}"),
        },
        _ = crate::signalled(&mut close) => "parent shutting down".to_string(),
    };
    metrics.kms_tunnels_active.dec();
    tracing::info!(
        %peer,
        upstream = %target,
        to_kms = kms.written,
        from_kms = enclave.written,
        duration_ms = started.elapsed().as_millis() as u64,
        end,
        "kms tunnel closed"
    );
}

/// Sends the one-line refusal, half-closes, and lingers briefly so the answer is not lost to a
/// reset (see [`REFUSAL_LINGER`]).
async fn refuse(mut stream: Stream, reply: Reply) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        if stream.write_all(reply.line()).await.is_err() {
            return;
        }
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_MAX {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A stream that counts the bytes written to it, into a Prometheus counter and a total.
struct Counted<S> {
    inner: S,
    counter: Counter,
    written: u64,
}

impl<S> Counted<S> {
    fn new(inner: S, counter: Counter) -> Self {
        Self {
            inner,
            counter,
            written: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.written += n as u64;
            this.counter.inc_by(n as u64);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
