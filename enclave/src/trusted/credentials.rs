//! The table's signing credentials: sealed under the KMS key, opened only inside the enclave.
//!
//! The operator encrypts `{"access_key_id", "secret_access_key"[, "session_token"]}` with KMS
//! `Encrypt` under the vault key and the encryption context [`context`] (purpose
//! `trusted-store-credentials`, and the table ARN), and puts the ciphertext at
//! [`CREDENTIALS_OBJECT`] in the vault bucket. The enclave reads it through the parent's storage
//! relay (no new link message), `Decrypt`s it with an attested Recipient (so the plaintext leaves
//! KMS encrypted to this enclave and the host sees ciphertext only), and keeps the plaintext in
//! zeroized memory. The host can withhold or swap the object, but only for another ciphertext
//! under our key *and* this table's context: KMS refuses any other context, and the table ARN
//! is on the measured command line. What limits a swap is docs/VAULT.md's threat table.
//!
//! Re-read every [`REREAD_EVERY`] (rotation without a restart) and at once after the table
//! answers "unknown or denied credentials" ([`SealedCredentials::invalidate`]); loads are
//! serialised, so a burst of denied calls opens the blob once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use serde::Deserialize;
use vettid_protocol::{Response, StorageRequest, StorageResponse, ToParent};
use zeroize::{Zeroize, Zeroizing};

use crate::kms::Kms;
use crate::parent::ParentLink;
use crate::sealing::{BoxFuture, SealError};

/// Where the sealed credentials live in the vault bucket (a key the parent's rules accept).
pub const CREDENTIALS_OBJECT: &str = "vaults/_trusted-store/credentials.kms";
/// `vettid:purpose` of the sealed credentials.
pub const PURPOSE: &str = "trusted-store-credentials";
/// Credentials are re-read this often even when they keep working (rotation).
pub const REREAD_EVERY: Duration = Duration::from_secs(3600);
/// Largest sealed object accepted (a KMS ciphertext of a few hundred bytes).
pub const MAX_SEALED_LEN: usize = 8 * 1024;
/// Largest plaintext accepted (a session token is at most a few KiB).
pub const MAX_PLAINTEXT_LEN: usize = 4 * 1024;
/// Time for the storage read and the KMS call each.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Name the SDK shows for these credentials.
pub const PROVIDER_NAME: &str = "vettid-sealed";

/// The encryption context the credentials are sealed under.
pub fn context(table_arn: &str) -> [(&'static str, &str); 2] {
    [("vettid:purpose", PURPOSE), ("vettid:table", table_arn)]
}

/// Why the credentials could not be had (each is [`super::TrustedError::Credentials`]).
#[derive(Debug, thiserror::Error)]
pub enum CredentialsLoadError {
    /// No object at [`CREDENTIALS_OBJECT`].
    #[error("no sealed credentials at {CREDENTIALS_OBJECT}")]
    Missing,
    /// The storage relay failed.
    #[error("cannot read the sealed credentials: {0}")]
    Storage(String),
    /// Larger than [`MAX_SEALED_LEN`].
    #[error("the sealed credentials object is too large")]
    TooLarge,
    /// KMS would not open it (wrong key or context, policy, or KMS down).
    #[error("KMS did not open the sealed credentials: {}", .0.code())]
    Kms(SealError),
    /// The plaintext is not the expected JSON.
    #[error(
        "the sealed credentials are not {{access_key_id, secret_access_key[, session_token]}}"
    )]
    Malformed,
}

/// Reads the sealed object (the parent's storage relay in production).
pub trait SealedSource: Send + Sync + 'static {
    /// The ciphertext, `None` when there is none.
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, CredentialsLoadError>>;
}

/// Opens the ciphertext (the KMS client, with a Recipient, in production).
pub trait Opener: Send + Sync + 'static {
    /// The plaintext `blob` seals under `context`.
    fn open<'a>(
        &'a self,
        blob: &'a [u8],
        context: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, SealError>>;
}

impl Opener for Kms {
    fn open<'a>(
        &'a self,
        blob: &'a [u8],
        context: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, SealError>> {
        Box::pin(self.decrypt_bytes(blob, context, MAX_PLAINTEXT_LEN))
    }
}

/// The sealed object through the parent's storage relay (`StorageRequest::Get`).
#[derive(Clone)]
pub struct ParentObject {
    parent: ParentLink,
}

impl ParentObject {
    /// Reads through `parent`, whichever connection is up.
    pub fn new(parent: ParentLink) -> Self {
        Self { parent }
    }
}

impl SealedSource for ParentObject {
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, CredentialsLoadError>> {
        Box::pin(async move {
            let request = ToParent::Storage(StorageRequest::Get {
                key: CREDENTIALS_OBJECT.into(),
            });
            match self.parent.request(request, LOAD_TIMEOUT).await {
                Ok(Response::Storage(StorageResponse::Object { body, .. })) => {
                    if body.len() > MAX_SEALED_LEN {
                        return Err(CredentialsLoadError::TooLarge);
                    }
                    Ok(Some(body.to_vec()))
                }
                Ok(Response::Storage(StorageResponse::NotFound)) => Ok(None),
                Ok(_) => Err(CredentialsLoadError::Storage(
                    "the parent answered with another response".into(),
                )),
                Err(e) => Err(CredentialsLoadError::Storage(e.to_string())),
            }
        })
    }
}

