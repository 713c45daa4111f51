//! The vault: one per `owner_space` GUID, held in memory under a budget, persisted through the
//! parent before any mutating request is answered (RPO 0).
//!
//! Lifecycle per vault (docs/VAULT.md has the diagram):
//!
//! ```text
//! absent ──pin.setup──▶ unlocked ──idle / evict / restart──▶ locked ──pin.unlock──▶ unlocked
//!    ▲                                                         │
//!    └──────────────── signed Control vault.reset ─────────────┘   (lockout after N failures)
//! ```
//!
//! - **absent**: no stored object. Only `pin.setup` is accepted; it creates the object with a
//!   create-only write, so enrolment happens once (G5) even with two hosts racing.
//! - **locked**: the enclave may hold M (from KMS) and `meta`, never the DEK. A PIN attempt is
//!   counted and persisted *before* the PIN is evaluated, so killing the enclave mid-attempt never
//!   yields a free guess.
//! - **unlocked**: the DEK and the decrypted state are in memory until the idle timeout.
//!
//! Concurrency: each vault has its own async mutex, so requests for one user run one at a time
//! (UTK single use and the attempt counter need that) while different users run in parallel.
//! Argon2id (256 MiB each) runs on the blocking pool under a semaphore, so concurrent unlocks
//! cannot exhaust enclave memory. Eviction drops only idle vaults; nothing needs persisting first
//! because nothing is ever acknowledged before it is stored.

mod anchor;
mod cache;
mod config;
pub mod fields;
pub mod flags;
mod kdf;
mod ops;
pub mod payload;
mod persist;
pub mod record;
pub mod request;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, Semaphore};

use crate::error::ClientError;
use crate::sealing::SealError;
use crate::trusted::{TrustedError, TrustedStore};
use record::RecordError;
use store::{StoreError, VaultStore};

pub(crate) use cache::{Loaded, NewVault, Slot, Unlocked};
pub use config::{PinPolicy, VaultConfig};
pub use ops::{dispatch, VaultAdminImpl};
pub use request::VaultOp;

/// What vault operations use of the enclave: a narrow handle, so the vault sees the attestation
/// keys and the sealer it needs and nothing else of the enclave's state.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Every vault.
    pub vaults: &'a Vaults,
    /// Seals and unseals vault material (KMS); `None` until configured.
    pub sealer: Option<&'a dyn crate::sealing::Sealer>,
    /// Attestation keys minted on this host.
    pub keys: &'a crate::keys::KeyStore,
    /// The fleet's shared attestation keys and unlocked sessions (with a trusted store).
    pub fleet: Option<&'a crate::fleet::FleetKeys>,
}

/// Every vault this enclave holds, and what they share.
pub struct Vaults {
    config: VaultConfig,
    store: VaultStore,
    slots: Mutex<HashMap<String, Arc<AsyncMutex<Slot>>>>,
    /// Highest stored version seen per vault (kept after eviction and reset): older objects are
    /// replays. The only guard without a trusted store; a floor beside it with one.
    seen: Mutex<HashMap<String, u64>>,
    /// The rollback anchor ([`anchor`]); `None` runs single-host, guarded by `seen` alone.
    trusted: Option<Arc<TrustedStore>>,
    argon2: Arc<Semaphore>,
    /// KMS outcomes by stable code (`ok`, `KMSAccessDenied`, …), for health.
    kms_outcomes: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Vaults {
    /// Vaults stored through `store`.
    pub fn new(config: VaultConfig, store: VaultStore) -> Self {
        Self {
            argon2: Arc::new(Semaphore::new(config.argon2_permits.max(1))),
            config,
            store,
            slots: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            trusted: None,
            kms_outcomes: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Anchors every vault in `trusted` ([`anchor`]): objects not pinned there are refused, on
    /// any host and after any restart, and no change is acknowledged before its mark moved.
    pub fn with_trusted(mut self, trusted: Option<Arc<TrustedStore>>) -> Self {
        self.trusted = trusted;
        self
    }

    /// Whether vaults are anchored in a trusted store.
    pub fn is_anchored(&self) -> bool {
        self.trusted.is_some()
    }

    /// Counts one KMS call's outcome.
    pub(crate) fn count_kms<T>(&self, result: &Result<T, SealError>) {
        let code = match result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        *self
            .kms_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_insert(0) += 1;
    }

    /// KMS outcomes since start, by code.
    pub fn kms_outcomes(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.kms_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Settings.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }
}

fn store_error(e: StoreError) -> ClientError {
    match e {
        StoreError::Conflict => ClientError::StorageConflict,
        StoreError::Unavailable => ClientError::StorageUnavailable,
        StoreError::Uncertain => ClientError::StorageTimeout,
        StoreError::NoTime => ClientError::DeadlineExceeded,
    }
}

fn record_error(e: RecordError) -> ClientError {
    match e {
        RecordError::Stale => ClientError::StaleVault,
        RecordError::Malformed | RecordError::Tampered => {
            tracing::error!(error = %e, "stored vault refused");
            ClientError::CorruptVault
        }
        RecordError::Internal => ClientError::Internal,
    }
}

fn trusted_error(vault: &str, e: TrustedError) -> ClientError {
    match e {
        // Someone else moved the mark first: like a storage conflict, nothing of ours counted.
        TrustedError::Conflict => ClientError::StorageConflict,
        TrustedError::NoTime => ClientError::DeadlineExceeded,
        TrustedError::Malformed => {
            tracing::error!(vault, code = e.code(), "trusted store item refused");
            ClientError::CorruptVault
        }
        e => {
            tracing::warn!(vault, code = e.code(), "trusted store call failed");
            ClientError::TrustedStoreUnavailable
        }
    }
}

fn kms_error(e: SealError) -> ClientError {
    tracing::error!(code = e.code(), "KMS unseal failed");
    ClientError::Kms(e)
}

#[cfg(test)]
mod tests;
