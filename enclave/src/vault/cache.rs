//! Vaults in memory: one slot per vault behind its own lock, what a loaded vault holds, and
//! eviction under the count and memory budget.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;
use vettid_vault_crypto::{Dek, Material};

use super::anchor::Anchored;
use super::record::{Meta, State, StoredVault};
use super::Vaults;
use crate::error::ClientError;

/// A vault in memory.
pub(crate) struct Loaded {
    /// ETag of the stored object this reflects.
    pub(super) etag: String,
    /// The stored object this reflects.
    pub(super) stored: StoredVault,
    /// The vault material (from KMS).
    pub(super) material: Material,
    /// Decrypted meta.
    pub(super) meta: Meta,
    /// Present while unlocked.
    pub(super) unlocked: Option<Unlocked>,
    /// The trusted store's mark this object matched (`None` without a trusted store).
    pub(super) anchor: Option<Anchored>,
}

pub(crate) struct Unlocked {
    pub(super) dek: Dek,
    pub(super) state: State,
    pub(super) last_activity: Instant,
}

/// What enrolment creates.
pub(crate) struct NewVault {
    pub(crate) material: Material,
    pub(crate) material_blob: Vec<u8>,
    pub(crate) meta: Meta,
    pub(crate) dek: Dek,
    pub(crate) state: State,
}

/// One vault's slot: its lock guards it.
#[derive(Default)]
pub(crate) struct Slot {
    pub(super) vault: Option<Loaded>,
    pub(super) last_used: Option<Instant>,
    /// What a conflict left behind: the material and, if the vault was unlocked, the DEK, so
    /// the reload needs neither KMS nor the PIN again. Used only if the reloaded object still
    /// has the same material blob and a verifier the DEK matches (another host's PIN change
    /// makes it locked again).
    pub(super) retained: Option<Retained>,
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
    pub(super) material_blob: Vec<u8>,
    pub(super) material: Material,
    pub(super) unlocked: Option<(Dek, Instant)>,
}

impl Vaults {
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
}

/// Stored size plus a fixed overhead for the decrypted copies.
fn estimated_size(v: &Loaded) -> usize {
    v.stored.meta.len() + v.stored.state.len() * 2 + v.stored.material.len() + 4096
}
