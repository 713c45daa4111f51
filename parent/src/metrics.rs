//! Prometheus metrics (`/metrics`). Label sets are closed enums so cardinality is bounded no
//! matter what subjects arrive.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Subject family of a request.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum SubjectFamily {
    /// `enclave.*` (Lambdas, operators).
    Enclave,
    /// `OwnerSpace.*` (apps).
    OwnerSpace,
    /// `MessageSpace.*` (peers).
    MessageSpace,
    /// `Control.*` (signed commands).
    Control,
    /// Anything else.
    Other,
}

impl SubjectFamily {
    /// Classifies a subject by its first token.
    pub fn of(subject: &str) -> Self {
        match subject.split('.').next() {
            Some("enclave") => Self::Enclave,
            Some("OwnerSpace") => Self::OwnerSpace,
            Some("MessageSpace") => Self::MessageSpace,
            Some("Control") => Self::Control,
            _ => Self::Other,
        }
    }
}

/// How a forwarded request ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// The enclave answered.
    Ok,
    /// No link to the enclave.
    EnclaveUnavailable,
    /// No answer in time.
    EnclaveTimeout,
    /// Enclave at capacity.
    Busy,
    /// Shutting down.
    ShuttingDown,
    /// Anything else.
    Error,
}

/// Labels of `vettid_parent_requests`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Subject family.
    pub family: SubjectFamily,
    /// Outcome.
    pub outcome: Outcome,
}

/// Labels of `vettid_parent_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    /// Subject family.
    pub family: SubjectFamily,
}

/// An object-store operation the enclave asked for.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum StorageOp {
    /// Read an object.
    Get,
    /// Read metadata.
    Head,
    /// Conditional write.
    Put,
    /// Delete.
    Delete,
    /// List a prefix.
    List,
}

/// How an object-store operation ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum StorageOutcome {
    /// Done.
    Ok,
    /// No such key.
    NotFound,
    /// Precondition failed (another writer won).
    Conflict,
    /// Refused: invalid key, prefix or token.
    Invalid,
    /// Refused: object over the size cap.
    TooLarge,
    /// The backend did not answer in time.
    Timeout,
    /// The backend failed.
    Unavailable,
}

/// Labels of `vettid_parent_storage_requests`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    /// Operation.
    pub op: StorageOp,
    /// Outcome.
    pub outcome: StorageOutcome,
}

/// Every metric the parent exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by family and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Latency NATS-in to reply-published, by family.
    pub duration: Family<FamilyLabels, Histogram>,
    /// Requests being handled.
    pub in_flight: Gauge,
    /// 1 while the enclave link is up.
    pub enclave_connected: Gauge,
    /// Enclave link re-establishments.
    pub enclave_reconnects: Counter,
    /// Seconds since the enclave last sent a frame (heartbeats included).
    pub enclave_heartbeat_age: Gauge<f64, AtomicU64>,
    /// Undecodable frames received from the enclave on the current link.
    pub enclave_bad_frames: Gauge,
    /// Requests the enclave refused as busy on the current link.
    pub enclave_busy: Gauge,
    /// 1 while connected to NATS.
    pub nats_connected: Gauge,
    /// NATS reconnections.
    pub nats_reconnects: Counter,
    /// Messages the NATS client dropped because we fell behind (slow consumer).
    pub nats_slow_consumer: Counter,
    /// Publications (replies included) that failed.
    pub publish_errors: Counter,
    /// Object-store calls by operation and outcome.
    pub storage_requests: Family<StorageLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vettid_parent");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<FamilyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
        });
        let m = Self {
            requests,
            duration,
            in_flight: Gauge::default(),
            enclave_connected: Gauge::default(),
            enclave_reconnects: Counter::default(),
            enclave_heartbeat_age: Gauge::default(),
            enclave_bad_frames: Gauge::default(),
            enclave_busy: Gauge::default(),
            nats_connected: Gauge::default(),
            nats_reconnects: Counter::default(),
            nats_slow_consumer: Counter::default(),
            publish_errors: Counter::default(),
            storage_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "NATS requests forwarded, by subject family and outcome",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from NATS delivery to reply published",
            m.duration.clone(),
        );
        registry.register("in_flight", "Requests being handled", m.in_flight.clone());
        registry.register(
            "enclave_connected",
            "1 while the enclave link is up",
            m.enclave_connected.clone(),
        );
        registry.register(
            "enclave_reconnects",
            "Enclave link re-establishments",
            m.enclave_reconnects.clone(),
        );
        registry.register(
            "enclave_heartbeat_age_seconds",
            "Seconds since the enclave last sent a frame",
            m.enclave_heartbeat_age.clone(),
        );
        registry.register(
            "enclave_bad_frames",
            "Undecodable frames from the enclave on the current link",
            m.enclave_bad_frames.clone(),
        );
        registry.register(
            "enclave_busy_rejections",
            "Requests refused by the enclave as busy on the current link",
            m.enclave_busy.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            m.nats_connected.clone(),
        );
        registry.register(
            "nats_reconnects",
            "NATS reconnections",
            m.nats_reconnects.clone(),
        );
        registry.register(
            "nats_slow_consumer",
            "Messages dropped by the NATS client because the parent fell behind",
            m.nats_slow_consumer.clone(),
        );
        registry.register(
            "publish_errors",
            "Publications that failed",
            m.publish_errors.clone(),
        );
        registry.register(
            "storage_requests",
            "Object-store calls made for the enclave, by operation and outcome",
            m.storage_requests.clone(),
        );
        Self { registry, ..m }
    }

    /// Records one object-store call.
    pub fn storage(&self, op: StorageOp, outcome: StorageOutcome) {
        self.storage_requests
            .get_or_create(&StorageLabels { op, outcome })
            .inc();
    }

    /// Records one finished request.
    pub fn observe(&self, family: SubjectFamily, outcome: Outcome, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { family, outcome })
            .inc();
        self.duration
            .get_or_create(&FamilyLabels { family })
            .observe(seconds);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
