//! The sealing key's self-check: before anything is sealed, the enclave reads its key's metadata,
//! policy and grants over its own TLS and refuses to seal unless only an attested enclave with a
//! trusted PCR0 could obtain the material ([`super::policy`] holds the policy rules).
//!
//! ```text
//!  DescribeKey  Arn = the configured ARN; Enabled; CUSTOMER; AWS_KMS; SYMMETRIC_DEFAULT;
//!               ENCRYPT_DECRYPT; no custom key store; not a multi-region replica, no replicas
//!  GetKeyPolicy (default) → policy::check
//!  ListGrants   empty and not truncated (a grant authorises outside the policy)
//! ```
//!
//! The responses come over TLS that ends in the enclave, so they are KMS's; the lent credentials
//! only authorise the reads. A host can withhold credentials or the tunnel (no seal: denial of
//! service, which it can cause anyway), not change an answer.
//!
//! **When.** A task owned by [`KeyChecker`] checks at start (retrying every [`RETRY`] until KMS
//! answers: the parent lends credentials only once it is connected) and then every
//! [`REFRESH`]. A seal proceeds only on a pass younger than [`MAX_AGE`], and otherwise checks
//! inline first. One minute because the check's value after start is noticing a policy rewrite
//! (`kms:PutKeyPolicy`, the administrator's door, docs/VAULT.md): within a minute the enclave
//! stops sealing and health says why. It costs three small KMS calls a minute per enclave
//! (BENCHMARKS.md), nothing next to KMS's request quotas, and no seal waits for it while it is
//! fresh. Only sealing is gated: `Decrypt` returns material to this enclave alone whatever the
//! policy says, so existing vaults keep opening.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_kms::types::{
    KeyManagerType, KeySpec, KeyState, KeyUsageType, MultiRegionKeyType, OriginType,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::arn::KeyArn;
use super::policy::{self, Rules};
use crate::sealing::{KeyCheckReport, SealError};

/// Time between background checks.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Oldest pass a seal relies on without checking again (two refreshes: one may be slow).
pub const MAX_AGE: Duration = Duration::from_secs(120);
/// Pause after a check KMS did not answer (no credentials yet, tunnel down, throttled).
pub const RETRY: Duration = Duration::from_secs(2);

/// The outcome of one check.
#[derive(Debug, Clone)]
enum Outcome {
    Passed,
    /// A definite answer: the key must not be sealed under.
    Refused {
        error: SealError,
        reason: &'static str,
        detail: String,
    },
    /// KMS did not answer (retryable).
    Unavailable {
        error: SealError,
    },
}

/// Shared between the owner, the background task and every seal.
struct Inner {
    client: aws_sdk_kms::Client,
    key: KeyArn,
    rules: Rules,
    /// The last completed check and when it completed.
    last: Mutex<Option<(Outcome, Instant)>>,
    /// One check at a time: a seal waiting here reuses the result of the check in flight.
    flight: tokio::sync::Mutex<()>,
}

/// Runs and caches the check; dropping it stops the background task.
pub struct KeyChecker {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    _task: JoinHandle<()>,
}

impl std::fmt::Debug for KeyChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChecker")
            .field("key", &self.inner.key)
            .finish()
    }
}

