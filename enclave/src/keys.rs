//! Short-lived X25519 keys whose public halves were put in attestation documents.
//!
//! An app that verified a document encrypts its PIN to the document's `public_key`; the vault later
//! takes the private half from here to decrypt it. Keys are single use ([`KeyStore::take`] removes
//! them), scoped to the owner space that asked (a key minted for one user can never open another
//! user's payload), and expire after the TTL (VettID: 300 s). Unlike VettID v1, a newer attestation
//! does not replace an older one for the same user (defect G31): each document's key stands alone.
//!
//! Who can flood this store: anyone who can publish `OwnerSpace.*.forVault.attestation`, the host
//! first. Three bounds keep a flood from costing other users anything (hole 5 of the host-proof
//! review): at most [`KeyStore::per_owner`] live keys per owner (a new one evicts that owner's
//! oldest), a global cap (then `busy`), and no cryptography under the store's lock — the v1 path,
//! which must try the owner's keys because v1 apps do not name the key they used, moves the
//! owner's keys out of the map, tries them unlocked, and puts back the ones that did not open. v2
//! apps name the key (its public half), so [`KeyStore::take`] is one map lookup.
//!
//! The Lambda path (`enclave.attestation.request`) gets a document with a fresh public key too, but
//! nothing in this enclave ever decrypts to it, so its private half is not kept at all.
//!
//! aws-lc zeroises private key material when the key object is freed, so dropping an entry is
//! enough to erase it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{PrivateKey, X25519};

/// An X25519 public key (32 bytes).
pub type PublicKey = [u8; 32];

/// Live keys one owner may hold at once; an app attests once per enrolment attempt, so a few
/// cover retries. Further attestations for the same owner evict its oldest key.
pub const DEFAULT_PER_OWNER: usize = 4;

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The store is at its cap with no expired key to drop.
    #[error("too many live attestation keys")]
    Full,
    /// The crypto library failed to generate a key.
    #[error("key generation failed")]
    Generate,
}

/// Why [`KeyStore::take_opening`] found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// The owner has no live key (never attested, or the key expired or was used).
    NoKey,
    /// The owner has live keys, but none opened the payload.
    NoneOpened,
}

struct Entry {
    public: PublicKey,
    key: PrivateKey,
    expires: Instant,
}

/// The keys by owner, oldest first: every operation touches one owner's few entries.
#[derive(Default)]
struct Entries {
    by_owner: HashMap<String, VecDeque<Entry>>,
    len: usize,
}

impl Entries {
    fn drop_expired(&mut self, now: Instant) {
        let mut removed = 0;
        self.by_owner.retain(|_, keys| {
            let before = keys.len();
            keys.retain(|e| e.expires > now);
            removed += before - keys.len();
            !keys.is_empty()
        });
        self.len -= removed;
    }

    /// Removes and returns all of `owner`'s live keys (expired ones are dropped).
    fn take_owner(&mut self, owner: &str, now: Instant) -> Vec<Entry> {
        let Some(keys) = self.by_owner.remove(owner) else {
            return Vec::new();
        };
        self.len -= keys.len();
        keys.into_iter().filter(|e| e.expires > now).collect()
    }

    /// Puts `keys` back for `owner`, oldest first, within `per_owner`.
    fn restore(&mut self, owner: &str, keys: Vec<Entry>, per_owner: usize) {
        if keys.is_empty() {
            return;
        }
        let list = self.by_owner.entry(owner.to_owned()).or_default();
        for e in keys {
            list.push_back(e);
            self.len += 1;
        }
        list.make_contiguous().sort_by_key(|e| e.expires);
        while list.len() > per_owner {
            list.pop_front();
            self.len -= 1;
        }
    }
}

/// Bounded store of attestation private keys.
pub struct KeyStore {
    ttl: Duration,
    cap: usize,
    per_owner: usize,
    entries: Mutex<Entries>,
}

