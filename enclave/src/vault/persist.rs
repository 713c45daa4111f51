//! Loading and storing vaults: every object checked against the floors (memory, the app's
//! witness, the trusted store's mark: [`super::anchor`]) before it is used, every change
//! written object first, mark second, and acknowledged only after both.

use std::time::Instant;

use vettid_vault_crypto::Dek;

use super::anchor::{self, Anchored, Mark, Verdict};
use super::record::{self, Meta, State, StoredVault};
use super::store::StoreError;
use super::{
    kms_error, record_error, store_error, trusted_error, Loaded, NewVault, Slot, Unlocked, Vaults,
};
use crate::deadline::kms_in_time;
use crate::error::ClientError;
use crate::sealing::{SealContext, Sealer};
use crate::trusted::TrustedError;

/// Where a new vault's first object goes ([`Vaults::enrolment`]).
pub(crate) struct Enrolment {
    /// Its version: above every earlier one of this vault id.
    pub(super) version: u64,
    /// The ETag of a leftover object a tombstone refuses, overwritten.
    pub(super) overwrite: Option<String>,
    /// The tombstone the new mark replaces.
    pub(super) anchor: Option<Anchored>,
}

impl Vaults {
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
        // A mark write commits work already begun (the object is written, or an adoption or a
        // reset is decided), so, like a storage write, it is not cut by the request's deadline,
        // only by the store's own limits: a `deadline_exceeded` answer always means "nothing
        // changed", and a mark that may have moved is `trusted_store_unavailable` (in doubt).
        let key = anchor::key(vault);
        let body = to.encode();
        let swap = trusted.swap(&key, from.map(|a| a.rev), &body);
        let rev = crate::deadline::scope(None, swap)
            .await
            .map_err(|e| match e {
                TrustedError::NoTime => ClientError::TrustedStoreUnavailable,
                e => trusted_error(vault, e),
            })?;
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
}
