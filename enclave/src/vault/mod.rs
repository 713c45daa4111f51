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
pub mod args;
mod ops;
pub mod payload;
pub mod record;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, Semaphore};
use vettid_vault_crypto::{Dek, KdfParams, Material, Pin};

use crate::reply::ClientError;
use crate::sealing::{SealContext, SealError, Sealer};
use crate::trusted::{TrustedError, TrustedStore};
use anchor::{Anchored, Mark, Verdict};
use record::{Meta, RecordError, State, StoredVault};
use store::{StoreError, VaultStore};

pub use ops::{dispatch, VaultAdminImpl};

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

/// A vault in memory.
pub(crate) struct Loaded {
    /// ETag of the stored object this reflects.
    etag: String,
    /// The stored object this reflects.
    stored: StoredVault,
    /// The vault material (from KMS).
    material: Material,
    /// Decrypted meta.
    meta: Meta,
    /// Present while unlocked.
    unlocked: Option<Unlocked>,
    /// The trusted store's mark this object matched (`None` without a trusted store).
    anchor: Option<Anchored>,
}

pub(crate) struct Unlocked {
    dek: Dek,
    state: State,
    last_activity: Instant,
}

/// What enrolment creates.
pub(crate) struct NewVault {
    pub(crate) material: Material,
    pub(crate) material_blob: Vec<u8>,
    pub(crate) meta: Meta,
    pub(crate) dek: Dek,
    pub(crate) state: State,
}

/// Where a new vault's first object goes ([`Vaults::enrolment`]).
pub(crate) struct Enrolment {
    /// Its version: above every earlier one of this vault id.
    version: u64,
    /// The ETag of a leftover object a tombstone refuses, overwritten.
    overwrite: Option<String>,
    /// The tombstone the new mark replaces.
    anchor: Option<Anchored>,
}

/// One vault's slot: its lock guards it.
#[derive(Default)]
pub(crate) struct Slot {
    vault: Option<Loaded>,
    last_used: Option<Instant>,
    /// What a conflict left behind: the material and, if the vault was unlocked, the DEK, so
    /// the reload needs neither KMS nor the PIN again. Used only if the reloaded object still
    /// has the same material blob and a verifier the DEK matches (another host's PIN change
    /// makes it locked again).
    retained: Option<Retained>,
}

impl Slot {
    /// The stored object changed under us: drop the cached copy, keep what lets the next
    /// request reload it without KMS or the PIN.
    pub(crate) fn reload_later(&mut self) {
        if let Some(old) = self.vault.take() {
            self.retained = Some(Retained {
                material_blob: old.stored.material.clone(),
                material: Material::from_bytes(*old.material.expose()),
                unlocked: old
                    .unlocked
                    .map(|u| (Dek::from_bytes(*u.dek.expose()), u.last_activity)),
            });
        }
    }

    /// Forgets the vault entirely (eviction, reset): the next use needs KMS and the PIN.
    pub(crate) fn forget(&mut self) {
        self.vault = None;
        self.retained = None;
    }
}

/// See [`Slot::retained`].
pub(crate) struct Retained {
    material_blob: Vec<u8>,
    material: Material,
    unlocked: Option<(Dek, Instant)>,
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

