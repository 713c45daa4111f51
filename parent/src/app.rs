//! Wiring and lifecycle: connect NATS, start the enclave link, HTTP and the bridge; on shutdown,
//! drain in the right order.
//!
//! Start-up binds the KMS tunnel listener (with a `[kms]` section) before anything connects, so a
//! port already taken stops the parent at once instead of leaving the enclave without KMS.
//!
//! Shutdown order: (1) `/ready` turns false and the bridge drains its subscriptions while the
//! enclave link and the KMS tunnel stay up, so in-flight requests still get their answers (they
//! may need KMS); (2) once the bridge is done (or its grace is over) the link closes gracefully,
//! the HTTP server and the publisher stop, and the tunnel listener stops accepting and gives open
//! tunnels [`DRAIN_GRACE`] before closing them; (3) every task is joined. Nothing is detached.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vettid_protocol::Publication;

use crate::attest::EnclaveCheck;
use crate::bridge::{self, Bridge};
use crate::config::{Config, NatsConfig};
use crate::enclave_link::{self, EnclaveLink, ParentHandler, PUBLISH_QUEUE};
use crate::http::{self, HttpState};
use crate::kms::tunnel::DRAIN_GRACE;
use crate::kms::{CredentialSource, TunnelServer};
use crate::metrics::Metrics;
use crate::storage::StorageRelay;

/// Why the parent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// NATS options (credentials file, TLS CA) could not be applied.
    #[error("nats setup: {0}")]
    NatsSetup(String),
    /// Subscribing failed.
    #[error("nats subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The enclave check could not be set up (unreadable manifest, bad signature, ...).
    #[error("{0}")]
    Attestation(#[from] crate::attest::CheckError),
    /// The object store could not be opened (filesystem root not creatable, ...).
    #[error("object store: {0}")]
    Storage(String),
    /// The KMS tunnel listener could not be bound, or no credential provider was found.
    #[error("kms: {0}")]
    Kms(String),
}

/// NATS reconnect delay: 50 ms doubling to 1 s, so service resumes within about a second of the
/// server coming back (the library default backs off to several seconds).
fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis((50u64 << attempts.min(5)).min(1_000))
}

async fn connect_nats(
    c: &NatsConfig,
    metrics: Arc<Metrics>,
) -> Result<async_nats::Client, RunError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(&c.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let metrics = metrics.clone();
            async move {
                use async_nats::Event;
                match event {
                    Event::Connected => {
                        metrics.nats_connected.set(1);
                        tracing::info!("nats connected");
                    }
                    Event::Disconnected => {
                        metrics.nats_connected.set(0);
                        metrics.nats_reconnects.inc();
                        tracing::warn!("nats disconnected; reconnecting");
                    }
                    Event::SlowConsumer(sid) => {
                        metrics.nats_slow_consumer.inc();
                        tracing::error!(sid, "nats slow consumer: messages dropped by the client");
                    }
                    other => tracing::info!(event = %other, "nats event"),
                }
            }
        });
    if let Some(creds) = &c.credentials_file {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| RunError::NatsSetup(format!("credentials file: {e}")))?;
    }
    if let Some(ca) = &c.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if c.require_tls {
        opts = opts.require_tls(true);
    }
    // With retry_on_initial_connect this returns at once and keeps trying in the background.
    opts.connect(c.url.as_str())
        .await
        .map_err(|e| RunError::NatsSetup(e.to_string()))
}

