//! The parent's side of the enclave link: connect, keep connected, reconnect with capped
//! exponential back-off, and serve what the enclave asks of the parent.
//!
//! There is at most one live connection. Forwarders take a clone of it per request; when it dies
//! every waiter fails at once (the link fails them), and new requests get "enclave unavailable"
//! until the next connection is up, instead of waiting out a timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use vettid_link::{connect, Connection, Handler, LinkConfig, RequestCtx};
use vettid_protocol::{
    ErrorCode, Event, LogLevel, Publication, Request, Response, Role, WireError,
};

use crate::config::EnclaveConfig;
use crate::metrics::Metrics;

/// Publications the enclave sends as events, waiting for the NATS publisher.
pub const PUBLISH_QUEUE: usize = 4096;

/// Shared view of the link.
pub struct EnclaveLink {
    current: watch::Sender<Option<Connection>>,
    last_error: Mutex<Option<String>>,
    connects: AtomicU64,
}

impl Default for EnclaveLink {
    fn default() -> Self {
        Self::new()
    }
}

impl EnclaveLink {
    /// A link not yet connected.
    pub fn new() -> Self {
        Self {
            current: watch::channel(None).0,
            last_error: Mutex::new(None),
            connects: AtomicU64::new(0),
        }
    }

    /// The live connection, if any.
    pub fn current(&self) -> Option<Connection> {
        self.current.borrow().clone().filter(|c| !c.is_closed())
    }

    /// Why the last attempt or connection failed, for `/health`.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections established since start.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Keeps the link up until `shutdown` turns true, then closes it gracefully.
    pub async fn run(
        self: Arc<Self>,
        config: EnclaveConfig,
        link: LinkConfig,
        handler: Arc<ParentHandler>,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut delay = config.reconnect_initial;
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let attempt = tokio::time::timeout(config.connect_timeout, async {
                let stream = connect(&config.address).await.map_err(|e| e.to_string())?;
                Connection::establish(stream, link.clone(), handler.clone())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err("connect timed out".into()));
            match attempt {
                Ok((conn, task)) => {
                    if self.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                        metrics.enclave_reconnects.inc();
                    }
                    tracing::info!(address = %config.address, enclave = %conn.peer_hello().software, "enclave link up");
                    self.set_error(None);
                    self.current.send_replace(Some(conn.clone()));
                    metrics.enclave_connected.set(1);
                    delay = config.reconnect_initial;
                    failures = 0;
                    tokio::pin!(task);
                    let reason = tokio::select! {
                        reason = &mut task => reason,
                        _ = crate::signalled(&mut shutdown) => {
                            conn.close("parent shutting down");
                            task.await
                        }
                    };
                    self.current.send_replace(None);
                    metrics.enclave_connected.set(0);
                    self.set_error(Some(reason.to_string()));
                    tracing::warn!(%reason, "enclave link down");
                }
                Err(e) => {
                    failures += 1;
                    // The first failure is news; repeats while the enclave restarts are not.
                    if failures == 1 {
                        tracing::warn!(address = %config.address, error = %e, "cannot reach the enclave; retrying");
                    } else {
                        tracing::debug!(address = %config.address, error = %e, failures, "enclave still unreachable");
                    }
                    self.set_error(Some(e));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::signalled(&mut shutdown) => {}
                    }
                    delay = (delay * 2).min(config.reconnect_max);
                }
            }
        }
    }
}

/// Link settings for the parent side.
pub fn link_config(config: &EnclaveConfig) -> LinkConfig {
    let mut link = LinkConfig::new(Role::Parent);
    link.max_frame_len = config.max_frame_len;
    link.capabilities = vec!["nats".into()];
    link
}

/// Serves the enclave's requests and events on the parent side.
pub struct ParentHandler {
    publish: mpsc::Sender<Publication>,
    metrics: Arc<Metrics>,
}

impl ParentHandler {
    /// A handler that queues the enclave's publications on `publish`.
    pub fn new(publish: mpsc::Sender<Publication>, metrics: Arc<Metrics>) -> Self {
        Self { publish, metrics }
    }
}

impl Handler for ParentHandler {
    async fn handle(&self, request: Request, _ctx: RequestCtx) -> Result<Response, WireError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::Nats(_) => Err(WireError::new(
                ErrorCode::UnknownRequest,
                "the parent does not serve NATS requests",
            )),
            // Replaced by the object-store relay when it lands (vault issue).
            Request::Storage(_) => Err(WireError::new(
                ErrorCode::Unavailable,
                "no object store configured",
            )),
        }
    }

    fn event(&self, event: Event, _peer: &Connection) {
        match event {
            Event::Log(log) => {
                let fields = log
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let (target, message) = (log.target.as_str(), log.message.as_str());
                match log.level {
                    LogLevel::Error => {
                        tracing::error!(enclave = true, enclave_target = target, %fields, "{message}")
                    }
                    LogLevel::Warn => {
                        tracing::warn!(enclave = true, enclave_target = target, %fields, "{message}")
                    }
                    LogLevel::Info => {
                        tracing::info!(enclave = true, enclave_target = target, %fields, "{message}")
                    }
                    LogLevel::Debug => {
                        tracing::debug!(enclave = true, enclave_target = target, %fields, "{message}")
                    }
                }
            }
            Event::Publish(p) => {
                if self.publish.try_send(p).is_err() {
                    self.metrics.publish_errors.inc();
                    tracing::error!("publication queue full; enclave event dropped");
                }
            }
        }
    }
}

/// Exposes how long ago the enclave was heard from, or None when not connected.
pub fn heartbeat_age(link: &EnclaveLink) -> Option<Duration> {
    link.current().map(|c| c.last_heard())
}
