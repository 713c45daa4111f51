//! Prometheus metrics (`/metrics`). Label sets are closed enums so cardinality is bounded no
//! matter what subjects arrive.
//!
//! Names: the relay's own metrics are `vettid_parent_*`; the KMS path's are `vettid_kms_*` and
//! `vettid_aws_credentials_*`, named for what they measure rather than for the host, as the
//! enclave-side dashboards expect.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::LabelValueEncoder;

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

/// Writes a closed enum's label value in snake_case (the derive would keep the Rust spelling).
macro_rules! snake_case_label {
    ($ty:ty) => {
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// How a KMS tunnel attempt ended (`vettid_kms_tunnels_total{outcome}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TunnelOutcome {
    /// Connected and answered `ok`.
    Ok,
    /// Target not on the allow-list.
    Denied,
    /// Allowed, but the connect failed or timed out.
    Unreachable,
    /// Refused: `kms.max_tunnels` already open.
    Busy,
    /// Malformed, oversized or missing preamble.
    BadPreamble,
}

impl TunnelOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Unreachable => "unreachable",
            Self::Busy => "busy",
            Self::BadPreamble => "bad_preamble",
        }
    }
}
snake_case_label!(TunnelOutcome);

/// Which way tunnel bytes went (`vettid_kms_tunnel_bytes_total{direction}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TunnelDirection {
    /// Enclave to the target.
    ToKms,
    /// Target to the enclave.
    FromKms,
}

impl TunnelDirection {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToKms => "to_kms",
            Self::FromKms => "from_kms",
        }
    }
}
snake_case_label!(TunnelDirection);

/// Whether a credentials request was answered (`vettid_aws_credentials_served_total{outcome}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CredentialsOutcome {
    /// Credentials sent.
    Ok,
    /// The provider failed or timed out.
    Error,
}

impl CredentialsOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}
snake_case_label!(CredentialsOutcome);

/// Labels of `vettid_kms_tunnels_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TunnelLabels {
    /// Outcome.
    pub outcome: TunnelOutcome,
}

/// Labels of `vettid_kms_tunnel_bytes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// Direction.
    pub direction: TunnelDirection,
}

