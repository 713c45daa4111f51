//! The parent daemon: the untrusted relay between NATS and the enclave.
//!
//! This crate owns the host side of the system: the NATS connection and subscriptions
//! ([`bridge`]), the link to the enclave with reconnection ([`enclave_link`]), the object store it
//! runs for the enclave ([`storage`]), the enclave's way out to AWS KMS (an allow-listed byte
//! tunnel and the instance-role credentials, [`kms`]), the v1 app transport (correlated answer
//! subjects, [`correlate`]; the `ENROLLMENT` JetStream stream, [`stream`]), and the operator
//! surface (`/health`, `/ready`, `/metrics` in [`http`], Prometheus counters in [`metrics`]).
//!
//! What it must never do: hold or interpret the enclave's secrets. App payloads are forwarded as
//! opaque bytes (the parent reads only an app request's top-level `id`, to name its correlated
//! answer subject) and replies published as the enclave returns them; KMS traffic passes as TLS
//! ciphertext; the parent never sees a plaintext key, PIN or vault record, and it makes no
//! security decision (replay, freshness, authorisation live in the enclave). The only secret it
//! handles is its own AWS credentials, which it lends the enclave and never logs. Its own checks
//! exist only for load shedding and good errors: bounded concurrency with back-pressure, prompt
//! error replies when the enclave is down, an allow-list on tunnel targets, typed configuration
//! errors.

pub mod app;
pub mod attest;
pub mod bridge;
pub mod config;
pub mod correlate;
pub mod enclave_link;
pub mod http;
pub mod kms;
pub mod metrics;
pub mod reply;
pub mod storage;
pub mod stream;

pub use app::{run, RunError};
pub use config::{Config, ConfigError, Overrides};

/// Version reported on `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Resolves once `flag` is true (or its sender is gone). Holds no watch guard across awaits, so
/// futures using it stay `Send`.
pub(crate) async fn signalled(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
