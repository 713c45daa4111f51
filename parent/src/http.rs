//! `/health`, `/ready`, `/metrics` for operators and load balancers.
//!
//! `/health` is real liveness (VettID's reported "enclave connected" whenever a connection object
//! existed, defect G12): NATS connected, enclave link up and heard from within the dead-peer
//! window. It answers 503 with the reason when not healthy. `/ready` additionally requires the
//! subscriptions to be active and the parent not draining.
//!
//! Besides liveness, `/health` reports what `vettid health` shows operators: what the enclave's
//! attestation was checked against, the link's last error, the object store's reachability
//! ([`probe`], cached), the KMS tunnel ([`views`]) and the `ENROLLMENT` stream
//! ([`crate::stream`]). Those do not change `healthy`, `/ready` or the
//! status code: restarting the parent cannot fix an S3 outage or a KMS policy, so a load balancer
//! or watchdog acting on `/health` must not see them as the parent's death.

pub mod probe;
pub mod views;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::enclave_link::EnclaveLink;
use crate::metrics::Metrics;
pub use probe::StorageProbe;

/// How long one HTTP connection may stay open; health checks are one request each.
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// What the endpoints report on.
pub struct HttpState {
    /// NATS client, for its connection state.
    pub nats: async_nats::Client,
    /// Enclave link.
    pub link: Arc<EnclaveLink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Start time.
    pub started: Instant,
    /// Set once the subscriptions are active.
    pub subscribed: AtomicBool,
    /// Set when shutdown begins.
    pub draining: AtomicBool,
    /// The enclave counts as dead after this much silence.
    pub dead_after: Duration,
    /// The configured enclave address, for the health report.
    pub enclave_address: String,
    /// This host's enclave id.
    pub enclave_id: String,
    /// What the enclave's attestation is checked against ([`views::attestation_policy`]).
    pub attestation_policy: serde_json::Value,
    /// The object store's reachability.
    pub storage: StorageProbe,
    /// Entries of `[kms] allow`; `None` without a `[kms]` section.
    pub kms_allow_entries: Option<usize>,
    /// The `ENROLLMENT` stream's last check.
    pub enrollment_stream: std::sync::Arc<crate::stream::StreamStatus>,
}

impl HttpState {
    /// The health report and whether it is healthy.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let nats_connected =
            self.nats.connection_state() == async_nats::connection::State::Connected;
        let age = self.link.current().map(|c| c.last_heard());
        let enclave_connected = age.is_some_and(|a| a < self.dead_after);
        self.metrics.nats_connected.set(nats_connected.into());
        if let Some(conn) = self.link.current() {
            self.metrics
                .enclave_heartbeat_age
                .set(conn.last_heard().as_secs_f64());
            self.metrics
                .enclave_bad_frames
                .set(conn.stats().bad_frames_in.load(Ordering::Relaxed) as i64);
            self.metrics
                .enclave_busy
                .set(conn.stats().busy_rejections.load(Ordering::Relaxed) as i64);
        }
        let healthy = nats_connected && enclave_connected;
        let mut reasons = Vec::new();
        if !nats_connected {
            reasons.push("nats not connected".to_string());
        }
        if !enclave_connected {
            reasons.push(match self.link.last_error() {
                Some(e) => format!("enclave not connected: {e}"),
                None => "enclave not connected".into(),
            });
        }
        let body = json!({
            "healthy": healthy,
            "nats_connected": nats_connected,
            "enclave_connected": enclave_connected,
            "enclave_last_heard_ms": age.map(|a| a.as_millis() as u64),
            "enclave_address": self.enclave_address,
            "enclave_id": self.enclave_id,
            "enclave_connects": self.link.connects(),
            "enclave_last_error": self.link.last_error(),
            // Only an enclave that passed the check is ever connected; the last check's
            // details stay visible after the link drops, so this says whether they are current.
            "enclave_attestation_verified": enclave_connected && self.link.checked().is_some(),
            "enclave_attested": self.link.checked().map(|c| json!({
                "module_id": c.module_id,
                "pcr0": c.pcr0,
                "pcr_set": c.pcr_set,
            })),
            "attestation_policy": self.attestation_policy,
            "subscribed": self.subscribed.load(Ordering::Relaxed),
            "draining": self.draining.load(Ordering::Relaxed),
            "in_flight": self.metrics.in_flight.get(),
            "version": crate::VERSION,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "reasons": reasons,
        });
        (healthy, body)
    }

    /// The full `/health` report: [`HttpState::health`] plus `storage` (probed, cached) and
    /// `kms`.
    pub async fn report(&self) -> (bool, serde_json::Value) {
        let (healthy, mut body) = self.health();
        body["storage"] = self.storage.json().await;
        body["kms"] = views::kms(&self.metrics, self.kms_allow_entries);
        body["enrollment_stream"] = self.enrollment_stream.json();
        (healthy, body)
    }

    fn ready(&self) -> bool {
        self.health().0
            && self.subscribed.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = crate::signalled(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(&state, &req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
                });
            }
        }
    }
    conns.shutdown().await;
}

async fn route(state: &HttpState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/health" => {
            let (healthy, body) = state.report().await;
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = status;
            r.headers_mut().insert(
                "content-type",
                "application/json".parse().expect("static header"),
            );
            r
        }
        "/ready" => {
            if state.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" => {
            state.health();
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
            r.headers_mut().insert(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    .parse()
                    .expect("static header"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}
