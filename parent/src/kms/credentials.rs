//! AWS credentials for the enclave's own KMS client ([`ToParent::AwsCredentials`]).
//!
//! The enclave signs its KMS calls itself, with the parent's credentials: the instance role in
//! production (IMDSv2), static environment variables in dev. Handing them over teaches the
//! parent nothing; what it cannot do is read KMS's answers, which are encrypted to a key that
//! never leaves the enclave. They are still secrets on this host: they are never logged (the
//! protocol type's `Debug` redacts them) and never put in an error.
//!
//! The source wraps an injectable [`SharedCredentialsProvider`] (tests pass static credentials).
//! It keeps the last credentials and reuses them while they have more than
//! [`REFRESH_BEFORE_EXPIRY`] to live: aws-config's default chain does *not* cache by itself
//! (caching lives in each SDK client's identity cache), so without this every enclave request
//! would cost two IMDS round trips and could run into IMDS throttling.
//!
//! [`ToParent::AwsCredentials`]: vettid_protocol::ToParent::AwsCredentials

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use vettid_protocol::{AwsCredentials, ErrorCode, Response, WireError};

use crate::metrics::{CredentialsOutcome, Metrics};

/// Bound of one credential lookup (IMDS answers in milliseconds; its own client retries inside
/// this). Also never past the enclave's deadline.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);

/// Cached credentials are served only while they live at least this much longer. IMDS offers
/// rotated role credentials well before the old ones expire, and the enclave's client refreshes
/// shortly before expiry, so inside this window every request goes back to the provider.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// What the enclave is told when the parent has no `[kms]` section.
pub const NOT_CONFIGURED: &str = "kms not configured on the parent";

/// Why the credential source could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialSourceError {
    /// The loaded AWS configuration has no credentials provider.
    #[error("the default AWS configuration has no credentials provider")]
    NoProvider,
}

/// Where the enclave's AWS credentials come from.
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Shows no credentials, cached or otherwise.
impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// A source over `provider`.
    pub fn new(provider: SharedCredentialsProvider, metrics: Arc<Metrics>) -> Self {
        Self {
            provider,
            cached: tokio::sync::Mutex::new(None),
            timeout: CREDENTIALS_TIMEOUT,
            metrics,
        }
    }

    /// A source over aws-config's default chain: environment, profile, web identity, ECS, and the
    /// instance role through IMDSv2. Nothing is fetched yet.
    ///
    /// # Errors
    /// [`CredentialSourceError::NoProvider`] if the loaded configuration has none.
    pub async fn from_default_chain(metrics: Arc<Metrics>) -> Result<Self, CredentialSourceError> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let provider = shared
            .credentials_provider()
            .ok_or(CredentialSourceError::NoProvider)?;
        Ok(Self::new(provider, metrics))
    }

    /// Current credentials in the protocol's shape; `deadline` is when the enclave stops waiting.
    ///
    /// # Errors
    /// [`ErrorCode::Unavailable`] when the provider fails or times out. The message is bland;
    /// the provider's own error is logged here.
    pub async fn fetch(&self, deadline: Option<Instant>) -> Result<AwsCredentials, WireError> {
        let limit = deadline.map_or(self.timeout, |d| {
            self.timeout
                .min(d.saturating_duration_since(Instant::now()))
        });
        let result = match tokio::time::timeout(limit, self.current()).await {
            Ok(Ok(creds)) => Ok(to_wire(&creds)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot get AWS credentials for the enclave");
                Err("aws credentials unavailable")
            }
            Err(_) => {
                tracing::warn!(?limit, "AWS credentials lookup timed out");
                Err("aws credentials lookup timed out")
            }
        };
        match result {
            Ok(creds) => {
                self.metrics
                    .aws_credentials(CredentialsOutcome::Ok, creds.expires_at_ms);
                let expires_in_s = creds
                    .expires_at_ms
                    .map(|at| at.saturating_sub(unix_ms(SystemTime::now())) / 1000);
                tracing::info!(?expires_in_s, "AWS credentials served to the enclave");
                Ok(creds)
            }
            Err(message) => {
                self.metrics
                    .aws_credentials(CredentialsOutcome::Error, None);
                Err(WireError::new(ErrorCode::Unavailable, message))
            }
        }
    }

    /// The cached credentials if still fresh, else new ones from the provider. The lock makes
    /// concurrent requests share one lookup.
    async fn current(
        &self,
    ) -> Result<Credentials, aws_credential_types::provider::error::CredentialsError> {
        let mut cached = self.cached.lock().await;
        let fresh_until = SystemTime::now() + REFRESH_BEFORE_EXPIRY;
        if let Some(c) = cached.as_ref() {
            if c.expiry().is_none_or(|e| e > fresh_until) {
                return Ok(c.clone());
            }
        }
        let creds = self.provider.provide_credentials().await?;
        *cached = Some(creds.clone());
        Ok(creds)
    }
}

/// Answers [`vettid_protocol::ToParent::AwsCredentials`]: from `source` when the parent has a
/// `[kms]` section, else a clear [`ErrorCode::Unavailable`] ([`NOT_CONFIGURED`]).
///
/// # Errors
/// As [`CredentialSource::fetch`], or the not-configured error.
pub async fn answer(
    source: Option<&CredentialSource>,
    deadline: Option<Instant>,
) -> Result<Response, WireError> {
    match source {
        Some(source) => source.fetch(deadline).await.map(Response::AwsCredentials),
        None => Err(WireError::new(ErrorCode::Unavailable, NOT_CONFIGURED)),
    }
}

fn to_wire(c: &Credentials) -> AwsCredentials {
    AwsCredentials {
        access_key_id: c.access_key_id().to_owned(),
        secret_access_key: c.secret_access_key().to_owned(),
        session_token: c.session_token().map(str::to_owned),
        expires_at_ms: c.expiry().map(unix_ms),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
