//! Short-lived X25519 keys whose public halves were put in attestation documents.
//!
//! An app that verified a document encrypts its PIN to the document's `public_key`; the vault later
//! takes the private half from here to decrypt it. Keys are single use ([`KeyStore::take`] removes
//! them), scoped to the owner space that asked (a key minted for one user can never open another
//! user's payload), and expire after the TTL (VettID: 300 s). Unlike VettID v1, a newer attestation
//! does not replace an older one for the same user (defect G31): each document's key stands alone.
//!
//! aws-lc zeroises private key material when the key object is freed, so dropping an entry is
//! enough to erase it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{PrivateKey, X25519};

/// An X25519 public key (32 bytes).
pub type PublicKey = [u8; 32];

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
    key: PrivateKey,
    owner: Option<String>,
    expires: Instant,
}

/// The keys, and which belong to whom: `take_opening` runs on every `pin.setup` and must not scan
/// a store that can hold 100 000 keys under its lock.
#[derive(Default)]
struct Entries {
    by_key: HashMap<PublicKey, Entry>,
    by_owner: HashMap<String, Vec<PublicKey>>,
}

impl Entries {
    fn len(&self) -> usize {
        self.by_key.len()
    }

    fn get(&self, public: &PublicKey) -> Option<&Entry> {
        self.by_key.get(public)
    }

    fn insert(&mut self, public: PublicKey, entry: Entry) {
        if let Some(owner) = &entry.owner {
            self.by_owner.entry(owner.clone()).or_default().push(public);
        }
        self.by_key.insert(public, entry);
    }

    fn remove(&mut self, public: &PublicKey) -> Option<Entry> {
        let entry = self.by_key.remove(public)?;
        if let Some(owner) = &entry.owner {
            if let Some(keys) = self.by_owner.get_mut(owner) {
                keys.retain(|k| k != public);
                if keys.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
        Some(entry)
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        self.by_key.retain(|_, e| keep(e));
        let by_key = &self.by_key;
        self.by_owner.retain(|_, keys| {
            keys.retain(|k| by_key.contains_key(k));
            !keys.is_empty()
        });
    }

    fn owned_by(&self, owner: &str) -> Vec<PublicKey> {
        self.by_owner.get(owner).cloned().unwrap_or_default()
    }
}

/// Bounded store of attestation private keys.
pub struct KeyStore {
    ttl: Duration,
    cap: usize,
    entries: Mutex<Entries>,
}

impl KeyStore {
    /// A store keeping keys for `ttl`, at most `cap` at once.
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap: cap.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Generates a fresh key for `owner` (None for the Lambda path) and returns its public half.
    ///
    /// # Errors
    /// [`KeyError::Full`] at the cap, [`KeyError::Generate`] if aws-lc fails.
    pub fn generate(&self, owner: Option<&str>) -> Result<PublicKey, KeyError> {
        let key = PrivateKey::generate(&X25519).map_err(|_| KeyError::Generate)?;
        let public: PublicKey = key
            .compute_public_key()
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::Generate)?;
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.cap {
            entries.retain(|e| e.expires > now);
            if entries.len() >= self.cap {
                return Err(KeyError::Full);
            }
        }
        entries.insert(
            public,
            Entry {
                key,
                owner: owner.map(str::to_owned),
                expires: now + self.ttl,
            },
        );
        Ok(public)
    }

    /// Removes and returns the private key for `public` if it is live and belongs to `owner`.
    /// A key that exists but belongs to someone else is left in place (and not revealed).
    pub fn take(&self, public: &PublicKey, owner: Option<&str>) -> Option<PrivateKey> {
        let mut entries = self.lock();
        let entry = entries.get(public)?;
        if entry.expires <= Instant::now() {
            entries.remove(public);
            return None;
        }
        if entry.owner.as_deref() != owner {
            return None;
        }
        entries.remove(public).map(|e| e.key)
    }

    /// Finds the live key of `owner` that `open` accepts, removes it and returns what `open`
    /// produced. v1 apps do not say which attestation key they encrypted to, so each of the
    /// owner's live keys is tried (the AEAD tag tells); only the key that opened is consumed.
    ///
    /// # Errors
    /// [`TakeError::NoKey`] if `owner` has no live key, [`TakeError::NoneOpened`] if none opened.
    pub fn take_opening<T>(
        &self,
        owner: &str,
        open: impl Fn(&PrivateKey) -> Option<T>,
    ) -> Result<T, TakeError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut found_any = false;
        let mut hit = None;
        for public in entries.owned_by(owner) {
            let Some(entry) = entries.get(&public) else {
                continue;
            };
            if entry.expires <= now {
                continue;
            }
            found_any = true;
            if let Some(value) = open(&entry.key) {
                hit = Some((public, value));
                break;
            }
        }
        match hit {
            Some((public, value)) => {
                entries.remove(&public);
                Ok(value)
            }
            None if found_any => Err(TakeError::NoneOpened),
            None => Err(TakeError::NoKey),
        }
    }

