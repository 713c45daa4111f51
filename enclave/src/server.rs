//! The accept loop. Knows connections, not requests: each accepted stream becomes a link
//! connection whose requests go to the [`Processor`].
//!
//! Connections are bounded ([`crate::EnclaveConfig::max_connections`]): one past the bound is
//! told `busy` in a single error frame and closed at once, before any hello or buffer, so a host
//! cannot hold enclave memory by opening links.
//!
//! Shutdown order: stop accepting (the listener is dropped first), then close every connection
//! (each stops reading and drains its in-flight requests under the link's grace), then wait for
//! the connection tasks under `grace`, logging any that had to be abandoned.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vettid_link::{Connection, LinkConfig, Listener, Stream};
use vettid_protocol::{ErrorCode, Event, Frame, FrameCodec, LogEvent, WireError};

use crate::parent::ParentLink;
use crate::processor::Processor;

/// How often expired attestation keys are swept (they are also refused on use).
const KEY_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Ids for [`ParentLink`] entries.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Pause after a failed accept (e.g. EMFILE) so a persistent error does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves connections on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: Listener,
    processor: Arc<Processor>,
    link: LinkConfig,
    grace: Duration,
    mut logs: mpsc::Receiver<LogEvent>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let live: ParentLink = processor.state().parent.clone();
    let mut conns = JoinSet::new();
    let mut refusals = JoinSet::new();
    let mut sweep = tokio::time::interval(KEY_SWEEP_INTERVAL);
    let max_connections = processor.state().config.max_connections.max(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Reap finished connections first so a closed one does not count.
                    while conns.try_join_next().is_some() {}
                    if conns.len() >= max_connections {
                        tracing::warn!(%peer, max_connections, "connection refused: at the connection bound");
                        // Refusals in progress are bounded too; past that the stream is just dropped.
                        if refusals.len() < MAX_REFUSALS {
                            refusals.spawn(refuse(stream));
                        }
                        continue;
                    }
                    tracing::info!(%peer, "parent connected");
                    conns.spawn(connection(stream, peer, processor.clone(), link.clone(), stop_rx.clone(), live.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = sweep.tick() => {
                let left = processor.state().keys.sweep();
                tracing::debug!(left, "attestation keys swept");
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            Some(event) = logs.recv() => {
                for conn in live.all() {
                    conn.send_event(Event::Log(event.clone()));
                }
            }
        }
    }
    drop(listener);
    // Each refusal ends within REFUSE_WRITE_LIMIT by construction.
    while refusals.join_next().await.is_some() {}
    tracing::info!(
        connections = conns.len(),
        "shutting down: draining connections"
    );
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            ?grace,
            "drain grace over; abandoning connections"
        );
        conns.shutdown().await;
    }
}

/// Refusals being written at once.
const MAX_REFUSALS: usize = 16;

/// How long a refused peer gets to take its `busy` frame before the stream is dropped.
const REFUSE_WRITE_LIMIT: Duration = Duration::from_millis(500);

/// Tells a connection past the bound why it is refused (one error frame, no hello) and closes it.
/// Refusals are tasks of their own, not counted against the bound (so a flood of them cannot
/// keep the parent's reconnect out), at most [`MAX_REFUSALS`] at once, each at most
/// [`REFUSE_WRITE_LIMIT`]; past that a connection is dropped without even a write.
async fn refuse(mut stream: Stream) {
    use tokio::io::AsyncWriteExt;
    let frame = Frame::<vettid_protocol::ToParent>::Error {
        id: None,
        error: WireError::new(ErrorCode::Busy, "connection limit reached"),
    };
    if let Ok(bytes) = FrameCodec::default().encode_to_bytes(&frame) {
        let _ = tokio::time::timeout(REFUSE_WRITE_LIMIT, async {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

async fn connection(
    stream: Stream,
    peer: String,
    processor: Arc<Processor>,
    link: LinkConfig,
    mut stop: watch::Receiver<bool>,
    live: ParentLink,
) {
    let (conn, task) = match Connection::establish(stream, link, processor).await {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "link set-up failed");
            return;
        }
    };
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    live.insert(id, conn.clone());
    tracing::info!(%peer, software = %conn.peer_hello().software, "link up");
    tokio::pin!(task);
    let reason = tokio::select! {
        reason = &mut task => reason,
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.close("enclave shutting down");
            task.await
        }
    };
    live.remove(id);
    tracing::info!(%peer, %reason, "link down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnclaveConfig, EnclaveState};
    use vettid_link::{Address, Handler, RequestCtx};
    use vettid_nsm::{MockNsm, MockPcrs};
    use vettid_protocol::{ParentSide, Response, Role, ToEnclave, ToParent};

    /// A tool's side of the link: serves nothing.
    struct Tool;

    impl Handler for Tool {
        type Side = ParentSide;

        async fn handle(
            &self,
            _: ToParent,
            _: RequestCtx<ParentSide>,
        ) -> Result<Response, WireError> {
            Err(WireError::new(ErrorCode::UnknownRequest, "tool"))
        }
    }

    async fn open(addr: &Address) -> Result<Connection<ParentSide>, String> {
        let stream = vettid_link::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut config = LinkConfig::new(Role::Tool);
        config.hello_timeout = Duration::from_secs(2);
        let (conn, task) = Connection::establish(stream, config, Arc::new(Tool))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(task);
        Ok(conn)
    }

    async fn pong(conn: &Connection<ParentSide>) -> bool {
        matches!(
            conn.request(ToEnclave::Ping, Duration::from_secs(2)).await,
            Ok(Response::Pong)
        )
    }

    #[tokio::test]
    async fn a_connection_past_the_bound_is_refused_and_the_others_keep_serving() {
        let dir = tempfile::tempdir().unwrap();
        let addr: Address = format!("unix://{}/enclave.sock", dir.path().display())
            .parse()
            .unwrap();
        let mut config = EnclaveConfig::new(addr.clone());
        config.max_connections = 2;
        let nsm = MockNsm::ephemeral(MockPcrs::from_measurement(b"server tests")).unwrap();
        let state = EnclaveState::new(config, Arc::new(nsm)).unwrap();
        let processor = Arc::new(Processor::new(Arc::new(state)));
        let listener = Listener::bind(&addr).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (_logs_tx, logs) = mpsc::channel(1);
        let server = tokio::spawn(serve(
            listener,
            processor,
            LinkConfig::new(Role::Enclave),
            Duration::from_secs(2),
            logs,
            async {
                let _ = stopped.await;
            },
        ));
        let first = open(&addr).await.unwrap();
        let second = open(&addr).await.unwrap();
        assert!(pong(&first).await && pong(&second).await);
        let refused = tokio::time::timeout(Duration::from_secs(5), open(&addr))
            .await
            .expect("refused promptly");
        assert!(refused.is_err(), "a third connection was accepted");
        assert!(pong(&first).await, "the first connection still serves");
        // A closed connection frees its place (the parent's reconnect gets in).
        second.close("test done");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let third = loop {
            if let Ok(c) = open(&addr).await {
                break c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no room after a close"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(pong(&third).await);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops")
            .unwrap();
    }
}
