//! What one row measured ([`Row`]) and which of it breaks the table's promises
//! ([`Row::failures`]): answers by code, recovery after the part is back, what reading back
//! found, and for the trusted-store rows what was served while the table was broken
//! ([`FailClosed`]).
//!
//! Separate because it is the verdict: functions of the [`Sent`] records only, no process or
//! socket, shared by `vettid-faults`, `tests/fault_table.rs` and `tests/vault_faults.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Durability, Fault, Kind, Sent, WRONG_PIN_PROBE};

/// Answers by code (`ok` for successes, `lost: …` for none).
pub fn codes<'a>(sent: impl IntoIterator<Item = &'a Sent>) -> BTreeMap<String, usize> {
    let mut codes = BTreeMap::new();
    for s in sent {
        let code = match s.answer.code() {
            c if c.is_empty() => "ok".to_owned(),
            c if c.starts_with("lost") => "unanswered".to_owned(),
            c => c,
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    codes
}

/// The first success among requests sent after `from`, as time from `from` to its answer.
pub fn recovery<'a>(sent: impl IntoIterator<Item = &'a Sent>, from: Instant) -> Option<Duration> {
    sent.into_iter()
        .filter(|s| s.sent >= from && s.answer.is_ok())
        .map(|s| s.answered - from)
        .min()
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What failed.
    pub fault: &'static str,
    /// Requests by kind.
    pub requests: BTreeMap<Kind, usize>,
    /// Answers by code, all kinds (`ok`, `unanswered`, error codes).
    pub codes: BTreeMap<String, usize>,
    /// Requests answered more than once.
    pub duplicates: usize,
    /// What reading back found.
    pub durability: Durability,
    /// From the part being back until the last failure among requests sent after that was
    /// answered (or the first success, if none failed): every request sent later succeeded.
    /// `None` if none did.
    pub recovery: Option<Duration>,
    /// The slowest answer.
    pub slowest: Duration,
    /// What the row's logs show (the conflicts and reloads of the conflict row), or which kinds
    /// of request never succeeded after the part was back (too rare to have a try after the
    /// recovery window).
    pub note: String,
    /// For the trusted-store rows: what vault requests sent and answered while the table was
    /// broken were answered.
    pub fail_closed: Option<FailClosed>,
}

/// Requests sent after the trusted store broke and answered before its repair began: while the
/// table could not be read or written, nothing may be acknowledged and no PIN evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailClosed {
    /// `pin.unlock`s (the load's and the PIN probes') answered in the window.
    pub unlocks: usize,
    /// Of those, the probe's wrong PINs.
    pub wrong_pins: usize,
    /// Unlocks answered `unlocked` (must be 0).
    pub unlocked: usize,
    /// Unlocks answered `invalid_pin` (must be 0: the attempt would have been evaluated).
    pub invalid_pin: usize,
    /// Other vault requests (enrolment, add, retrieve) answered with success (must be 0).
    pub acknowledged: usize,
}

impl FailClosed {
    /// Counts `all` against the window `(from, to)`.
    pub fn count<'a>(
        all: impl IntoIterator<Item = &'a Sent>,
        (from, to): (Instant, Instant),
    ) -> Self {
        let mut f = Self::default();
        for s in all {
            if s.sent < from || s.answered > to || s.kind == Kind::Attest {
                continue;
            }
            if s.kind == Kind::Unlock {
                f.unlocks += 1;
                f.wrong_pins += usize::from(s.name == WRONG_PIN_PROBE);
                f.unlocked += usize::from(s.answer.is_ok());
                f.invalid_pin += usize::from(s.answer.code() == "invalid_pin");
            } else {
                f.acknowledged += usize::from(s.answer.is_ok());
            }
        }
        f
    }

    /// What breaks the promise: anything served, or too few probes to tell.
    pub fn failures(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if self.wrong_pins == 0 || self.unlocks <= self.wrong_pins {
            bad.push(format!(
                "too few PIN probes answered while the table was broken: {self:?}"
            ));
        }
        if self.unlocked > 0 {
            bad.push(format!(
                "{} unlocked while the table was broken",
                self.unlocked
            ));
        }
        if self.invalid_pin > 0 {
            bad.push(format!(
                "{} PINs evaluated (invalid_pin) while the table was broken",
                self.invalid_pin
            ));
        }
        if self.acknowledged > 0 {
            bad.push(format!(
                "{} requests acknowledged while the table was broken",
                self.acknowledged
            ));
        }
        bad
    }
}

/// How long after the part is back the service must be whole again.
pub const RECOVERY: Duration = Duration::from_secs(2);

impl Row {
    /// What in this row breaks the table's promises: a duplicate answer, an acknowledged
    /// mutation lost, a refused one stored, an error code the fault does not explain, recovery
    /// slower than [`RECOVERY`], or a request with no answer where a live part could have given
    /// one (only nats-server's restart and the parent's SIGKILL take requests with them).
    pub fn failures(&self, fault: Fault) -> Vec<String> {
        let mut bad = Vec::new();
        if self.duplicates > 0 {
            bad.push(format!("{} answered twice", self.duplicates));
        }
        if self.durability.lost > 0 {
            bad.push(format!("{} acknowledged but lost", self.durability.lost));
        }
        if self.durability.refused_but_stored > 0 {
            bad.push(format!(
                "{} refused but stored",
                self.durability.refused_but_stored
            ));
        }
        if fault.trusted() {
            match &self.fail_closed {
                Some(f) => bad.extend(f.failures()),
                None => bad.push("the table's outage window was not recorded".into()),
            }
        }
        let unexpected = fault.unexpected_codes(self);
        if !unexpected.is_empty() {
            bad.push(format!("unexpected codes {unexpected:?}"));
        }
        match self.recovery {
            Some(r) if r <= RECOVERY => {}
            other => bad.push(format!("recovery {other:?}")),
        }
        if self.unanswered() > 0 && !fault.takes_requests() {
            bad.push(format!("{} unanswered", self.unanswered()));
        }
        bad
    }

    /// Requests sent.
    pub fn total(&self) -> usize {
        self.requests.values().sum()
    }

    /// Requests with no answer within [`LIMIT`](super::LIMIT).
    pub fn unanswered(&self) -> usize {
        self.codes.get("unanswered").copied().unwrap_or(0)
    }
}

/// How long after `back` the service was whole again: until the answer to the last failed request
/// sent after `back` (a part coming back can take a few failures with it: requests before the
/// parent has resubscribed, a reload after a conflict, a `vault_locked` before the cold unlock),
/// or until the first success if none failed. Every request sent after that point succeeded.
/// `None` if no request sent after it succeeded.
pub(super) fn recovered_after(all: &[&Sent], back: Instant) -> Option<Duration> {
    let after: Vec<&Sent> = all.iter().copied().filter(|s| s.sent >= back).collect();
    let last_failure = after
        .iter()
        .filter(|s| !s.answer.is_ok())
        .map(|s| s.answered)
        .max();
    match last_failure {
        None => recovery(after, back),
        Some(t) => after
            .iter()
            .any(|s| s.sent >= t && s.answer.is_ok())
            .then(|| t - back),
    }
}