/// The credentials JSON (its strings are wiped when dropped).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.access_key_id.zeroize();
        self.secret_access_key.zeroize();
        if let Some(t) = self.session_token.as_mut() {
            t.zeroize();
        }
    }
}

/// Parses the opened plaintext into SDK credentials.
///
/// # Errors
/// [`CredentialsLoadError::Malformed`] for anything but the documented JSON with non-empty,
/// printable-ASCII key id and secret.
pub fn parse(plaintext: &[u8]) -> Result<Credentials, CredentialsLoadError> {
    let plain: Plain =
        serde_json::from_slice(plaintext).map_err(|_| CredentialsLoadError::Malformed)?;
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !printable(&plain.access_key_id)
        || !printable(&plain.secret_access_key)
        || plain
            .session_token
            .as_deref()
            .is_some_and(|t| !printable(t))
    {
        return Err(CredentialsLoadError::Malformed);
    }
    Ok(Credentials::new(
        plain.access_key_id.clone(),
        plain.secret_access_key.clone(),
        plain.session_token.clone(),
        None,
        PROVIDER_NAME,
    ))
}

struct Cached {
    credentials: Credentials,
    loaded: Instant,
}

/// The credentials, cached; see the module docs.
pub struct SealedCredentials {
    source: Arc<dyn SealedSource>,
    opener: Arc<dyn Opener>,
    table_arn: String,
    cached: Mutex<Option<Cached>>,
    loading: tokio::sync::Mutex<()>,
}

impl SealedCredentials {
    /// Credentials for `table_arn`, read from `source` and opened by `opener`.
    pub fn new(source: Arc<dyn SealedSource>, opener: Arc<dyn Opener>, table_arn: &str) -> Self {
        Self {
            source,
            opener,
            table_arn: table_arn.to_owned(),
            cached: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| c.loaded.elapsed() < REREAD_EVERY)
            .map(|c| c.credentials.clone())
    }

    /// The current credentials: cached, or read and opened now.
    ///
    /// # Errors
    /// [`CredentialsLoadError`] (logged once per failed load with its reason, never the plaintext).
    pub async fn current(&self) -> Result<Credentials, CredentialsLoadError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.loading.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let loaded = self.load().await;
        match &loaded {
            Ok(credentials) => {
                tracing::info!(
                    access_key_id = credentials.access_key_id(),
                    "trusted store credentials opened"
                );
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
                    credentials: credentials.clone(),
                    loaded: Instant::now(),
                });
            }
            Err(e) => tracing::error!(
                code = "TrustedStoreCredentials",
                error = %e,
                "cannot open the trusted store's sealed credentials"
            ),
        }
        loaded
    }

    async fn load(&self) -> Result<Credentials, CredentialsLoadError> {
        let blob = tokio::time::timeout(LOAD_TIMEOUT, self.source.fetch())
            .await
            .map_err(|_| CredentialsLoadError::Storage("timed out".into()))??
            .ok_or(CredentialsLoadError::Missing)?;
        if blob.len() > MAX_SEALED_LEN {
            return Err(CredentialsLoadError::TooLarge);
        }
        let context = context(&self.table_arn);
        let plaintext = tokio::time::timeout(LOAD_TIMEOUT, self.opener.open(&blob, &context))
            .await
            .map_err(|_| CredentialsLoadError::Kms(SealError::Unavailable))?
            .map_err(CredentialsLoadError::Kms)?;
        parse(&plaintext)
    }

    /// Forgets the cached credentials: the next call reads and opens the object again (after
    /// the table refused them, or an operator rotated them).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether credentials are loaded now (for health).
    pub fn loaded(&self) -> bool {
        self.fresh().is_some()
    }
}

/// [`SealedCredentials`] as the SDK's credentials provider.
#[derive(Clone)]
pub(crate) struct SdkProvider(pub(crate) Arc<SealedCredentials>);

impl std::fmt::Debug for SdkProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedCredentials")
    }
}

impl ProvideCredentials for SdkProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.0
                .current()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_json_parses_and_nothing_else_does() {
        let c = parse(br#"{"access_key_id":"AKIAX","secret_access_key":"s3cr3t"}"#).unwrap();
        assert_eq!(c.access_key_id(), "AKIAX");
        assert_eq!(c.secret_access_key(), "s3cr3t");
        assert_eq!(c.session_token(), None);
        let c = parse(br#"{"access_key_id":"ASIAX","secret_access_key":"s","session_token":"t"}"#)
            .unwrap();
        assert_eq!(c.session_token(), Some("t"));
        for bad in [
            &b""[..],
            b"null",
            b"{}",
            br#"{"access_key_id":"","secret_access_key":"s"}"#,
            br#"{"access_key_id":"A","secret_access_key":"with space"}"#,
            br#"{"access_key_id":"A","secret_access_key":"s","extra":1}"#,
            br#"{"access_key_id":"A"}"#,
            br#"{"access_key_id":1,"secret_access_key":"s"}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(CredentialsLoadError::Malformed)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_context_binds_purpose_and_table() {
        let arn = "arn:aws:dynamodb:us-east-1:111122223333:table/t1";
        assert_eq!(
            context(arn),
            [
                ("vettid:purpose", "trusted-store-credentials"),
                ("vettid:table", arn)
            ]
        );
    }
}