    /// Vaults in memory, and how many of them are unlocked.
    pub fn counts(&self) -> (usize, usize) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut loaded = 0;
        let mut unlocked = 0;
        for slot in slots.values() {
            if let Ok(s) = slot.try_lock() {
                if let Some(v) = &s.vault {
                    loaded += 1;
                    if v.unlocked.is_some() {
                        unlocked += 1;
                    }
                }
            }
        }
        (loaded, unlocked)
    }

    /// Locks `vault`'s slot (waiting for any request in progress on it).
    pub(crate) async fn slot(&self, vault: &str) -> OwnedMutexGuard<Slot> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(vault.to_owned()).or_default().clone()
        };
        let mut guard = slot.lock_owned().await;
        guard.last_used = Some(Instant::now());
        guard
    }

    /// [`Self::slot`], waiting at most until the request's deadline ([`crate::deadline`]).
    pub(crate) async fn slot_in_time(
        &self,
        vault: &str,
    ) -> Result<OwnedMutexGuard<Slot>, ClientError> {
        crate::deadline::within(self.slot(vault))
            .await
            .ok_or(ClientError::DeadlineExceeded)
    }

    /// Drops idle vaults beyond the count or memory budget, least recently used first. Vaults
    /// busy with a request are skipped. Nothing is lost: every acknowledged change is stored.
    pub(crate) fn evict_over_budget(&self, keep: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Forget empty, unused slots so the map stays bounded.
        slots.retain(|_, s| {
            Arc::strong_count(s) > 1
                || s.try_lock()
                    .map(|g| g.vault.is_some() || g.retained.is_some())
                    .unwrap_or(true)
        });
        let mut idle: Vec<(Instant, String, usize)> = Vec::new();
        let mut count = 0;
        let mut bytes = 0;
        for (name, slot) in slots.iter() {
            let Ok(s) = slot.try_lock() else {
                count += 1;
                continue;
            };
            if let Some(v) = &s.vault {
                let size = estimated_size(v);
                count += 1;
                bytes += size;
                if name != keep {
                    idle.push((s.last_used.unwrap_or_else(Instant::now), name.clone(), size));
                }
            }
        }
        idle.sort();
        for (_, name, size) in idle {
            if count <= self.config.max_vaults && bytes <= self.config.cache_budget_bytes {
                break;
            }
            if let Some(slot) = slots.get(&name) {
                if let Ok(mut s) = slot.try_lock() {
                    s.forget();
                    count -= 1;
                    bytes = bytes.saturating_sub(size);
                    tracing::debug!(vault = %name, "vault evicted");
                }
            }
        }
    }

    /// Refuses `version` if an equal-or-newer object of `vault` was seen... strictly older only:
    /// re-reading the same version is normal.
    fn check_fresh(&self, vault: &str, version: u64) -> Result<(), ClientError> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(vault) {
            Some(&max) if version < max => {
                tracing::warn!(vault, version, seen = max, "stale vault object refused");
                Err(ClientError::StaleVault)
            }
            _ => Ok(()),
        }
    }

    fn record_seen(&self, vault: &str, version: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(vault.to_owned()).or_insert(0);
        *entry = (*entry).max(version);
    }

    /// The highest version of `vault` this enclave has seen (0: none).
    fn seen_version(&self, vault: &str) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vault)
            .copied()
            .unwrap_or(0)
    }

    /// Reads `vault`'s mark; `None` without a trusted store.
    async fn read_mark(&self, vault: &str) -> Result<Option<Option<Anchored>>, ClientError> {
        let Some(trusted) = &self.trusted else {
            return Ok(None);
        };
        let item = trusted
            .get(&anchor::key(vault))
            .await
            .map_err(|e| trusted_error(vault, e))?;
        match item {
            None => Ok(Some(None)),
            Some(item) => {
                let mark = Mark::decode(&item.body).ok_or_else(|| {
                    tracing::error!(vault, "trusted store mark does not parse");
                    ClientError::CorruptVault
                })?;
                Ok(Some(Some(Anchored {
                    rev: item.rev,
                    mark,
                })))
            }
        }
    }

    /// Moves `vault`'s mark from `from` to `to` (compare-and-swap on the revision).
    async fn swap_mark(
        &self,
        vault: &str,
        from: Option<&Anchored>,
        to: Mark,
    ) -> Result<Option<Anchored>, ClientError> {
        let Some(trusted) = &self.trusted else {
            return Ok(None);
        };
        let rev = trusted
            .swap(&anchor::key(vault), from.map(|a| a.rev), &to.encode())
            .await
            .map_err(|e| trusted_error(vault, e))?;
        Ok(Some(Anchored { rev, mark: to }))
    }

    /// Makes sure `slot` holds `vault`, loading it from storage (and M from KMS) if needed.
    pub(crate) async fn load<'s>(
        &self,
        sealer: &dyn Sealer,
        vault: &str,
        slot: &'s mut Slot,
    ) -> Result<&'s mut Loaded, ClientError> {
        // With a trusted store every request reads the mark first (one consistent read): a copy
        // cached here that another host has moved past is dropped, so no host serves an old value
        // after a change or reset elsewhere has been acknowledged.
        let mark = self.read_mark(vault).await?;
        if let (Some(loaded), Some(mark)) = (&slot.vault, &mark) {
            if loaded.anchor.as_ref().map(|a| a.rev) != mark.as_ref().map(|a| a.rev) {
                tracing::debug!(vault, "vault moved on elsewhere; reloading");
                slot.reload_later();
            }
        }
        if slot.vault.is_none() {
            let fetched = self.store.get(vault).await.map_err(store_error)?;
            let stored = match &fetched {
                Some(f) => Some(StoredVault::parse(vault, &f.body).map_err(record_error)?),
                None => None,
            };
            let anchored = match mark {
                None => None,
                Some(mark) => {
                    let served = fetched
                        .as_ref()
                        .zip(stored.as_ref())
                        .map(|(f, s)| (s.version, anchor::digest(&f.body)));
                    match anchor::judge(mark.as_ref().map(|a| &a.mark), served) {
                        Verdict::Accept => mark,
                        Verdict::Adopt(next) => {
                            tracing::info!(vault, version = next.version, "vault object pinned");
                            self.swap_mark(vault, mark.as_ref(), next).await?
                        }
                        Verdict::NotEnrolled => return Err(ClientError::NotEnrolled),
                        Verdict::Stale => {
                            tracing::warn!(
                                vault,
                                served = ?served.map(|s| s.0),
                                pinned = ?mark.as_ref().map(|a| a.mark.version),
                                "vault object is not the pinned one; refused"
                            );
                            return Err(ClientError::StaleVault);
                        }
                    }
                }
            };
            let (Some(fetched), Some(stored)) = (fetched, stored) else {
                return Err(ClientError::NotEnrolled);
            };
            self.check_fresh(vault, stored.version)?;
            let floor = anchor::app_floor();
            if stored.version < floor {
                tracing::warn!(
                    vault,
                    version = stored.version,
                    floor,
                    "below the app's witness"
                );
                return Err(ClientError::StaleVault);
            }
            let retained = slot
                .retained
                .take()
                .filter(|r| r.material_blob == stored.material);
            let (material, kept) = match retained {
                Some(r) => (r.material, r.unlocked),
                None => {
                    let material = kms_in_time(
                        sealer.unseal(&stored.material, &SealContext::vault_material(vault)),
                    )
                    .await?;
                    self.count_kms(&material);
                    (material.map_err(kms_error)?, None)
                }
            };
            let meta = record::open_meta(&material, &stored).map_err(record_error)?;
            // A credential deletion recorded while locked waits for a PIN unlock to apply it.
            let kept = kept.filter(|_| !meta.credential_delete_pending);
            let unlocked = kept.and_then(|(dek, last_activity)| {
                let verifier = vettid_vault_crypto::PinVerifier::from_bytes(&meta.verifier).ok()?;
                if !verifier.matches(&dek) {
                    return None;
                }
                let state = record::open_state(&dek, vault, &meta, &stored.state).ok()?;
                Some(Unlocked {
                    dek,
                    state,
                    last_activity,
                })
            });
            self.record_seen(vault, stored.version);
            slot.vault = Some(Loaded {
                etag: fetched.etag,
                stored,
                material,
                meta,
                unlocked,
                anchor: anchored,
            });
        }
        let loaded = slot.vault.as_mut().ok_or(ClientError::Internal)?;
        // Lock on idle: the DEK does not outlive `idle_lock` without use.
        if let Some(u) = &loaded.unlocked {
            if u.last_activity.elapsed() > self.config.idle_lock {
                loaded.unlocked = None;
            }
        }
        Ok(loaded)
    }

    /// Whether `vault`'s cached copy is older than the stored object (another host wrote it
    /// since); if so the cached copy is dropped, keeping what lets the reload skip KMS and the
    /// PIN. One `HEAD`, only after a request failed on the cached copy.
    pub(crate) async fn refresh_if_stale(&self, vault: &str) -> Result<bool, ClientError> {
        let mut slot = self.slot_in_time(vault).await?;
        let Some(cached) = slot.vault.as_ref().map(|v| v.etag.clone()) else {
            return Ok(false);
        };
        let current = self.store.head(vault).await.map_err(store_error)?;
        let same = current.is_some_and(|c| c.trim_matches('"') == cached.trim_matches('"'));
        if same {
            return Ok(false);
        }
        tracing::info!(vault, "cached vault was stale; reloading");
        slot.reload_later();
        Ok(true)
    }

    /// The stored object's current ETag.
    pub(crate) async fn store_head(&self, vault: &str) -> Result<Option<String>, ClientError> {
        self.store.head(vault).await.map_err(store_error)
    }

    /// The version of `vault`'s object held in memory, if any.
    pub(crate) async fn cached_version(&self, vault: &str) -> Option<u64> {
        let slot = self.slot_in_time(vault).await.ok()?;
        slot.vault.as_ref().map(|v| v.stored.version)
    }

    /// Whether `vault` exists in storage (without KMS).
    pub(crate) async fn exists(&self, vault: &str) -> Result<bool, ClientError> {
        Ok(self.store.head(vault).await.map_err(store_error)?.is_some())
    }

    /// Writes a new version of `loaded` with `meta` and, when given, a new `state` sealed under
    /// `dek`; only on success does the in-memory vault change. On a conflict the cached copy is
    /// dropped so the next request reloads what the other writer stored.
    pub(crate) async fn commit(
        &self,
        vault: &str,
        slot: &mut Slot,
        meta: Meta,
        state: Option<(Dek, State)>,
    ) -> Result<(), ClientError> {
        self.commit_as(vault, slot, meta, state, None).await
    }

    /// Refuses a signed command on `vault` issued no later than the last one applied to it
    /// (anchored vaults: on any host). The caller then commits with [`Self::commit_as`].
    pub(crate) fn check_command(&self, slot: &Slot, issued_at_ms: u64) -> Result<(), ClientError> {
        let applied = slot
            .vault
            .as_ref()
            .and_then(|v| v.anchor.as_ref())
            .map_or(0, |a| a.mark.control_at_ms);
        if issued_at_ms <= applied {
            return Err(ClientError::ControlRejected(
                crate::control::Rejection::Replayed,
            ));
        }
        Ok(())
    }

    /// [`Self::commit`], recording `command_at_ms` (a signed command's `issued_at`) in the mark.
    pub(crate) async fn commit_as(
        &self,
        vault: &str,
        slot: &mut Slot,
        mut meta: Meta,
        state: Option<(Dek, State)>,
        command_at_ms: Option<u64>,
    ) -> Result<(), ClientError> {
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        // Nothing is built on an object older than the app has seen (its envelope opened after
        // the load, so this is the first point the floor is known for a cached vault).
        if loaded.stored.version < anchor::app_floor() {
            tracing::warn!(
                vault,
                version = loaded.stored.version,
                "below the app's witness"
            );
            slot.reload_later();
            return Err(ClientError::StaleVault);
        }
        let version = loaded.stored.version + 1;
        let sealed_state = match &state {
            Some((dek, st)) => {
                meta.state_version += 1;
                record::seal_state(dek, vault, meta.state_version, st).map_err(record_error)?
            }
            None => loaded.stored.state.clone(),
        };
        let stored = StoredVault {
            format: record::FORMAT,
            vault: vault.to_owned(),
            version,
            material: loaded.stored.material.clone(),
            meta: record::seal_meta(&loaded.material, vault, version, &meta)
                .map_err(record_error)?,
            state: sealed_state,
        };
        let bytes = stored.to_bytes().map_err(record_error)?;
        // Never write what the next load would refuse (that would be data loss after a
        // restart): a growing state must leave room for the meta-only writes after it.
        let limit = if state.is_some() {
            record::MAX_COMMIT_LEN
        } else {
            record::MAX_OBJECT_LEN
        };
        if bytes.len() > limit {
            tracing::warn!(
                vault,
                len = bytes.len(),
                limit,
                "vault full; change refused"
            );
            return Err(ClientError::VaultFull);
        }
        let digest = anchor::digest(&bytes);
        let control_at = command_at_ms
            .unwrap_or_else(|| loaded.anchor.as_ref().map_or(0, |a| a.mark.control_at_ms));
        let from = loaded.anchor.clone();
        match self.store.put(vault, bytes, Some(&loaded.etag)).await {
            Ok(etag) => {
                self.record_seen(vault, version);
                // Not acknowledged, and the in-memory vault not changed, until the mark moved:
                // on any failure the next load decides (adopts this object or keeps the old).
                let anchored = match self
                    .swap_mark(
                        vault,
                        from.as_ref(),
                        Mark::live(version, digest, control_at),
                    )
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        slot.reload_later();
                        return Err(e);
                    }
                };
                let loaded = slot.vault.as_mut().ok_or(ClientError::Internal)?;
                loaded.etag = etag;
                loaded.stored = stored;
                loaded.meta = meta;
                loaded.anchor = anchored;
                if let Some((dek, st)) = state {
                    loaded.unlocked = Some(Unlocked {
                        dek,
                        state: st,
                        last_activity: Instant::now(),
                    });
                }
                Ok(())
            }
            Err(StoreError::Conflict) => {
                tracing::warn!(
                    vault,
                    "vault changed on another host; reloading on next use"
                );
                slot.reload_later();
                Err(ClientError::StorageConflict)
            }
            Err(StoreError::Unavailable) => Err(ClientError::StorageUnavailable),
            Err(StoreError::NoTime) => Err(ClientError::DeadlineExceeded),
            Err(StoreError::Uncertain) => {
                // The write may still land: reload before the next change, so the cached copy
                // never builds on a version that might not be the stored one.
                tracing::warn!(
                    vault,
                    "storage did not answer in time; reloading on next use"
                );
                slot.reload_later();
                Err(ClientError::StorageTimeout)
            }
        }
    }

    /// Whether `vault` may be enrolled, and what its first object builds on: refused as
    /// `already_enrolled` while a vault is stored or (anchored) pinned, even if the host hides
    /// its object; after a reset, the new vault's versions continue above the tombstone.
    pub(crate) async fn enrolment(&self, vault: &str) -> Result<Enrolment, ClientError> {
        let mark = self.read_mark(vault).await?;
        let head = self.store.head(vault).await.map_err(store_error)?;
        let seen = self.seen_version(vault);
        match mark {
            Some(Some(a)) if a.mark.reset => Ok(Enrolment {
                version: a.mark.version.max(seen) + 1,
                // An object the reset could not delete: the tombstone already refuses it.
                overwrite: head,
                anchor: Some(a),
            }),
            Some(Some(_)) => Err(ClientError::AlreadyEnrolled),
            _ if head.is_some() => Err(ClientError::AlreadyEnrolled),
            _ => Ok(Enrolment {
                version: seen + 1,
                overwrite: None,
                anchor: None,
            }),
        }
    }

    /// Writes a brand-new vault (create-only) where [`Self::enrolment`] said.
    pub(crate) async fn create(
        &self,
        vault: &str,
        slot: &mut Slot,
        new: NewVault,
        at: Enrolment,
    ) -> Result<(), ClientError> {
        let NewVault {
            material,
            material_blob,
            mut meta,
            dek,
            state,
        } = new;
        let version = at.version;
        meta.state_version = 1;
        let stored = StoredVault {
            format: record::FORMAT,
            vault: vault.to_owned(),
            version,
            material: material_blob,
            meta: record::seal_meta(&material, vault, version, &meta).map_err(record_error)?,
            state: record::seal_state(&dek, vault, 1, &state).map_err(record_error)?,
        };
        let bytes = stored.to_bytes().map_err(record_error)?;
        if bytes.len() > record::MAX_COMMIT_LEN {
            return Err(ClientError::VaultFull);
        }
        let digest = anchor::digest(&bytes);
        let control_at = at.anchor.as_ref().map_or(0, |a| a.mark.control_at_ms);
        match self.store.put(vault, bytes, at.overwrite.as_deref()).await {
            Ok(etag) => {
                self.record_seen(vault, version);
                let anchored = match self
                    .swap_mark(
                        vault,
                        at.anchor.as_ref(),
                        Mark::live(version, digest, control_at),
                    )
                    .await
                {
                    Ok(a) => a,
                    // Another enclave pinned a vault first.
                    Err(ClientError::StorageConflict) => return Err(ClientError::AlreadyEnrolled),
                    Err(e) => return Err(e),
                };
                slot.vault = Some(Loaded {
                    etag,
                    stored,
                    material,
                    meta,
                    unlocked: Some(Unlocked {
                        dek,
                        state,
                        last_activity: Instant::now(),
                    }),
                    anchor: anchored,
                });
                Ok(())
            }
            Err(StoreError::Conflict) => Err(ClientError::AlreadyEnrolled),
            Err(StoreError::Unavailable) => Err(ClientError::StorageUnavailable),
            Err(StoreError::Uncertain) => Err(ClientError::StorageTimeout),
            Err(StoreError::NoTime) => Err(ClientError::DeadlineExceeded),
        }
    }

    /// Resets `vault` by a signed command issued at `issued_at_ms`: a tombstone in the trusted
    /// store first (refused if a command as new was already applied: a replay on another host),
    /// then the object is deleted from storage and memory. Without a trusted store only the
    /// object goes; the versions seen stay, so a re-enrolment here continues above them.
    pub(crate) async fn delete(
        &self,
        vault: &str,
        slot: &mut Slot,
        issued_at_ms: u64,
    ) -> Result<bool, ClientError> {
        let Some(mark) = self.read_mark(vault).await? else {
            let existed = self.store.delete(vault).await.map_err(store_error)?;
            slot.forget();
            return Ok(existed);
        };
        let applied = mark.as_ref().map_or(0, |a| a.mark.control_at_ms);
        if issued_at_ms <= applied {
            tracing::warn!(vault, issued_at_ms, applied, "replayed reset refused");
            return Err(ClientError::ControlRejected(
                crate::control::Rejection::Replayed,
            ));
        }
        let stored_version = match self.store.get(vault).await.map_err(store_error)? {
            Some(f) => StoredVault::parse(vault, &f.body).map_or(0, |s| s.version),
            None => 0,
        };
        let live = mark.as_ref().is_some_and(|a| !a.mark.reset);
        let version = mark
            .as_ref()
            .map_or(0, |a| a.mark.version)
            .max(stored_version)
            .max(self.seen_version(vault));
        let tombstone = Mark {
            version,
            digest: Vec::new(),
            reset: true,
            control_at_ms: issued_at_ms,
        };
        self.swap_mark(vault, mark.as_ref(), tombstone).await?;
        slot.forget();
        self.record_seen(vault, version);
        // The tombstone already refuses the object; deleting it is tidiness.
        let deleted = match self.store.delete(vault).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(vault, error = ?e, "reset: object not deleted (tombstoned)");
                false
            }
        };
        Ok(live || deleted)
    }

    /// Argon2id on the blocking pool under the memory semaphore.
    pub(crate) async fn derive_dek(
        &self,
        pin: Pin,
        material: &Material,
        vault: &str,
    ) -> Result<Dek, ClientError> {
        let permit = self.argon2_permit().await?;
        self.derive_dek_with(permit, pin, material, vault).await
    }

    /// Waits for one of the Argon2 memory permits.
    pub(crate) async fn argon2_permit(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ClientError> {
        crate::deadline::within(self.argon2.clone().acquire_owned())
            .await
            .ok_or(ClientError::DeadlineExceeded)?
            .map_err(|_| ClientError::Internal)
    }

    /// Argon2id under an already acquired permit (so a caller can hold the permit before it
    /// commits to an attempt).
    pub(crate) async fn derive_dek_with(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        pin: Pin,
        material: &Material,
        vault: &str,
    ) -> Result<Dek, ClientError> {
        let material = Material::from_bytes(*material.expose());
        let vault = vault.to_owned();
        let params = self.config.kdf;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            vettid_vault_crypto::derive_dek(&pin, &material, &vault, &params)
        })
        .await
        .map_err(|_| ClientError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "DEK derivation failed");
            ClientError::Internal
        })
    }
}

/// Stored size plus a fixed overhead for the decrypted copies.
fn estimated_size(v: &Loaded) -> usize {
    v.stored.meta.len() + v.stored.state.len() * 2 + v.stored.material.len() + 4096
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A KMS call bounded by the request's deadline: not started when no time is left
/// (`deadline_exceeded`); `KMSUnavailable` when KMS does not answer before it.
pub(crate) async fn kms_in_time<T>(
    call: impl std::future::Future<Output = Result<T, SealError>>,
) -> Result<Result<T, SealError>, ClientError> {
    crate::deadline::limit(std::time::Duration::MAX).map_err(|_| ClientError::DeadlineExceeded)?;
    Ok(crate::deadline::within(call)
        .await
        .unwrap_or(Err(SealError::Unavailable)))
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
