//! The vault's settings: how many vaults it holds, its PIN attempt policy, its limits.

use std::time::Duration;

use vettid_vault_crypto::KdfParams;

/// PIN attempt policy: the first `free_attempts` failures cost nothing; each later failure
/// doubles a back-off starting at `backoff_base` (capped at `backoff_cap`); at `max_attempts`
/// failures the vault is locked out until a signed `vault.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy {
    /// Failures without back-off.
    pub free_attempts: u32,
    /// Failures that lock the vault out.
    pub max_attempts: u32,
    /// First back-off.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_cap: Duration,
}

impl Default for PinPolicy {
    fn default() -> Self {
        Self {
            free_attempts: 4,
            max_attempts: 10,
            backoff_base: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

impl PinPolicy {
    /// Back-off after `failures` failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures < self.free_attempts.max(1) {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_attempts.max(1)).min(20);
        self.backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_cap)
    }
}

/// Vault settings.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Most vaults held in memory.
    pub max_vaults: usize,
    /// Memory budget for cached vaults (estimated from their stored size).
    pub cache_budget_bytes: usize,
    /// Argon2id derivations at once (each holds `kdf.memory_bytes()`).
    pub argon2_permits: usize,
    /// An unlocked vault locks again after this long without a request.
    pub idle_lock: Duration,
    /// PIN attempt policy.
    pub pin: PinPolicy,
    /// Each storage call's limit.
    pub storage_timeout: Duration,
    /// Argon2id parameters (production: t=3, m=256 MiB, p=4).
    pub kdf: KdfParams,
    /// Most live UTKs per vault (oldest pruned first, G24).
    pub max_utks: usize,
    /// UTKs older than this are pruned.
    pub utk_max_age: Duration,
    /// Most secrets per vault.
    pub max_secrets: usize,
    /// Whether v1 request shapes are served (`--accept-v1-envelopes`): deployed v1 apps need
    /// them, but their PIN envelope has no freshness and their replies are not authenticated.
    pub accept_v1: bool,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            max_vaults: 160,
            cache_budget_bytes: 256 * 1024 * 1024,
            argon2_permits: 2,
            idle_lock: Duration::from_secs(15 * 60),
            pin: PinPolicy::default(),
            storage_timeout: Duration::from_secs(10),
            kdf: KdfParams::PRODUCTION,
            max_utks: 16,
            utk_max_age: Duration::from_secs(30 * 24 * 3600),
            max_secrets: 1000,
            accept_v1: false,
        }
    }
}
