//! `command_id`s seen, each kept until its command expires.
//!
//! A command can only be accepted while it is valid (at most [`super::verify::MAX_VALIDITY_MS`]),
//! so remembering an id until its `expires_at` is enough to refuse every replay of it. The cache
//! is bounded; at the bound only expired ids are forgotten, and if every entry is still live the
//! new command is refused as busy: forgetting a live id would let it be replayed. Only commands
//! with a valid signature reach the cache, so filling it takes a signing key.
//!
//! VettID hashed whole payloads for ten minutes, so an identical legitimate retry was refused and
//! ISO timestamps bypassed freshness (G13); here the id is explicit and signed.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Rejection;

/// Default bound on remembered ids (≈100 k × ~100 bytes ≈ 10 MB at worst).
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Bounded set of live command ids.
#[derive(Debug)]
pub struct ReplayCache {
    cap: usize,
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayCache {
    /// A cache remembering at most `cap` live ids.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records `id` (valid until `expires_at_ms`), unless it was seen before.
    ///
    /// # Errors
    /// [`Rejection::Replayed`] for a live id seen before; [`Rejection::ReplayCacheFull`] when the
    /// cache is full of live ids.
    pub fn insert(&self, id: &str, expires_at_ms: u64, now_ms: u64) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&until) = seen.get(id) {
            if until > now_ms {
                return Err(Rejection::Replayed);
            }
        }
        if seen.len() >= self.cap && !seen.contains_key(id) {
            seen.retain(|_, until| *until > now_ms);
            if seen.len() >= self.cap {
                return Err(Rejection::ReplayCacheFull);
            }
        }
        seen.insert(id.to_owned(), expires_at_ms);
        Ok(())
    }

    /// Ids remembered (live or not yet evicted).
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_id_is_refused_twice() {
        let c = ReplayCache::new(10);
        c.insert("a", 2_000, 1_000).unwrap();
        assert_eq!(c.insert("a", 2_000, 1_500), Err(Rejection::Replayed));
        c.insert("b", 2_000, 1_500).unwrap();
    }

    #[test]
    fn full_of_live_ids_refuses_rather_than_forgets() {
        let c = ReplayCache::new(2);
        c.insert("a", 2_000, 1_000).unwrap();
        c.insert("b", 5_000, 1_000).unwrap();
        assert_eq!(c.insert("c", 5_000, 1_500), Err(Rejection::ReplayCacheFull));
        assert_eq!(c.insert("a", 5_000, 1_500), Err(Rejection::Replayed));
        // Once `a` has expired it is evicted to make room; `b` is still remembered.
        c.insert("c", 5_000, 2_000).unwrap();
        assert_eq!(c.insert("b", 5_000, 2_500), Err(Rejection::Replayed));
        assert_eq!(c.len(), 2);
    }
}