    /// Removes every key minted for `owner` (a control `vault.reset`); returns how many.
    pub fn remove_owner(&self, owner: &str) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|e| e.owner.as_deref() != Some(owner));
        before - entries.len()
    }

    /// Drops expired keys; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|e| e.expires > now);
        entries.len()
    }

    /// Keys currently held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_index_follows_every_removal() {
        let store = KeyStore::new(Duration::from_millis(50), 100);
        let a = store.generate(Some("a")).unwrap();
        store.generate(Some("a")).unwrap();
        store.generate(Some("b")).unwrap();
        store.generate(None).unwrap();
        assert_eq!(store.lock().owned_by("a").len(), 2);
        // Taken: gone from the index; the owner's other key is still found.
        assert!(store.take(&a, Some("a")).is_some());
        assert_eq!(store.lock().owned_by("a").len(), 1);
        assert_eq!(store.take_opening("a", |_| Some(())), Ok(()));
        assert!(!store.lock().by_owner.contains_key("a"));
        assert_eq!(store.take_opening("a", |_| Some(())), Err(TakeError::NoKey));
        // Reset and expiry clear it too.
        store.generate(Some("c")).unwrap();
        assert_eq!(store.remove_owner("c"), 1);
        assert!(!store.lock().by_owner.contains_key("c"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(store.sweep(), 0);
        assert!(store.lock().by_owner.is_empty());
    }

    #[test]
    fn keys_are_single_use_and_scoped_to_their_owner() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let pk = store.generate(Some("alice")).unwrap();
        assert!(store.take(&pk, Some("mallory")).is_none(), "other owner");
        assert!(
            store.take(&pk, None).is_none(),
            "lambda path cannot take a user's key"
        );
        assert!(store.take(&pk, Some("alice")).is_some());
        assert!(store.take(&pk, Some("alice")).is_none(), "single use");
    }

    #[test]
    fn two_attestations_for_one_owner_keep_both_keys() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let a = store.generate(Some("u")).unwrap();
        let b = store.generate(Some("u")).unwrap();
        assert_ne!(a, b);
        assert!(store.take(&a, Some("u")).is_some());
        assert!(store.take(&b, Some("u")).is_some());
    }

    #[test]
    fn expired_keys_are_gone_and_make_room() {
        let store = KeyStore::new(Duration::from_millis(1), 2);
        let a = store.generate(None).unwrap();
        store.generate(None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.take(&a, None).is_none());
        store.generate(None).unwrap();
        store
            .generate(None)
            .expect("expired entries were dropped at the cap");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn remove_owner_removes_only_that_owners_keys() {
        let store = KeyStore::new(Duration::from_secs(60), 10);
        let a = store.generate(Some("u")).unwrap();
        store.generate(Some("u")).unwrap();
        let v = store.generate(Some("v")).unwrap();
        let l = store.generate(None).unwrap();
        assert_eq!(store.remove_owner("u"), 2);
        assert_eq!(store.remove_owner("u"), 0);
        assert!(store.take(&a, Some("u")).is_none());
        assert!(store.take(&v, Some("v")).is_some());
        assert!(store.take(&l, None).is_some());
    }

    #[test]
    fn cap_refuses_when_all_keys_are_live() {
        let store = KeyStore::new(Duration::from_secs(60), 2);
        store.generate(None).unwrap();
        store.generate(None).unwrap();
        assert!(matches!(store.generate(None), Err(KeyError::Full)));
    }
}
