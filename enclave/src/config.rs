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
}

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
        }
    }
}
