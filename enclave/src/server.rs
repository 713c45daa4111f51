//! The accept loop. Knows connections, not requests: each accepted stream becomes a link
//! connection whose requests go to the [`Processor`].
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
use vettid_protocol::{Event, LogEvent};

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
    let mut sweep = tokio::time::interval(KEY_SWEEP_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
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
            Some(event) = logs.recv() => {
                for conn in live.all() {
                    conn.send_event(Event::Log(event.clone()));
                }
            }
        }
    }
    drop(listener);
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