/// Labels of `vettid_aws_credentials_served_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialsLabels {
    /// Outcome.
    pub outcome: CredentialsOutcome,
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
    /// App requests (`OwnerSpace.*.forVault.*`) without a usable `id`, so without a correlated
    /// answer subject.
    pub uncorrelated_app_requests: Counter,
    /// 1 while the `ENROLLMENT` stream exists and covers the app subjects.
    pub enrollment_stream_ready: Gauge,
    /// Messages in the `ENROLLMENT` stream at the last check.
    pub enrollment_stream_messages: Gauge,
    /// Bytes in the `ENROLLMENT` stream at the last check.
    pub enrollment_stream_bytes: Gauge,
    /// Times this parent created the `ENROLLMENT` stream.
    pub enrollment_stream_created: Counter,
    /// Object-store calls by operation and outcome.
    pub storage_requests: Family<StorageLabels, Counter>,
    /// KMS tunnel attempts by outcome.
    pub kms_tunnels: Family<TunnelLabels, Counter>,
    /// KMS tunnels open now (answered `ok`, not yet closed).
    pub kms_tunnels_active: Gauge,
    /// Bytes relayed through KMS tunnels, by direction (ciphertext; counted as it flows).
    pub kms_tunnel_bytes: Family<DirectionLabels, Counter>,
    /// Credential requests from the enclave by outcome.
    pub aws_credentials_served: Family<CredentialsLabels, Counter>,
    /// Seconds until the last served credentials expire; 0 for long-lived ones. Refreshed on
    /// every render from `aws_credentials_expires_at_ms`.
    pub aws_credentials_expiry: Gauge<f64, AtomicU64>,
    /// Expiry of the last served credentials, Unix ms; 0 when none or long-lived.
    aws_credentials_expires_at_ms: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::with_prefix("vettid");
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
            uncorrelated_app_requests: Counter::default(),
            enrollment_stream_ready: Gauge::default(),
            enrollment_stream_messages: Gauge::default(),
            enrollment_stream_bytes: Gauge::default(),
            enrollment_stream_created: Counter::default(),
            storage_requests: Family::default(),
            kms_tunnels: Family::default(),
            kms_tunnels_active: Gauge::default(),
            kms_tunnel_bytes: Family::default(),
            aws_credentials_served: Family::default(),
            aws_credentials_expiry: Gauge::default(),
            aws_credentials_expires_at_ms: AtomicU64::new(0),
            registry: Registry::default(),
        };
        let registry = root.sub_registry_with_prefix("parent");
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
            "uncorrelated_app_requests",
            "App requests without a usable id, answered on no correlated subject",
            m.uncorrelated_app_requests.clone(),
        );
        registry.register(
            "enrollment_stream_ready",
            "1 while the ENROLLMENT stream exists and covers the app subjects",
            m.enrollment_stream_ready.clone(),
        );
        registry.register(
            "enrollment_stream_messages",
            "Messages in the ENROLLMENT stream at the last check",
            m.enrollment_stream_messages.clone(),
        );
        registry.register(
            "enrollment_stream_bytes",
            "Bytes in the ENROLLMENT stream at the last check",
            m.enrollment_stream_bytes.clone(),
        );
        registry.register(
            "enrollment_stream_created",
            "Times this parent created the ENROLLMENT stream",
            m.enrollment_stream_created.clone(),
        );
        registry.register(
            "storage_requests",
            "Object-store calls made for the enclave, by operation and outcome",
            m.storage_requests.clone(),
        );
        root.register(
            "kms_tunnels",
            "KMS tunnel attempts from the enclave, by outcome",
            m.kms_tunnels.clone(),
        );
        root.register(
            "kms_tunnels_active",
            "KMS tunnels open now",
            m.kms_tunnels_active.clone(),
        );
        root.register(
            "kms_tunnel_bytes",
            "Bytes relayed through KMS tunnels (TLS ciphertext), by direction",
            m.kms_tunnel_bytes.clone(),
        );
        root.register(
            "aws_credentials_served",
            "AWS credential requests from the enclave, by outcome",
            m.aws_credentials_served.clone(),
        );
        root.register(
            "aws_credentials_expiry_seconds",
            "Seconds until the AWS credentials last served to the enclave expire (0: long-lived)",
            m.aws_credentials_expiry.clone(),
        );
        Self {
            registry: root,
            ..m
        }
    }

    /// Records one KMS tunnel attempt.
    pub fn kms_tunnel(&self, outcome: TunnelOutcome) {
        self.kms_tunnels
            .get_or_create(&TunnelLabels { outcome })
            .inc();
    }

    /// The byte counter of one tunnel direction, to add to as bytes flow.
    pub fn kms_tunnel_bytes(&self, direction: TunnelDirection) -> Counter {
        self.kms_tunnel_bytes
            .get_or_create(&DirectionLabels { direction })
            .clone()
    }

    /// Records one credential request; `expires_at_ms` is the served credentials' expiry.
    pub fn aws_credentials(&self, outcome: CredentialsOutcome, expires_at_ms: Option<u64>) {
        self.aws_credentials_served
            .get_or_create(&CredentialsLabels { outcome })
            .inc();
        if outcome == CredentialsOutcome::Ok {
            self.aws_credentials_expires_at_ms
                .store(expires_at_ms.unwrap_or(0), Ordering::Relaxed);
            self.refresh_credentials_expiry();
        }
    }

    fn refresh_credentials_expiry(&self) {
        let at = self.aws_credentials_expires_at_ms.load(Ordering::Relaxed);
        let seconds = if at == 0 {
            0.0
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            at.saturating_sub(now) as f64 / 1000.0
        };
        self.aws_credentials_expiry.set(seconds);
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
        self.refresh_credentials_expiry();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
