//! The parent's deadline for the request being served, so the enclave answers before the parent
//! gives up on it.
//!
//! The parent waits a fixed time for each NATS request (`enclave.request_timeout_ms`) and then
//! answers `enclave_timeout` itself: an answer that tells the app nothing about what happened.
//! Every link frame carries that budget (`[kind, id, deadline_ms, body]`, `RequestCtx::deadline`);
//! a vault operation runs inside [`scope`] with a deadline a little before it ([`before`]), and
//! every wait that *starts* new
//! work (the vault's lock, an Argon2 permit, a KMS call, a storage read) is bounded by what is
//! left. When nothing is left the operation stops with `deadline_exceeded`, a definite answer:
//! nothing was changed.
//!
//! Writes are not bounded by the deadline. A write is the commit point of work already begun (a
//! counted PIN attempt must be followed by its evaluation and reset; see
//! `Processor::vault`), so it keeps the store's own timeout and the operation runs to its end.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::ClientError;
use crate::sealing::SealError;

tokio::task_local! {
    static DEADLINE: Option<Instant>;
}

/// Kept back from the parent's budget for the answer's way back and the work after the last
/// bounded wait: a tenth of it, at least 50 ms, at most 1 s.
pub fn margin(budget: Duration) -> Duration {
    (budget / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Our deadline for a request the peer stops waiting for at `peer`: [`margin`] before it.
pub fn before(peer: Instant) -> Instant {
    let budget = peer.saturating_duration_since(Instant::now());
    peer - margin(budget).min(budget)
}

/// Runs `f` with `deadline` as the current request's deadline.
pub async fn scope<F: Future>(deadline: Option<Instant>, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// Time left before the current request's deadline; `None` outside a request with one.
pub fn remaining() -> Option<Duration> {
    let deadline = DEADLINE.try_with(|d| *d).ok().flatten()?;
    Some(deadline.saturating_duration_since(Instant::now()))
}

/// The deadline passed before the wait could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed")]
pub struct Expired;

/// `own`, shortened to the time left before the deadline.
///
/// # Errors
/// [`Expired`] when no time is left.
pub fn limit(own: Duration) -> Result<Duration, Expired> {
    match remaining() {
        None => Ok(own),
        Some(left) if left.is_zero() => Err(Expired),
        Some(left) => Ok(own.min(left)),
    }
}

/// Waits for `f`, at most until the deadline. `None` when the deadline passed first (or had
/// already passed: `f` is then not polled at all).
pub async fn within<F: Future>(f: F) -> Option<F::Output> {
    match remaining() {
        None => Some(f.await),
        Some(left) if left.is_zero() => None,
        Some(left) => tokio::time::timeout(left, f).await.ok(),
    }
}

/// A KMS call bounded by the request's deadline: not started when no time is left
/// (`deadline_exceeded`); `KMSUnavailable` when KMS does not answer before it.
///
/// # Errors
/// [`ClientError::DeadlineExceeded`] when the call could not start; the call's own outcome
/// (with a timeout as [`SealError::Unavailable`]) is the `Ok` value.
pub(crate) async fn kms_in_time<T>(
    call: impl Future<Output = Result<T, SealError>>,
) -> Result<Result<T, SealError>, ClientError> {
    limit(Duration::MAX).map_err(|_| ClientError::DeadlineExceeded)?;
    Ok(within(call).await.unwrap_or(Err(SealError::Unavailable)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_tenth_within_bounds() {
        assert_eq!(margin(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(margin(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(
            margin(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_bounded() {
        assert_eq!(remaining(), None);
        assert_eq!(limit(Duration::from_secs(9)), Ok(Duration::from_secs(9)));
        assert_eq!(within(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn inside_a_scope_waits_end_at_the_deadline() {
        let deadline = before(Instant::now() + Duration::from_secs(1));
        scope(Some(deadline), async {
            let left = remaining().unwrap();
            assert!(left <= Duration::from_millis(900) && left > Duration::from_millis(800));
            assert!(limit(Duration::from_secs(5)).unwrap() <= Duration::from_millis(900));
            assert_eq!(
                limit(Duration::from_millis(10)),
                Ok(Duration::from_millis(10))
            );
            let started = Instant::now();
            let r = within(tokio::time::sleep(Duration::from_secs(5))).await;
            assert_eq!(r, None);
            assert!(started.elapsed() < Duration::from_secs(1));
            // Past the deadline: nothing starts.
            assert_eq!(limit(Duration::from_secs(1)), Err(Expired));
            let mut polled = false;
            assert_eq!(within(async { polled = true }).await, None);
            assert!(!polled);
        })
        .await;
        assert_eq!(scope(None, async { remaining() }).await, None);
    }
}
