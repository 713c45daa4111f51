//! AWS credentials for signing KMS requests, from the parent.
//!
//! The enclave has no instance metadata service: the parent answers `ToParent::AwsCredentials` from
//! its own default credential chain (the instance role in production). [`SdkCredentials`] adapts a
//! [`CredentialSource`] to the SDK's `ProvideCredentials`, passing the expiry on, so the SDK's
//! identity cache fetches new credentials shortly before the old ones expire
//! ([`REFRESH_BEFORE_EXPIRY`]): a long-running enclave never stops decrypting after a few hours.
//! Credentials are only signing keys; KMS's key policy (PCR0 in the attestation document) is what
//! lets this enclave, and no other holder of the role, decrypt.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_sdk_kms::config::Credentials;
use vettid_protocol::{AwsCredentials, Response, ToParent};

use crate::parent::ParentLink;
use crate::sealing::BoxFuture;

/// How long to wait for the parent's answer.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);
/// The SDK's identity cache treats credentials as expired this long before they are (plus up to
/// half again of jitter). Instance-role credentials are replaced at least five minutes before they
/// expire, and the parent's own cache refreshes them shortly before expiry, so a minute leaves
/// room for a slow parent without refetching on every call.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
/// Name the SDK shows for these credentials.
pub const PROVIDER_NAME: &str = "vettid-parent";

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The parent could not be asked or answered an error.
    #[error(transparent)]
    Parent(#[from] crate::parent::ParentError),
    /// The parent answered something other than credentials.
    #[error("the parent answered an AwsCredentials request with another response")]
    UnexpectedResponse,
    /// The credentials are unusable (empty key id or secret).
    #[error("the parent sent empty AWS credentials")]
    Empty,
}

/// Where signing credentials come from: the parent in production, a fixed value in tests.
pub trait CredentialSource: Send + Sync + 'static {
    /// Fetches current credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<AwsCredentials, CredentialError>>;
}

/// Credentials from the parent over the link (`ToParent::AwsCredentials`).
#[derive(Clone)]
pub struct ParentCredentials {
    parent: ParentLink,
}

impl ParentCredentials {
    /// Asks over `parent`, whichever connection is up at the time of each fetch.
    pub fn new(parent: ParentLink) -> Self {
        Self { parent }
    }
}

impl CredentialSource for ParentCredentials {
    fn fetch(&self) -> BoxFuture<'_, Result<AwsCredentials, CredentialError>> {
        Box::pin(async move {
            match self
                .parent
                .request(ToParent::AwsCredentials, CREDENTIALS_TIMEOUT)
                .await?
            {
                Response::AwsCredentials(credentials) => Ok(credentials),
                _ => Err(CredentialError::UnexpectedResponse),
            }
        })
    }
}

/// A [`CredentialSource`] as the SDK's credentials provider.
#[derive(Clone)]
pub struct SdkCredentials {
    source: Arc<dyn CredentialSource>,
}

impl std::fmt::Debug for SdkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdkCredentials")
    }
}

impl SdkCredentials {
    /// Wraps `source`.
    pub fn new(source: Arc<dyn CredentialSource>) -> Self {
        Self { source }
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let fetched = self.source.fetch().await.map_err(|e| {
            tracing::warn!(code = "KMSUnavailable", error = %e, "no AWS credentials from the parent");
            CredentialsError::provider_error(e)
        })?;
        to_sdk(fetched).map_err(CredentialsError::invalid_configuration)
    }
}

impl ProvideCredentials for SdkCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// Wire credentials → SDK credentials, keeping the expiry.
///
/// # Errors
/// [`CredentialError::Empty`] for an empty key id or secret.
pub fn to_sdk(credentials: AwsCredentials) -> Result<Credentials, CredentialError> {
    let AwsCredentials {
        access_key_id,
        secret_access_key,
        session_token,
        expires_at_ms,
    } = credentials;
    if access_key_id.is_empty() || secret_access_key.is_empty() {
        return Err(CredentialError::Empty);
    }
    let expiry = expires_at_ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    Ok(Credentials::new(
        access_key_id,
        secret_access_key,
        session_token.filter(|t| !t.is_empty()),
        expiry,
        PROVIDER_NAME,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(expires_at_ms: Option<u64>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("token".into()),
            expires_at_ms,
        }
    }

    #[test]
    fn expiry_and_session_token_reach_the_sdk() {
        let sdk = to_sdk(creds(Some(1_700_000_000_123))).unwrap();
        assert_eq!(sdk.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(sdk.session_token(), Some("token"));
        assert_eq!(
            sdk.expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(to_sdk(creds(None)).unwrap().expiry(), None);
    }

    #[test]
    fn empty_credentials_are_refused() {
        let mut c = creds(None);
        c.secret_access_key.clear();
        assert!(matches!(to_sdk(c), Err(CredentialError::Empty)));
    }

    #[tokio::test]
    async fn without_a_parent_the_provider_fails_without_panicking() {
        let provider = SdkCredentials::new(Arc::new(ParentCredentials::new(ParentLink::default())));
        assert!(provider.provide_credentials().await.is_err());
    }
}
