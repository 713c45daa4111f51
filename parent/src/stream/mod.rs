//! The `ENROLLMENT` JetStream stream that deployed VettID clients depend on.
//!
//! v1's parent created it at start-up, capturing `OwnerSpace.*.forApp.>` (the app answers) and
//! `OwnerSpace.*.forVault.>` (the app requests). Clients lean on both halves: VettID's
//! enrollment driver publishes its requests through JetStream (its publish fails without a
//! stream to acknowledge it), and the Android app reads its answer from an ephemeral consumer on
//! this stream, filtered on the request's correlated subject. The parent publishes on core NATS
//! only ([`crate::bridge`]); the stream stores those publishes because they match its subjects.
//!
//! So by default ([`EnrollmentStreamConfig::create`]) the parent checks the stream at start and
//! every [`EnrollmentStreamConfig::check_interval`], creates it when missing, and reports its
//! state on `/health` and `/metrics`. With `create = false` it only reports (`missing`), for an
//! operator who creates the stream himself. The stream is shared by every host; whichever parent
//! finds it missing first creates it, and the others find it there. An existing stream is never
//! changed: its limits are the operator's once it exists.
//!
//! The stream's state never makes the parent unhealthy or unready: request/reply clients and
//! Lambdas do not need it, and restarting the parent cannot enable JetStream on the server.
//!
//! One consequence operators must know (docs/OPERATIONS.md): a stream acknowledges every message
//! it stores that carries a reply subject, so a core NATS *request* on `OwnerSpace.*.forVault.*`
//! gets the stream's PubAck (`{"stream":"ENROLLMENT","seq":N}`) on its inbox first, and the vault's
//! answer after it. That is how v1 behaved; clients that use request/reply there skip the PubAck.

pub mod config;

use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};
use serde_json::{json, Value};
use tokio::sync::watch;

pub use config::{EnrollmentStreamConfig, StreamStorage, STREAM_NAME, STREAM_SUBJECTS};

use crate::metrics::Metrics;

/// What the last check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Not checked yet.
    Unchecked,
    /// The stream exists and captures every app subject.
    Ready {
        /// Messages stored.
        messages: u64,
        /// Bytes stored.
        bytes: u64,
    },
    /// A stream of that name exists but does not capture every app subject; its subjects.
    Misconfigured(Vec<String>),
    /// No stream, and `create = false`: an operator must create it.
    Missing,
    /// JetStream did not answer or refused (not enabled on the server, no permission, NATS
    /// down, creation refused); the reason.
    Unavailable(String),
}

impl StreamState {
    fn name(&self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Ready { .. } => "ready",
            Self::Misconfigured(_) => "misconfigured",
            Self::Missing => "missing",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// The stream's state as `/health` shows it, shared by the checker and the HTTP server.
#[derive(Debug)]
pub struct StreamStatus {
    config: EnrollmentStreamConfig,
    state: Mutex<(StreamState, bool)>,
}

impl StreamStatus {
    /// A status not checked yet.
    pub fn new(config: EnrollmentStreamConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new((StreamState::Unchecked, false)),
        })
    }

