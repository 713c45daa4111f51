//! Enclave settings. The enclave has no config file: its image is measured, so everything that
//! matters is either compiled in or passed on the command line recorded in the EIF.

use std::time::Duration;

use vettid_link::Address;

/// Validated settings for [`crate::server::serve`].
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// Where to accept the parent's connection (`vsock://any:5000` in production).
    pub listen: Address,
    /// Requests served at once per connection; beyond this the parent is answered `Busy`.
    /// The parent bounds its own in-flight requests lower, so `Busy` means a misbehaving host.
    pub max_concurrent_requests: usize,
    /// Largest frame accepted from the parent.
    pub max_frame_len: usize,
    /// How long an attestation key is kept for the vault to use (VettID: 300 s).
    pub attestation_key_ttl: Duration,
    /// Most attestation keys held at once, so a flood of attestation requests cannot grow memory
    /// without bound. At the cap, expired keys are dropped first, then the request is refused.
    pub max_attestation_keys: usize,
    /// How long in-flight requests may run after SIGTERM.
    pub drain_grace: Duration,
    /// Link connections served at once; one more is refused at accept. The parent holds one, and
    /// opens its next while the enclave may not yet have declared the old one dead (up to the
    /// link's `dead_after`); the supervisor's liveness probe (`vettid supervise-enclave`) holds
    /// one more and may overlap its own reconnect the same way: 4. Anything else connecting is a
    /// host opening links to use up enclave memory (each holds buffers up to the frame cap).
    pub max_connections: usize,
    /// Vault operations running at once across all connections. Each runs in its own task that
    /// outlives its request when the parent stops waiting (so a counted PIN attempt is still
    /// evaluated), so the link's per-connection request bound does not bound them: a host can keep
    /// sending requests whose deadline passes at once. Past this, a vault request is answered
    /// `busy` without starting. 512 is twice the honest parent's own in-flight bound
    /// (`limits.max_in_flight`, 256), and keeps what waiting tasks hold (each its parsed
    /// request, under 2 MiB) under 1 GiB.
    pub max_vault_tasks: usize,
}

/// Default for [`EnclaveConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// Default for [`EnclaveConfig::max_vault_tasks`].
pub const DEFAULT_MAX_VAULT_TASKS: usize = 512;

impl EnclaveConfig {
    /// Defaults for `listen`.
    pub fn new(listen: Address) -> Self {
        Self {
            listen,
            max_concurrent_requests: 4096,
            max_frame_len: vettid_protocol::DEFAULT_MAX_FRAME_LEN,
            attestation_key_ttl: Duration::from_secs(300),
            max_attestation_keys: 100_000,
            drain_grace: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_vault_tasks: DEFAULT_MAX_VAULT_TASKS,
        }
    }
}
