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
use vettid_link::{connect, Connection, ConnectionTask, Handler, LinkConfig, RequestCtx};

use crate::attest::{Checked, EnclaveCheck};
use vettid_protocol::{
    Event, LogLevel, ParentSide, Publication, Response, Role, ToEnclave, ToParent, WireError,
};

use crate::config::{EnclaveConfig, KmsConfig};
use crate::kms::CredentialSource;
use crate::metrics::Metrics;
use crate::storage::StorageRelay;

/// A link connection as the parent holds it: it sends [`ToEnclave`] requests.
pub type EnclaveConnection = Connection<ParentSide>;

/// Publications the enclave sends as events, waiting for the NATS publisher.
pub const PUBLISH_QUEUE: usize = 4096;

/// Shared view of the link.
pub struct EnclaveLink {
    current: watch::Sender<Option<EnclaveConnection>>,
    checked: Mutex<Option<Checked>>,
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
            checked: Mutex::new(None),
            last_error: Mutex::new(None),
            connects: AtomicU64::new(0),
        }
    }

    /// The live connection, if any.
    pub fn current(&self) -> Option<EnclaveConnection> {
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
        check: Arc<EnclaveCheck>,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut delay = config.reconnect_initial;
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let attempt = self
                .connect_and_check(&config, &link, &handler, &check)
                .await;
            match attempt {
                Ok((conn, task, checked)) => {
                    if self.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                        metrics.enclave_reconnects.inc();
                    }
                    tracing::info!(
                        address = %config.address,
                        enclave = %conn.peer_hello().software,
                        module_id = %checked.module_id,
                        pcr0 = %checked.pcr0,
                        pcr_set = ?checked.pcr_set,
                        "enclave link up, attestation verified"
                    );
                    *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(checked);
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

impl EnclaveLink {
    /// One attempt: connect, exchange hellos, verify the enclave's attestation, hand it the PCR
    /// manifest. A connection that fails any step is closed before anyone can use it.
    async fn connect_and_check(
        &self,
        config: &EnclaveConfig,
        link: &LinkConfig,
        handler: &Arc<ParentHandler>,
        check: &EnclaveCheck,
    ) -> Result<(EnclaveConnection, ConnectionTask, Checked), String> {
        let limit = config.connect_timeout;
        let stream = tokio::time::timeout(limit, connect(&config.address))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (conn, task) = tokio::time::timeout(
            limit,
            Connection::establish(stream, link.clone(), handler.clone()),
        )
        .await
        .map_err(|_| "hello timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let verified = async {
            let checked = check.check(&conn, limit).await.map_err(|e| e.to_string())?;
            if let Some(manifest) = check.manifest_bytes() {
                let req = ToEnclave::SetPcrManifest {
                    manifest: manifest.clone(),
                };
                conn.request(req, limit)
                    .await
                    .map_err(|e| format!("enclave refused the PCR manifest: {e}"))?;
            }
            Ok::<_, String>(checked)
        }
        .await;
        match verified {
            Ok(checked) => Ok((conn, task, checked)),
            Err(e) => {
                tracing::error!(address = %config.address, error = %e, "enclave failed the attestation check; not serving it");
                conn.close("attestation check failed");
                let _ = task.await;
                Err(e)
            }
        }
    }

    /// The last enclave that passed the check, for `/health`.
    pub fn checked(&self) -> Option<Checked> {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Link settings for the parent side. Capabilities: `aws_credentials` always (the parent knows
/// the request; without `[kms]` it answers a clear `Unavailable`), `kms_tunnel` only when the
/// tunnel listener runs.
pub fn link_config(config: &EnclaveConfig, kms: Option<&KmsConfig>) -> LinkConfig {
    let mut link = LinkConfig::new(Role::Parent);
    link.max_frame_len = config.max_frame_len;
    link.capabilities = vec!["nats".into(), "storage".into(), "aws_credentials".into()];
    if kms.is_some() {
        link.capabilities.push("kms_tunnel".into());
    }
    link
}

/// Serves the enclave's requests and events on the parent side.
pub struct ParentHandler {
    publish: mpsc::Sender<Publication>,
    metrics: Arc<Metrics>,
    storage: StorageRelay,
    credentials: Option<CredentialSource>,
}

impl ParentHandler {
    /// A handler that queues the enclave's publications on `publish` and runs its storage
    /// requests through `storage`.
    pub fn new(
        publish: mpsc::Sender<Publication>,
        metrics: Arc<Metrics>,
        storage: StorageRelay,
    ) -> Self {
        Self {
            publish,
            metrics,
            storage,
            credentials: None,
        }
    }

    /// Serves the enclave's [`ToParent::AwsCredentials`] from `source` (only with a `[kms]`
    /// section; without one the enclave is told "kms not configured on the parent").
    pub fn with_credentials(mut self, source: CredentialSource) -> Self {
        self.credentials = Some(source);
        self
    }
}

/// Serves the enclave's requests. NATS, attestation and manifest requests flow parent → enclave
/// only: an enclave sending one is refused by the link's codec ("wrong direction").
impl Handler for ParentHandler {
    type Side = ParentSide;

    async fn handle(
        &self,
        request: ToParent,
        ctx: RequestCtx<ParentSide>,
    ) -> Result<Response, WireError> {
        match request {
            ToParent::Ping => Ok(Response::Pong),
            ToParent::AwsCredentials => {
                crate::kms::credentials::answer(self.credentials.as_ref(), Some(ctx.deadline)).await
            }
            ToParent::Storage(req) => self
                .storage
                .serve(req, Some(ctx.deadline))
                .await
                .map(Response::Storage),
        }
    }

    fn event(&self, event: Event, _peer: &EnclaveConnection) {
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