impl KeyChecker {
    /// Starts checking `key` against `rules` with `client` (see the module docs).
    pub fn start(client: aws_sdk_kms::Client, key: KeyArn, rules: Rules) -> Self {
        let inner = Arc::new(Inner {
            client,
            key,
            rules,
            last: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(background(inner.clone(), stopped));
        Self {
            inner,
            stop,
            _task: task,
        }
    }

    /// Ok when the key passed a check younger than [`MAX_AGE`]; otherwise checks now.
    ///
    /// # Errors
    /// The check's [`SealError`]: `KeyPolicyUnsafe`, `KeyMismatch`, `KeyDisabled`,
    /// `KeyPendingDeletion`, or the KMS error that kept it from completing.
    pub async fn ensure(&self) -> Result<(), SealError> {
        if let Some(result) = self.inner.fresh() {
            return result;
        }
        let waiting_since = Instant::now();
        let _one = self.inner.flight.lock().await;
        // A check that completed while this seal waited is as fresh as one it would run itself,
        // whatever it found: do not ask KMS twice in a row.
        if let Some(result) = self.inner.completed_since(waiting_since) {
            return result;
        }
        if let Some(result) = self.inner.fresh() {
            return result;
        }
        self.inner.run().await.result()
    }

    /// Checks now, whatever the cache holds (tests and measurements).
    ///
    /// # Errors
    /// As [`KeyChecker::ensure`].
    pub async fn recheck(&self) -> Result<(), SealError> {
        let _one = self.inner.flight.lock().await;
        self.inner.run().await.result()
    }

    /// What health shows.
    pub fn report(&self) -> KeyCheckReport {
        let last = self
            .inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let key_arn = self.inner.key.to_string();
        let Some((outcome, at)) = last else {
            return KeyCheckReport {
                state: "pending",
                key_arn,
                code: None,
                reason: None,
                detail: None,
                checked_ago_ms: None,
            };
        };
        let ago = Some(at.elapsed().as_millis() as u64);
        match outcome {
            Outcome::Passed => KeyCheckReport {
                state: "passed",
                key_arn,
                code: None,
                reason: None,
                detail: None,
                checked_ago_ms: ago,
            },
            Outcome::Refused {
                error,
                reason,
                detail,
            } => KeyCheckReport {
                state: "refused",
                key_arn,
                code: Some(error.code()),
                reason: Some(reason),
                detail: Some(detail),
                checked_ago_ms: ago,
            },
            Outcome::Unavailable { error } => KeyCheckReport {
                state: "unavailable",
                key_arn,
                code: Some(error.code()),
                reason: None,
                detail: None,
                checked_ago_ms: ago,
            },
        }
    }
}

impl Drop for KeyChecker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Outcome {
    fn result(&self) -> Result<(), SealError> {
        match self {
            Outcome::Passed => Ok(()),
            Outcome::Refused { error, .. } | Outcome::Unavailable { error } => Err(*error),
        }
    }
}

async fn background(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        let outcome = {
            let _one = inner.flight.lock().await;
            inner.run().await
        };
        let pause = match outcome {
            Outcome::Unavailable { .. } => RETRY,
            _ => REFRESH,
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

impl Inner {
    /// The cached result when it may be relied on: a pass younger than [`MAX_AGE`], or a
    /// refusal younger than [`REFRESH`] (a rewrite back to a safe policy is seen by the next
    /// check). Unavailable results are never reused.
    fn fresh(&self) -> Option<Result<(), SealError>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((Outcome::Passed, at)) if at.elapsed() < MAX_AGE => Some(Ok(())),
            Some((refused @ Outcome::Refused { .. }, at)) if at.elapsed() < REFRESH => {
                Some(refused.result())
            }
            _ => None,
        }
    }

    fn completed_since(&self, since: Instant) -> Option<Result<(), SealError>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((outcome, at)) if *at >= since => Some(outcome.result()),
            _ => None,
        }
    }

