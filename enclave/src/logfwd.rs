//! Enclave log events, forwarded to the parent as structured, allow-listed fields.
//!
//! The enclave has no console in production; its logs reach operators only through the parent,
//! which writes them to journald under its own unit with `enclave=true`. The host is untrusted, so
//! what crosses is restricted: INFO and above from our own crates, the event's message (a static
//! string in our code) and only the fields named in [`ALLOWED_FIELDS`]. Fields such as `error`,
//! which may carry upstream or crypto error text, never leave (VettID v1 forwarded raw stderr, G29).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use vettid_protocol::{LogEvent, LogLevel};

/// Field names that may leave the enclave. Values are identifiers, counts and durations: a vault's
/// owner GUID and a KMS key id or ARN are identifiers the host already sees in subjects, storage
/// keys and its own configuration. Never a PIN, a key, plaintext or an upstream error text, so a
/// name is added here only after checking every event that uses it.
pub const ALLOWED_FIELDS: &[&str] = &[
    "peer",
    "software",
    "reason",
    "listen",
    "version",
    "module_id",
    "mock_nsm",
    "code",
    "left",
    "connections",
    "grace",
    "subject",
    "command",
    "command_id",
    "status",
    // KMS client (enclave/src/kms): the operation, the key it used, how long it took, and where
    // the client and its tunnel point (from the measured command line).
    "operation",
    "key_id",
    "elapsed_ms",
    "endpoint",
    "forward",
    "tunnel",
    // Vault (enclave/src/vault): which vault, failed PIN attempts so far, whether a reset found a
    // vault, the newest version seen when a stale object is refused, a wrong storage reply type.
    "vault",
    "failures",
    "existed",
    "seen",
    "response",
];

/// Events waiting to be sent; beyond this they are dropped and counted (logging never blocks).
pub const FORWARD_QUEUE: usize = 1024;

/// Longest message or field value forwarded.
pub const MAX_TEXT: usize = 512;

/// A `tracing` layer that queues allow-listed events for the parent.
pub struct ForwardLayer {
    tx: mpsc::Sender<LogEvent>,
    dropped: Arc<AtomicU64>,
}

impl ForwardLayer {
    /// The layer and the receiving end the server drains.
    pub fn new() -> (Self, mpsc::Receiver<LogEvent>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                dropped: dropped.clone(),
            },
            rx,
            dropped,
        )
    }
}

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // More verbose levels compare greater in tracing.
        if *meta.level() > Level::INFO || !meta.target().starts_with("vettid") {
            return;
        }
        let mut v = Collect::default();
        event.record(&mut v);
        let level = match *meta.level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            _ => LogLevel::Info,
        };
        let ev = LogEvent {
            level,
            target: meta.target().to_owned(),
            message: v.message,
            fields: v.fields,
        };
        if self.tx.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, String)>,
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Collect {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = bounded(value);
        } else if ALLOWED_FIELDS.contains(&field.name()) {
            self.fields.push((field.name().to_owned(), bounded(value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn only_allow_listed_fields_at_info_and_above_leave() {
        let (layer, mut rx, _) = ForwardLayer::new();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "vettid_enclave::server", peer = "unix://x", error = "secret detail", "link up");
            tracing::debug!(target: "vettid_enclave::server", "too verbose");
            tracing::warn!(target: "other_crate", "not ours");
            tracing::error!(target: "vettid_enclave::x", code = "busy", "refused");
        });
        let first = rx.try_recv().unwrap();
        assert_eq!(first.message, "link up");
        assert_eq!(
            first.fields,
            vec![("peer".to_string(), "unix://x".to_string())]
        );
        let second = rx.try_recv().unwrap();
        assert_eq!(
            (second.level, second.message.as_str()),
            (LogLevel::Error, "refused")
        );
        assert!(
            rx.try_recv().is_err(),
            "debug and foreign events stay inside"
        );
    }

    fn field<'a>(ev: &'a LogEvent, name: &str) -> Option<&'a str> {
        ev.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn kms_and_vault_events_keep_their_identifiers_and_counts_but_no_secrets() {
        let (layer, mut rx, _) = ForwardLayer::new();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // The shapes enclave/src/kms and enclave/src/vault log at INFO and above.
            tracing::error!(
                target: "vettid_enclave::kms",
                code = "KMSKeyDisabled",
                operation = "Decrypt",
                key_id = %"vettid-dev-key",
                elapsed_ms = 12u64,
                error = "DisabledException: arn:aws:kms:… is disabled",
                "KMS call failed"
            );
            tracing::warn!(
                target: "vettid_enclave::vault::ops",
                vault = "0b6e3c1a-guid",
                failures = 3u32,
                pin = "1234",
                "wrong PIN"
            );
            tracing::warn!(
                target: "vettid_enclave::vault::ops",
                vault = %"0b6e3c1a-guid",
                existed = true,
                "vault reset by signed command"
            );
            tracing::warn!(
                target: "vettid_enclave::vault",
                vault = "0b6e3c1a-guid",
                version = 4u64,
                seen = 7u64,
                "stale vault object refused"
            );
            tracing::info!(
                target: "vettid_enclave::kms",
                endpoint = %"kms.vettid.test:4443",
                forward = %"127.0.0.1:40000",
                tunnel = %"unix:///x/kms-tunnel.sock",
                key_id = %"vettid-dev-key",
                "KMS client ready"
            );
        });
        let kms = rx.try_recv().unwrap();
        assert_eq!(kms.message, "KMS call failed");
        assert_eq!(field(&kms, "code"), Some("KMSKeyDisabled"));
        assert_eq!(field(&kms, "operation"), Some("Decrypt"));
        assert_eq!(field(&kms, "key_id"), Some("vettid-dev-key"));
        assert_eq!(field(&kms, "elapsed_ms"), Some("12"));
        assert_eq!(field(&kms, "error"), None, "upstream text stays inside");

        let pin = rx.try_recv().unwrap();
        assert_eq!(
            pin.fields,
            vec![
                ("vault".to_string(), "0b6e3c1a-guid".to_string()),
                ("failures".to_string(), "3".to_string()),
            ],
            "a PIN-named field never leaves"
        );
        let reset = rx.try_recv().unwrap();
        assert_eq!(field(&reset, "existed"), Some("true"));
        let stale = rx.try_recv().unwrap();
        assert_eq!(
            (field(&stale, "version"), field(&stale, "seen")),
            (Some("4"), Some("7"))
        );
        let ready = rx.try_recv().unwrap();
        assert_eq!(ready.fields.len(), 4, "{:?}", ready.fields);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn secret_looking_field_names_are_not_allow_listed() {
        for name in [
            "error",
            "pin",
            "key",
            "dek",
            "material",
            "plaintext",
            "password_hash",
        ] {
            assert!(!ALLOWED_FIELDS.contains(&name), "{name}");
        }
    }
}
