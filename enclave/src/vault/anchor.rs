//! Each vault's anchor in the trusted store: the one stored object the enclave will use.
//!
//! The object store is the host's, so it can serve any object an enclave ever wrote for a vault:
//! an older one brings back a spent UTK, a deleted credential, the old PIN and a PIN counter
//! from before the last wrong guesses (G18). Memory cannot stop that across restarts or hosts.
//! The anchor can: a [`Mark`] per vault in the trusted store (DynamoDB, written only by attested
//! enclaves with credentials the host never sees, `crate::trusted`) names the version and the
//! SHA-256 of the object every enclave must load. The PIN counter, back-off, UTKs and the
//! create proof live inside that object, so pinning the object pins them all with one small
//! item and one conditional write per change.
//!
//! Writes go object first, then mark (a compare-and-swap on the mark's revision), and nothing is
//! answered before both: a change whose mark did not move is never acknowledged, and a PIN
//! attempt is not evaluated. If the object landed but the mark did not (the host dropped the
//! call, or it timed out), the next load finds object `version = mark + 1` and adopts it with
//! the same compare-and-swap: it is a one-step successor of the pinned object whose result no
//! one has seen, so taking it or the pinned one is equally safe, and which is taken is decided
//! once, by the trusted store. Any other object is refused (`stale_vault`).
//!
//! A signed reset leaves a tombstone (`reset: true`) instead of forgetting: objects up to its
//! version read as "not enrolled", and re-enrolment continues above it, so versions never
//! repeat and `(version, digest)` names one object for the vault's whole life. The mark also
//! holds the `issued_at` of the last signed command applied to the vault, so a command cannot be
//! replayed on another host, or after a later one, inside its validity window.
//!
//! The app's own witness is a second floor, as in VettID's next vault (its messaging spec
//! §13.2): every sealed v2 reply names the vault version it came from (`vault_version`), the app
//! keeps the highest it saw and sends it back inside its next envelope (`seen_version`); an
//! older object is refused for that request (`stale_vault`) before anything is written or
//! answered. It holds without a trusted store, but only for apps that have talked to the vault
//! since the object moved on; the trusted store holds for everyone.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

tokio::task_local! {
    /// The app's witness for the request being served: the highest vault version its earlier
    /// replies showed it (`seen_version` inside a v2 envelope, so the host cannot lower it).
    static APP_FLOOR: Cell<u64>;
}

/// Runs one request with an app floor of 0 until its envelope says otherwise.
pub(crate) async fn with_app_floor<F: std::future::Future>(f: F) -> F::Output {
    APP_FLOOR.scope(Cell::new(0), f).await
}

/// Raises the request's app floor to `version`.
pub(crate) fn raise_app_floor(version: u64) {
    let _ = APP_FLOOR.try_with(|c| c.set(c.get().max(version)));
}

/// The request's app floor (0 outside a request).
pub(crate) fn app_floor() -> u64 {
    APP_FLOOR.try_with(Cell::get).unwrap_or(0)
}

/// The trusted store key of `vault`'s mark.
pub(crate) fn key(vault: &str) -> String {
    format!("vault#{vault}")
}

/// What the trusted store holds for one vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// The version of the object to load; for a tombstone, the last version before the reset.
    pub(crate) version: u64,
    /// SHA-256 of that object's stored bytes (empty for a tombstone).
    #[serde(with = "serde_bytes")]
    pub(crate) digest: Vec<u8>,
    /// Reset by a signed command: no vault until re-enrolment above `version`.
    pub(crate) reset: bool,
    /// `issued_at` (Unix ms) of the last signed command applied to this vault.
    pub(crate) control_at_ms: u64,
}

impl Mark {
    /// The mark for object `version` with `digest`.
    pub(crate) fn live(version: u64, digest: [u8; 32], control_at_ms: u64) -> Self {
        Self {
            version,
            digest: digest.to_vec(),
            reset: false,
            control_at_ms,
        }
    }

    /// The bytes stored in the trusted store.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        // Serialising a struct of integers and bytes into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    /// Parses stored bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mark: Mark = ciborium::from_reader(bytes).ok()?;
        (mark.reset || mark.digest.len() == 32).then_some(mark)
    }
}

/// A mark as read, with the revision a compare-and-swap must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchored {
    pub(crate) rev: u64,
    pub(crate) mark: Mark,
}