    /// The last check's result.
    pub fn state(&self) -> StreamState {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (StreamState, bool)> {
        // A poisoned lock only means a panic elsewhere; the state itself is always whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `enrollment_stream` object of `/health`.
    pub fn json(&self) -> Value {
        let (state, created) = self.lock().clone();
        let mut v = json!({
            "name": STREAM_NAME,
            "state": state.name(),
            "create": self.config.create,
            "created_by_this_parent": created,
        });
        match state {
            StreamState::Ready { messages, bytes } => {
                v["messages"] = messages.into();
                v["bytes"] = bytes.into();
            }
            StreamState::Misconfigured(subjects) => {
                v["subjects"] = subjects.into();
                v["reason"] = format!("does not capture {}", STREAM_SUBJECTS.join(" and ")).into();
            }
            StreamState::Missing => {
                v["reason"] =
                    "no such stream and create = false: create it (docs/OPERATIONS.md)".into();
            }
            StreamState::Unavailable(reason) => v["reason"] = reason.into(),
            StreamState::Unchecked => {}
        }
        v
    }
}

/// Checks (and with `create`, creates) the stream now and every check interval until `stop`.
pub async fn run(
    client: async_nats::Client,
    status: Arc<StreamStatus>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    loop {
        let (state, created) = check(&js, &status.config).await;
        if created {
            metrics.enrollment_stream_created.inc();
            tracing::info!(stream = STREAM_NAME, subjects = ?STREAM_SUBJECTS, "created the enrollment stream");
        }
        metrics
            .enrollment_stream_ready
            .set(matches!(state, StreamState::Ready { .. }).into());
        if let StreamState::Ready { messages, bytes } = state {
            metrics.enrollment_stream_messages.set(clamp(messages));
            metrics.enrollment_stream_bytes.set(clamp(bytes));
        }
        {
            let mut s = status.lock();
            if s.0 != state && !matches!(state, StreamState::Ready { .. }) {
                tracing::warn!(stream = STREAM_NAME, state = ?state, "enrollment stream not ready");
            }
            s.1 |= created;
            s.0 = state;
        }
        tokio::select! {
            _ = crate::signalled(&mut stop) => break,
            _ = tokio::time::sleep(status.config.check_interval) => {}
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One check: the state, and whether this call created the stream.
async fn check(js: &jetstream::Context, cfg: &EnrollmentStreamConfig) -> (StreamState, bool) {
    match js.get_stream(STREAM_NAME).await {
        Ok(s) => (from_info(s.cached_info()), false),
        Err(e) if is_not_found(e.kind()) && cfg.create => {
            match js.create_stream(stream_config(cfg)).await {
                Ok(s) => (from_info(s.cached_info()), true),
                // Another parent created it between our look and our create: look again.
                Err(e) => match js.get_stream(STREAM_NAME).await {
                    Ok(s) => (from_info(s.cached_info()), false),
                    Err(_) => (StreamState::Unavailable(format!("create: {e}")), false),
                },
            }
        }
        Err(e) if is_not_found(e.kind()) => (StreamState::Missing, false),
        Err(e) => (StreamState::Unavailable(describe(&e)), false),
    }
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// A look-up failure in words an operator can act on.
fn describe(e: &jetstream::context::GetStreamError) -> String {
    match e.kind() {
        GetStreamErrorKind::Request => {
            "JetStream did not answer: is the server started with JetStream (-js)?".into()
        }
        GetStreamErrorKind::JetStream(js) => format!("JetStream refused: {js}"),
        _ => e.to_string(),
    }
}

fn from_info(info: &stream::Info) -> StreamState {
    let subjects = &info.config.subjects;
    if STREAM_SUBJECTS
        .iter()
        .all(|want| subjects.iter().any(|have| covers(have, want)))
    {
        StreamState::Ready {
            messages: info.state.messages,
            bytes: info.state.bytes,
        }
    } else {
        StreamState::Misconfigured(subjects.clone())
    }
}

/// Whether stream subject `have` captures every subject that pattern `want` matches.
fn covers(have: &str, want: &str) -> bool {
    let (mut h, mut w) = (have.split('.'), want.split('.'));
    loop {
        match (h.next(), w.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The stream as this parent creates it: limits retention, oldest discarded when full.
fn stream_config(cfg: &EnrollmentStreamConfig) -> stream::Config {
    stream::Config {
        name: STREAM_NAME.into(),
        description: Some("VettID app requests and answers, kept briefly for replay".into()),
        subjects: STREAM_SUBJECTS.map(String::from).to_vec(),
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: cfg.max_age,
        max_bytes: i64::try_from(cfg.max_bytes).unwrap_or(i64::MAX),
        max_messages: -1,
        max_message_size: i32::try_from(cfg.max_msg_bytes).unwrap_or(i32::MAX),
        storage: match cfg.storage {
            StreamStorage::File => stream::StorageType::File,
            StreamStorage::Memory => stream::StorageType::Memory,
        },
        num_replicas: cfg.replicas,
        // Nothing here publishes with a message id; the server's default window.
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_coverage() {
        for (have, want, ok) in [
            ("OwnerSpace.*.forApp.>", "OwnerSpace.*.forApp.>", true),
            ("OwnerSpace.>", "OwnerSpace.*.forVault.>", true),
            (">", "OwnerSpace.*.forApp.>", true),
            ("OwnerSpace.*.>", "OwnerSpace.*.forApp.>", true),
            ("OwnerSpace.u.forApp.>", "OwnerSpace.*.forApp.>", false),
            ("OwnerSpace.*.forApp.*", "OwnerSpace.*.forApp.>", false),
            ("OwnerSpace.*.forApp", "OwnerSpace.*.forApp.>", false),
            ("Other.>", "OwnerSpace.*.forApp.>", false),
        ] {
            assert_eq!(covers(have, want), ok, "{have} ⊇ {want}");
        }
    }

    #[test]
    fn created_stream_has_the_configured_limits() {
        let c = stream_config(&EnrollmentStreamConfig::default());
        assert_eq!(c.name, "ENROLLMENT");
        assert_eq!(c.subjects, STREAM_SUBJECTS.map(String::from).to_vec());
        assert_eq!(c.max_age, std::time::Duration::from_secs(1800));
        assert_eq!(c.discard, stream::DiscardPolicy::Old);
        assert_eq!(c.storage, stream::StorageType::File);
        assert!(!c.no_ack, "the driver's JetStream publish needs the PubAck");
    }

    #[test]
    fn health_view_says_what_to_do() {
        let status = StreamStatus::new(EnrollmentStreamConfig::default());
        assert_eq!(status.json()["state"], "unchecked");
        *status.lock() = (StreamState::Missing, false);
        assert!(status.json()["reason"]
            .as_str()
            .unwrap()
            .contains("create = false"));
        *status.lock() = (
            StreamState::Ready {
                messages: 3,
                bytes: 10,
            },
            true,
        );
        let v = status.json();
        assert_eq!(
            (
                v["state"].as_str(),
                v["messages"].as_u64(),
                v["created_by_this_parent"].as_bool()
            ),
            (Some("ready"), Some(3), Some(true))
        );
    }
}