impl KeyStore {
    /// A store keeping keys for `ttl`, at most `cap` at once and [`DEFAULT_PER_OWNER`] per owner.
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self::with_per_owner(ttl, cap, DEFAULT_PER_OWNER)
    }

    /// A store with an explicit per-owner limit.
    pub fn with_per_owner(ttl: Duration, cap: usize, per_owner: usize) -> Self {
        Self {
            ttl,
            cap: cap.max(1),
            per_owner: per_owner.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Live keys one owner may hold.
    pub fn per_owner(&self) -> usize {
        self.per_owner
    }

    /// Generates a fresh key for `owner` and returns its public half. At the per-owner limit the
    /// owner's oldest key is dropped (a flood of one GUID costs no other user anything).
    ///
    /// # Errors
    /// [`KeyError::Full`] at the global cap, [`KeyError::Generate`] if aws-lc fails.
    pub fn generate(&self, owner: &str) -> Result<PublicKey, KeyError> {
        let (key, public) = fresh_key()?;
        self.insert(owner, key, public)?;
        Ok(public)
    }

    /// Keeps `key` (whose public half is `public`) for `owner`, as [`Self::generate`] does.
    ///
    /// # Errors
    /// [`KeyError::Full`] at the global cap.
    pub fn insert(&self, owner: &str, key: PrivateKey, public: PublicKey) -> Result<(), KeyError> {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len >= self.cap {
            entries.drop_expired(now);
        }
        let owner_full = entries
            .by_owner
            .get(owner)
            .is_some_and(|k| k.len() >= self.per_owner);
        if entries.len >= self.cap && !owner_full {
            return Err(KeyError::Full);
        }
        let list = entries.by_owner.entry(owner.to_owned()).or_default();
        let mut evicted = 0;
        while list.len() >= self.per_owner {
            list.pop_front();
            evicted += 1;
        }
        list.push_back(Entry {
            public,
            key,
            expires: now + self.ttl,
        });
        entries.len = entries.len + 1 - evicted;
        Ok(())
    }

    /// A public key for a document whose private half nobody will use (the Lambda path): made
    /// fresh so the document has the v1 shape, and dropped at once.
    ///
    /// # Errors
    /// [`KeyError::Generate`] if aws-lc fails.
    pub fn throwaway_public(&self) -> Result<PublicKey, KeyError> {
        fresh_key().map(|(_, public)| public)
    }

    /// Removes and returns the private key for `public` if it is live and belongs to `owner`.
    /// A key that exists but belongs to someone else is left in place (and not revealed).
    pub fn take(&self, public: &PublicKey, owner: &str) -> Option<PrivateKey> {
        let now = Instant::now();
        let mut entries = self.lock();
        let list = entries.by_owner.get_mut(owner)?;
        let index = list.iter().position(|e| &e.public == public)?;
        let entry = list.remove(index)?;
        if list.is_empty() {
            entries.by_owner.remove(owner);
        }
        entries.len -= 1;
        (entry.expires > now).then_some(entry.key)
    }

    /// Finds the live key of `owner` that `open` accepts, removes it and returns what `open`
    /// produced. v1 apps do not say which attestation key they encrypted to, so each of the
    /// owner's live keys (at most [`Self::per_owner`]) is tried; the AEAD tag tells. The keys are
    /// moved out of the store while they are tried, so the lock is never held over crypto; only
    /// the key that opened is consumed, the others go back.
    ///
    /// # Errors
    /// [`TakeError::NoKey`] if `owner` has no live key, [`TakeError::NoneOpened`] if none opened.
    pub fn take_opening<T>(
        &self,
        owner: &str,
        open: impl Fn(&PrivateKey) -> Option<T>,
    ) -> Result<T, TakeError> {
        let mut candidates = self.lock().take_owner(owner, Instant::now());
        if candidates.is_empty() {
            return Err(TakeError::NoKey);
        }
        let hit = candidates
            .iter()
            .enumerate()
            .find_map(|(i, e)| open(&e.key).map(|v| (i, v)));
        if let Some((i, _)) = &hit {
            candidates.swap_remove(*i);
        }
        self.lock().restore(owner, candidates, self.per_owner);
        hit.map(|(_, v)| v).ok_or(TakeError::NoneOpened)
    }

    /// Removes every key minted for `owner` (a control `vault.reset`); returns how many.
    pub fn remove_owner(&self, owner: &str) -> usize {
        let mut entries = self.lock();
        let n = entries.by_owner.remove(owner).map_or(0, |k| k.len());
        entries.len -= n;
        n
    }

    /// Drops expired keys; returns how many remain.
    pub fn sweep(&self) -> usize {
        let mut entries = self.lock();
        entries.drop_expired(Instant::now());
        entries.len
    }

    /// Keys currently held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn fresh_key() -> Result<(PrivateKey, PublicKey), KeyError> {
    let key = PrivateKey::generate(&X25519).map_err(|_| KeyError::Generate)?;
    let public: PublicKey = key
        .compute_public_key()
        .map_err(|_| KeyError::Generate)?
        .as_ref()
        .try_into()
        .map_err(|_| KeyError::Generate)?;
    Ok((key, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_single_use_and_scoped_to_their_owner() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let pk = store.generate("alice").unwrap();
        assert!(store.take(&pk, "mallory").is_none(), "other owner");
        assert!(store.take(&pk, "alice").is_some());
        assert!(store.take(&pk, "alice").is_none(), "single use");
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn two_attestations_for_one_owner_keep_both_keys() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let a = store.generate("u").unwrap();
        let b = store.generate("u").unwrap();
        assert_ne!(a, b);
        assert!(store.take(&a, "u").is_some());
        assert!(store.take(&b, "u").is_some());
    }

    #[test]
    fn a_flood_for_one_owner_keeps_only_its_newest_keys() {
        let store = KeyStore::with_per_owner(Duration::from_secs(60), 100, 3);
        let other = store.generate("v").unwrap();
        let keys: Vec<_> = (0..50).map(|_| store.generate("u").unwrap()).collect();
        assert_eq!(store.len(), 4, "3 of u's, 1 of v's");
        assert!(store.take(&keys[0], "u").is_none(), "oldest evicted");
        assert!(store.take(&keys[49], "u").is_some());
        assert!(
            store.take(&other, "v").is_some(),
            "the flood cost v nothing"
        );
    }

    #[test]
    fn take_opening_consumes_only_the_key_that_opened_and_restores_the_rest() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let a = store.generate("u").unwrap();
        let b = store.generate("u").unwrap();
        let opened = store.take_opening("u", |k| {
            let public: PublicKey = k.compute_public_key().unwrap().as_ref().try_into().unwrap();
            (public == b).then_some(public)
        });
        assert_eq!(opened, Ok(b));
        assert_eq!(store.len(), 1);
        assert!(store.take(&a, "u").is_some(), "a was put back");
        assert_eq!(store.take_opening("u", |_| Some(())), Err(TakeError::NoKey));
        store.generate("u").unwrap();
        assert_eq!(
            store.take_opening("u", |_| None::<()>),
            Err(TakeError::NoneOpened)
        );
        assert_eq!(store.len(), 1, "a key that did not open stays");
    }

    #[test]
    fn the_lock_is_free_while_keys_are_tried() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        store.generate("u").unwrap();
        let other = store.generate("v").unwrap();
        let r = store.take_opening("u", |_| {
            // Another owner's request runs while u's keys are being tried.
            store.take(&other, "v").map(|_| ())
        });
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn expired_keys_are_gone_and_make_room() {
        let store = KeyStore::new(Duration::from_millis(1), 2);
        let a = store.generate("a").unwrap();
        store.generate("b").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.take(&a, "a").is_none());
        store.generate("c").unwrap();
        store
            .generate("d")
            .expect("expired entries were dropped at the cap");
        assert_eq!(store.len(), 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.sweep(), 0);
    }

    #[test]
    fn remove_owner_removes_only_that_owners_keys() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let a = store.generate("u").unwrap();
        store.generate("u").unwrap();
        let v = store.generate("v").unwrap();
        assert_eq!(store.remove_owner("u"), 2);
        assert_eq!(store.remove_owner("u"), 0);
        assert!(store.take(&a, "u").is_none());
        assert!(store.take(&v, "v").is_some());
        assert!(store.is_empty());
    }

    #[test]
    fn cap_refuses_new_owners_when_all_keys_are_live() {
        let store = KeyStore::new(Duration::from_secs(60), 2);
        store.generate("a").unwrap();
        store.generate("b").unwrap();
        assert!(matches!(store.generate("c"), Err(KeyError::Full)));
        // An owner at its own limit replaces its oldest key instead.
        let store = KeyStore::with_per_owner(Duration::from_secs(60), 2, 1);
        store.generate("a").unwrap();
        store.generate("b").unwrap();
        store.generate("a").expect("replaces a's key");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn throwaway_keys_are_not_kept() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let pk = store.throwaway_public().unwrap();
        assert!(store.is_empty());
        assert!(store.take(&pk, "").is_none());
    }
}