/// What to do with the object storage served, given the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It is the pinned object.
    Accept,
    /// It is the one-step successor of the pinned object (or the first object of an anchor that
    /// predates the trusted store): pin it with this mark before using it.
    Adopt(Mark),
    /// There is no vault (never enrolled, or reset and not re-enrolled).
    NotEnrolled,
    /// An object other than the pinned one: older, a fork, or missing while the mark is live.
    Stale,
}

/// The object's version and SHA-256, if storage has one.
pub(crate) type Served = Option<(u64, [u8; 32])>;

/// Judges `served` against `mark` (see the module docs).
pub(crate) fn judge(mark: Option<&Mark>, served: Served) -> Verdict {
    match (mark, served) {
        (None, None) => Verdict::NotEnrolled,
        // A vault stored before this enclave had a trusted store: pin what is there. The host
        // cannot remove a mark, so "no mark" means no enclave ever anchored this vault.
        (None, Some((version, digest))) => Verdict::Adopt(Mark::live(version, digest, 0)),
        (Some(m), None) => {
            if m.reset {
                Verdict::NotEnrolled
            } else {
                Verdict::Stale
            }
        }
        (Some(m), Some((version, digest))) => {
            if m.reset {
                if version <= m.version {
                    Verdict::NotEnrolled
                } else if version == m.version + 1 {
                    // A re-enrolment whose mark did not land.
                    Verdict::Adopt(Mark::live(version, digest, m.control_at_ms))
                } else {
                    Verdict::Stale
                }
            } else if version == m.version {
                if m.digest == digest {
                    Verdict::Accept
                } else {
                    Verdict::Stale
                }
            } else if version == m.version + 1 {
                Verdict::Adopt(Mark::live(version, digest, m.control_at_ms))
            } else {
                Verdict::Stale
            }
        }
    }
}

/// SHA-256 of stored bytes.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: [u8; 32] = [1; 32];
    const D2: [u8; 32] = [2; 32];

    fn live(version: u64, digest: [u8; 32]) -> Mark {
        Mark::live(version, digest, 0)
    }

    fn tombstone(version: u64) -> Mark {
        Mark {
            version,
            digest: Vec::new(),
            reset: true,
            control_at_ms: 7,
        }
    }

    #[test]
    fn only_the_pinned_object_or_its_successor_is_used() {
        let m = live(5, D1);
        assert_eq!(judge(Some(&m), Some((5, D1))), Verdict::Accept);
        assert_eq!(judge(Some(&m), Some((4, D1))), Verdict::Stale, "older");
        assert_eq!(judge(Some(&m), Some((5, D2))), Verdict::Stale, "a fork");
        assert_eq!(
            judge(Some(&m), Some((6, D2))),
            Verdict::Adopt(live(6, D2)),
            "a write whose mark did not land"
        );
        assert_eq!(judge(Some(&m), Some((7, D2))), Verdict::Stale, "skips");
        assert_eq!(judge(Some(&m), None), Verdict::Stale, "withheld");
    }

    #[test]
    fn a_tombstone_is_not_forgetting() {
        let t = tombstone(9);
        assert_eq!(judge(Some(&t), None), Verdict::NotEnrolled);
        assert_eq!(judge(Some(&t), Some((9, D1))), Verdict::NotEnrolled);
        assert_eq!(judge(Some(&t), Some((1, D1))), Verdict::NotEnrolled);
        assert_eq!(
            judge(Some(&t), Some((10, D1))),
            Verdict::Adopt(Mark::live(10, D1, 7))
        );
        assert_eq!(judge(Some(&t), Some((11, D1))), Verdict::Stale);
    }

    #[test]
    fn a_vault_from_before_the_trusted_store_is_adopted() {
        assert_eq!(judge(None, None), Verdict::NotEnrolled);
        assert_eq!(judge(None, Some((3, D1))), Verdict::Adopt(live(3, D1)));
    }

    #[test]
    fn marks_round_trip_and_bad_ones_are_refused() {
        for m in [live(5, D1), tombstone(3)] {
            assert_eq!(Mark::decode(&m.encode()), Some(m));
        }
        let mut short = live(5, D1);
        short.digest.truncate(31);
        assert_eq!(Mark::decode(&short.encode()), None);
        assert_eq!(Mark::decode(b"\xff\x00"), None);
    }
}