    async fn run(&self) -> Outcome {
        let started = Instant::now();
        let outcome = self.check().await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let key_arn = self.key.as_str();
        match &outcome {
            Outcome::Passed => {
                tracing::debug!(key_arn, elapsed_ms, "KMS key policy check passed")
            }
            Outcome::Refused {
                error,
                reason,
                detail,
            } => tracing::error!(
                code = error.code(),
                reason,
                detail,
                key_arn,
                elapsed_ms,
                "KMS key refused: nothing will be sealed under it"
            ),
            Outcome::Unavailable { error } => tracing::warn!(
                code = error.code(),
                key_arn,
                elapsed_ms,
                "KMS key policy check could not complete"
            ),
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((outcome.clone(), Instant::now()));
        outcome
    }

    async fn check(&self) -> Outcome {
        let arn = self.key.as_str();
        let refused = |error, reason, detail: String| Outcome::Refused {
            error,
            reason,
            detail,
        };
        let kms_failed = |error: SealError| match error {
            SealError::Unavailable | SealError::Throttled => Outcome::Unavailable { error },
            // AccessDenied: the policy does not let the enclave read it (or the host lent
            // credentials of another account); NotFound: not this account's key. Either way
            // nothing may be sealed; the next check tries again.
            error => refused(
                error,
                "kms_refused",
                format!("KMS answered {}", error.code()),
            ),
        };
        let described = match self.client.describe_key().key_id(arn).send().await {
            Ok(out) => out,
            Err(e) => return kms_failed(super::errors::classify(&e).0),
        };
        let Some(meta) = described.key_metadata() else {
            return refused(
                SealError::KeyPolicyUnsafe,
                "metadata",
                "DescribeKey without KeyMetadata".into(),
            );
        };
        if let Err((error, reason, detail)) = check_metadata(meta, &self.key) {
            return refused(error, reason, detail);
        }
        let policy = match self
            .client
            .get_key_policy()
            .key_id(arn)
            .policy_name("default")
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return kms_failed(super::errors::classify(&e).0),
        };
        let Some(document) = policy.policy() else {
            return refused(
                SealError::KeyPolicyUnsafe,
                "malformed",
                "GetKeyPolicy without Policy".into(),
            );
        };
        if let Err(v) = policy::check(document, &self.rules) {
            return refused(SealError::KeyPolicyUnsafe, v.reason, v.to_string());
        }
        let grants = match self.client.list_grants().key_id(arn).send().await {
            Ok(out) => out,
            Err(e) => return kms_failed(super::errors::classify(&e).0),
        };
        if !grants.grants().is_empty() || grants.truncated() || grants.next_marker().is_some() {
            return refused(
                SealError::KeyPolicyUnsafe,
                "grants",
                format!(
                    "{} grant(s) on the key; a grant authorises outside the policy",
                    grants.grants().len().max(1)
                ),
            );
        }
        Outcome::Passed
    }
}

/// DescribeKey's checks (module table).
fn check_metadata(
    meta: &aws_sdk_kms::types::KeyMetadata,
    key: &KeyArn,
) -> Result<(), (SealError, &'static str, String)> {
    let unsafe_key = |reason, detail: String| Err((SealError::KeyPolicyUnsafe, reason, detail));
    if meta.arn() != Some(key.as_str()) {
        return Err((
            SealError::KeyMismatch,
            "arn",
            format!(
                "DescribeKey answered for {:?}",
                meta.arn().unwrap_or_default()
            ),
        ));
    }
    if meta.aws_account_id() != Some(key.account()) {
        return Err((
            SealError::KeyMismatch,
            "account",
            format!("account {:?}", meta.aws_account_id()),
        ));
    }
    match meta.key_state() {
        Some(KeyState::Enabled) => {}
        Some(KeyState::Disabled) => {
            return Err((SealError::KeyDisabled, "state", "Disabled".into()))
        }
        Some(KeyState::PendingDeletion) => {
            return Err((
                SealError::KeyPendingDeletion,
                "state",
                "PendingDeletion".into(),
            ))
        }
        other => return unsafe_key("state", format!("{other:?}")),
    }
    if meta.key_manager() != Some(&KeyManagerType::Customer) {
        return unsafe_key(
            "key_manager",
            "an AWS-managed key's policy is not ours".into(),
        );
    }
    if meta.origin() != Some(&OriginType::AwsKms) {
        // EXTERNAL: whoever imported the material holds a copy; custom key stores: the material
        // lives in a cluster or proxy the account controls.
        return unsafe_key("origin", format!("Origin {:?}", meta.origin()));
    }
    if meta.custom_key_store_id().is_some() || meta.cloud_hsm_cluster_id().is_some() {
        return unsafe_key("origin", "custom key store".into());
    }
    if meta.key_spec() != Some(&KeySpec::SymmetricDefault)
        || meta.key_usage() != Some(&KeyUsageType::EncryptDecrypt)
    {
        return unsafe_key(
            "key_spec",
            "not a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key".into(),
        );
    }
    if meta.multi_region() == Some(true) {
        // Replicas share the material under policies of their own, in regions this enclave's
        // endpoint does not reach: only a primary without replicas is checkable.
        let config = meta.multi_region_configuration();
        let primary =
            config.and_then(|c| c.multi_region_key_type()) == Some(&MultiRegionKeyType::Primary);
        let replicas = config.map_or(0, |c| c.replica_keys().len());
        if !primary || replicas > 0 {
            return unsafe_key(
                "multi_region",
                format!("multi-region key with {replicas} replica(s) or not the primary"),
            );
        }
    }
    Ok(())
}