/// Runs the parent until `shutdown` resolves, then drains.
///
/// # Errors
/// [`RunError`] when NATS cannot be set up or subscribed.
pub async fn run(
    config: Config,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // The enclave check's files are read (and the manifest's signature verified) before anything
    // connects: a parent that cannot check the enclave must not start.
    let check = Arc::new(EnclaveCheck::load(&config.attestation)?);
    let metrics = Arc::new(Metrics::new());
    let store = crate::storage::open(&config.storage)
        .await
        .map_err(RunError::Storage)?;
    tracing::info!(backend = store.kind(), "object store ready");
    let storage_probe = http::StorageProbe::new(&store, &config.storage);
    let storage = StorageRelay::new(store, config.storage.timeout, metrics.clone());
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let mut handler = ParentHandler::new(publish_tx, metrics.clone(), storage);
    let mut tunnel = None;
    if let Some(kms) = &config.kms {
        let server = TunnelServer::bind(kms, metrics.clone())
            .await
            .map_err(|e| RunError::Kms(format!("bind {}: {e}", kms.tunnel_listen)))?;
        let source = CredentialSource::from_default_chain(metrics.clone())
            .await
            .map_err(|e| RunError::Kms(e.to_string()))?;
        handler = handler.with_credentials(source);
        tunnel = Some(server);
    }
    let handler = Arc::new(handler);
    let client = connect_nats(&config.nats, metrics.clone()).await?;
    let link = Arc::new(EnclaveLink::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let link_cfg = enclave_link::link_config(&config.enclave, config.kms.as_ref());
    if let Some(server) = tunnel {
        tasks.spawn(server.run(stop_rx.clone(), DRAIN_GRACE));
    }
    tasks.spawn(link.clone().run(
        config.enclave.clone(),
        link_cfg.clone(),
        handler,
        check,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let stream_status = crate::stream::StreamStatus::new(config.nats.enrollment_stream.clone());
    tasks.spawn(crate::stream::run(
        client.clone(),
        stream_status.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(publisher(
        client.clone(),
        publish_rx,
        stop_rx.clone(),
        metrics.clone(),
    ));
    let http_state = Arc::new(HttpState {
        nats: client.clone(),
        link: link.clone(),
        metrics: metrics.clone(),
        started: Instant::now(),
        subscribed: Default::default(),
        draining: Default::default(),
        dead_after: link_cfg.dead_after,
        enclave_address: config.enclave.address.to_string(),
        enclave_id: config.enclave_id.clone(),
        attestation_policy: http::views::attestation_policy(&config.attestation),
        storage: storage_probe,
        kms_allow_entries: config.kms.as_ref().map(|k| k.allow.iter().count()),
        enrollment_stream: stream_status,
    });
    tasks.spawn(http::serve(
        http_listener,
        http_state.clone(),
        stop_rx.clone(),
    ));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tasks.spawn(watchdog(interval, stop_rx.clone()));
    }

    let subs = bridge::subscribe(&client, &config).await?;
    // Push the SUB commands to the server before saying we are ready (bounded: with NATS down the
    // flush waits for the reconnect, and readiness then follows /health anyway).
    if tokio::time::timeout(Duration::from_secs(5), client.flush())
        .await
        .is_err()
    {
        tracing::warn!("nats flush after subscribing timed out; subscriptions are sent on connect");
    }
    http_state.subscribed.store(true, Ordering::Relaxed);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        nats = %config.nats.url,
        enclave = %config.enclave.address,
        queue_group = %config.nats.queue_group,
        enclave_id = %config.enclave_id,
        "parent running"
    );
    let bridge = Bridge {
        client: client.clone(),
        link: link.clone(),
        metrics,
        request_timeout: config.enclave.request_timeout,
        max_in_flight: config.max_in_flight,
        grace: config.shutdown_grace,
    };
    let bridge_task = tokio::spawn(bridge.run(subs, drain_rx));
    shutdown.await;

    tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    http_state.draining.store(true, Ordering::Relaxed);
    let _ = drain_tx.send(true);
    if let Err(e) = bridge_task.await {
        tracing::error!(error = %e, "bridge task failed");
    }
    let _ = stop_tx.send(true);
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!(error = %e, "task failed during shutdown");
        }
    }
    tracing::info!("parent stopped");
    Ok(())
}

/// Publishes the enclave's event publications (not tied to a request) on core NATS.
async fn publisher(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Publication>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            _ = crate::signalled(&mut stop) => break,
            next = rx.recv() => match next {
                Some(p) => {
                    if client.publish(p.subject, p.payload).await.is_err() {
                        metrics.publish_errors.inc();
                    }
                }
                None => break,
            }
        }
    }
}

/// Pets the systemd watchdog at half its interval, but only while the runtime is responsive: a
/// tick that arrives late by more than a quarter of the interval means the event loop is wedged
/// (a blocked worker, a starved scheduler), and then the ping is withheld so systemd restarts us.
async fn watchdog(interval: Duration, mut stop: watch::Receiver<bool>) {
    let period = interval / 2;
    let tolerance = interval / 4;
    let mut next = tokio::time::Instant::now() + period;
    tracing::info!(?interval, "systemd watchdog enabled");
    loop {
        tokio::select! {
            _ = crate::signalled(&mut stop) => break,
            _ = tokio::time::sleep_until(next) => {
                let lag = tokio::time::Instant::now().saturating_duration_since(next);
                if lag <= tolerance {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!(?lag, "event loop lagging; withholding the watchdog ping");
                }
                next = tokio::time::Instant::now() + period;
            }
        }
    }
}
