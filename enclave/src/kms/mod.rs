//! The enclave's KMS client: the production [`Sealer`].
//!
//! ```text
//!  vault ─▶ Kms (Sealer) ─▶ aws-sdk-kms ─TLS─▶ 127.0.0.1:P (forward) ═ parent tunnel ═▶ KMS
//!            │ fresh RSA key + NSM document (Recipient)      resolver: KMS host → 127.0.0.1 only
//!            └ opens CiphertextForRecipient (vettid-recipient)
//! ```
//!
//! - `GenerateDataKey` and `Decrypt` always carry an attested `Recipient` (a fresh RSA-2048 key per
//!   call), so the data key leaves KMS encrypted to this enclave; a reply with `Plaintext` is a
//!   downgrade and refused ([`SealError::Downgrade`]).
//! - TLS terminates here, verified for the real KMS host name against roots compiled into the
//!   image; the parent relays bytes through its tunnel ([`forward`]) and sees ciphertext only.
//! - Requests are signed with credentials fetched from the parent ([`credentials`]) and refreshed
//!   before they expire; the encryption context binds each blob to its vault and purpose.
//! - The key is named by its full ARN ([`arn`]); every response's `KeyId` must equal it, or the
//!   reply is refused whole ([`SealError::KeyMismatch`]) and its material and blob discarded:
//!   the credentials are the host's, and an alias or bare id would resolve in the host's account.
//! - Nothing is sealed before the key's metadata, policy and grants pass the self-check
//!   ([`key_check`], rules in [`policy`]).
//! - Every call has a timeout and the SDK's standard retries; failures map to typed
//!   [`SealError`]s whose codes are logged with the operation and key id, never key material.
//!
//! Ports: the SDK connects to `https://HOST:P` where `P` is the forwarder's port. In production
//! that is the endpoint's own port (443), so requests look exactly as they would outside an
//! enclave. `--kms-forward-port 0` binds any free port first and builds the URL with it (dev and
//! tests, where the local KMS already holds the endpoint's port on the same loopback); the tunnel
//! preamble always names the endpoint's real `HOST:PORT`.

pub mod arn;
pub mod config;
pub mod credentials;
pub mod errors;
pub mod forward;
pub mod http;
pub mod key_check;
pub mod policy;
pub mod recipient_flow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, IdentityCache, Region, SharedCredentialsProvider};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use vettid_nsm::Nsm;
use vettid_vault_crypto::Material;

pub use arn::{ArnError, KeyArn};
pub use config::{Endpoint, KmsConfig, KmsFlags};
pub use credentials::{CredentialError, CredentialSource, ParentCredentials};
pub use forward::Forwarder;

use crate::sealing::{BoxFuture, KeyCheckReport, SealContext, SealError, Sealer};
use recipient_flow::Recipient;

/// Budget for one KMS operation, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Budget for one attempt (TLS handshake through the tunnel included).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to open the TCP connection to the forwarder (local; the tunnel is inside the attempt).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per operation (the SDK's standard retry: throttling, 5xx and I/O errors, backed off).
pub const MAX_ATTEMPTS: u32 = 3;

/// Why the KMS client could not start.
#[derive(Debug, thiserror::Error)]
pub enum KmsStartError {
    /// The forwarder could not bind its loopback port.
    #[error("cannot bind the KMS forwarder on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client's TLS context could not be built.
    #[error("cannot build the KMS HTTP client: {0}")]
    Http(String),
    /// The NSM could not report this enclave's PCR0 (the policy check needs it).
    #[error("cannot read this enclave's PCR0 from the NSM: {0}")]
    Pcr0(String),
}

/// The KMS client (see the module docs). Holds the forwarder; dropping it stops forwarding.
pub struct Kms {
    client: aws_sdk_kms::Client,
    key_id: KeyArn,
    checker: key_check::KeyChecker,
    nsm: Arc<dyn Nsm>,
    forwarder: Forwarder,
    endpoint_url: String,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("endpoint_url", &self.endpoint_url)
            .field("key_id", &self.key_id)
            .field("forwarder", &self.forwarder.local_addr())
            .finish()
    }
}

impl Kms {
    /// Binds the forwarder and builds the SDK client. Must run inside the tokio runtime.
    ///
    /// # Errors
    /// [`KmsStartError`] when the forwarder cannot bind or the client cannot be built.
    pub async fn start(
        config: KmsConfig,
        nsm: Arc<dyn Nsm>,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, KmsStartError> {
        let endpoint = &config.endpoint;
        let http::Route {
            forwarder,
            url: endpoint_url,
            http,
        } = http::route(
            forward::Service::KMS,
            (&endpoint.host, endpoint.port),
            config.forward_port,
            config.tunnel.clone(),
            config.extra_ca_pem.as_deref(),
        )
        .await
        .map_err(|e| match e {
            http::RouteError::Bind { port, source } => KmsStartError::Bind { port, source },
            http::RouteError::Http(e) => KmsStartError::Http(e),
        })?;
        let rules = policy_rules(&config, nsm.clone()).await?;
        let sdk_config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(&endpoint_url)
            .http_client(http)
            .credentials_provider(SharedCredentialsProvider::new(
                credentials::SdkCredentials::new(credentials),
            ))
            .identity_cache(
                IdentityCache::lazy()
                    .buffer_time(credentials::REFRESH_BEFORE_EXPIRY)
                    .load_timeout(credentials::CREDENTIALS_TIMEOUT + Duration::from_secs(1))
                    .build(),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build();
        tracing::info!(
            endpoint = %endpoint.authority(),
            forward = %forwarder.local_addr(),
            tunnel = %config.tunnel,
            key_id = %config.key_id,
            "KMS client ready"
        );
        let client = aws_sdk_kms::Client::from_conf(sdk_config);
        let checker = key_check::KeyChecker::start(client.clone(), config.key_id.clone(), rules);
        Ok(Self {
            client,
            key_id: config.key_id,
            checker,
            nsm,
            forwarder,
            endpoint_url,
        })
    }

    /// The URL the SDK calls (`https://HOST[:forwarder port]`).
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// The forwarder's loopback address.
    pub fn forward_addr(&self) -> std::net::SocketAddr {
        self.forwarder.local_addr()
    }

    /// Whether the forwarder is still accepting (for health reporting).
    pub fn is_healthy(&self) -> bool {
        self.forwarder.is_running()
    }

    /// The key policy self-check's last result (also in `enclave.health`).
    pub fn key_check_report(&self) -> KeyCheckReport {
        self.checker.report()
    }

    /// Runs the key policy self-check now (tests and measurements; seals use the cached result).
    ///
    /// # Errors
    /// The check's [`SealError`].
    pub async fn check_key_now(&self) -> Result<(), SealError> {
        self.checker.recheck().await
    }

    /// Refuses a reply that names another key than ours; its contents are dropped unread.
    fn check_key_id(&self, operation: &'static str, key_id: Option<&str>) -> Result<(), SealError> {
        if self.key_id.matches(key_id) {
            return Ok(());
        }
        tracing::error!(
            code = SealError::KeyMismatch.code(),
            operation,
            expected = %self.key_id,
            answered = key_id.unwrap_or("<none>"),
            "KMS answered for another key: reply discarded"
        );
        Err(SealError::KeyMismatch)
    }

    /// `GenerateDataKey` (AES_256) with a Recipient: fresh material and the blob that recovers it.
    ///
    /// # Errors
    /// The typed [`SealError`] (see [`errors`]).
    pub async fn generate_data_key(
        &self,
        context: &SealContext,
    ) -> Result<(Material, Vec<u8>), SealError> {
        const OP: &str = "GenerateDataKey";
        let result = async {
            self.checker.ensure().await?;
            let recipient = Recipient::fresh(self.nsm.clone()).await?;
            let mut request = self
                .client
                .generate_data_key()
                .key_id(self.key_id.as_str())
                .key_spec(DataKeySpec::Aes256)
                .recipient(recipient.info());
            for (k, v) in context.pairs() {
                request = request.encryption_context(k, v);
            }
            let out = request.send().await.map_err(|e| self.failed(OP, &e))?;
            self.check_key_id(OP, out.key_id())?;
            let blob = out
                .ciphertext_blob()
                .filter(|b| !b.as_ref().is_empty())
                .map(|b| b.as_ref().to_vec())
                .ok_or(SealError::BadEnvelope)?;
            let material = recipient
                .open(out.plaintext(), out.ciphertext_for_recipient())
                .await?;
            Ok((material, blob))
        };
        self.logged(OP, result).await
    }

    /// `Decrypt` with a Recipient: the material `blob` seals under `context`.
    ///
    /// # Errors
    /// The typed [`SealError`] (see [`errors`]).
    pub async fn decrypt(&self, blob: &[u8], context: &SealContext) -> Result<Material, SealError> {
        let result = async {
            let (recipient, out) = self.decrypt_for_recipient(blob, &context.pairs()).await?;
            recipient
                .open(out.plaintext(), out.ciphertext_for_recipient())
                .await
        };
        self.logged("Decrypt", result).await
    }

    /// `Decrypt` with a Recipient of a blob that is not a data key (the trusted store's sealed
    /// credentials): its plaintext, at most `max_len` bytes, zeroized on drop. `context` is the
    /// exact encryption context the blob was made with; KMS refuses any other.
    ///
    /// # Errors
    /// The typed [`SealError`] (see [`errors`]).
    pub async fn decrypt_bytes(
        &self,
        blob: &[u8],
        context: &[(&str, &str)],
        max_len: usize,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SealError> {
        let result = async {
            let (recipient, out) = self.decrypt_for_recipient(blob, context).await?;
            recipient
                .open_bytes(out.plaintext(), out.ciphertext_for_recipient(), max_len)
                .await
        };
        self.logged("Decrypt", result).await
    }

    /// The common part of both decrypts: `Decrypt` of `blob` under `context` for a fresh
    /// Recipient, the answer's key id checked. The caller opens what it holds.
    async fn decrypt_for_recipient(
        &self,
        blob: &[u8],
        context: &[(&str, &str)],
    ) -> Result<(Recipient, aws_sdk_kms::operation::decrypt::DecryptOutput), SealError> {
        let recipient = Recipient::fresh(self.nsm.clone()).await?;
        let mut request = self
            .client
            .decrypt()
            .key_id(self.key_id.as_str())
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .recipient(recipient.info());
        for (k, v) in context {
            request = request.encryption_context(*k, *v);
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.failed("Decrypt", &e))?;
        self.check_key_id("Decrypt", out.key_id())?;
        Ok((recipient, out))
    }

    /// Runs one KMS operation and logs its outcome and duration.
    async fn logged<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, SealError>>,
    ) -> Result<T, SealError> {
        let started = Instant::now();
        let result = call.await;
        self.log(operation, started, result.as_ref().map(|_| ()));
        result
    }

    /// Maps and logs a failed SDK call (the full error stays in the enclave's own log).
    fn failed<E, R>(&self, operation: &'static str, err: &SdkError<E, R>) -> SealError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (seal, reason) = errors::classify(err);
        tracing::debug!(
            operation,
            reason,
            kms_code = err.code().unwrap_or_default(),
            error = %DisplayErrorContext(err),
            "KMS call failed"
        );
        seal
    }

    fn log(&self, operation: &'static str, started: Instant, result: Result<(), &SealError>) {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                tracing::debug!(operation, key_id = %self.key_id, elapsed_ms, "KMS call done")
            }
            Err(e @ (SealError::Unavailable | SealError::Throttled)) => tracing::warn!(
                code = e.code(),
                operation,
                key_id = %self.key_id,
                elapsed_ms,
                "KMS call failed"
            ),
            Err(e) => tracing::error!(
                code = e.code(),
                operation,
                key_id = %self.key_id,
                elapsed_ms,
                "KMS call failed"
            ),
        }
    }
}

impl Sealer for Kms {
    fn generate<'a>(
        &'a self,
        context: &'a SealContext,
    ) -> BoxFuture<'a, Result<(Material, Vec<u8>), SealError>> {
        Box::pin(self.generate_data_key(context))
    }

    fn unseal<'a>(
        &'a self,
        blob: &'a [u8],
        context: &'a SealContext,
    ) -> BoxFuture<'a, Result<Material, SealError>> {
        Box::pin(self.decrypt(blob, context))
    }

    fn key_check(&self) -> Option<KeyCheckReport> {
        Some(self.checker.report())
    }
}

/// The policy check's rules: the key's account and partition, and the PCR0s trusted to decrypt
/// (this enclave's own, read from the NSM, and `--kms-policy-pcr0`).
async fn policy_rules(
    config: &KmsConfig,
    nsm: Arc<dyn Nsm>,
) -> Result<policy::Rules, KmsStartError> {
    let described = tokio::task::spawn_blocking(move || nsm.describe())
        .await
        .map_err(|e| KmsStartError::Pcr0(e.to_string()))?
        .map_err(|e| KmsStartError::Pcr0(e.to_string()))?;
    let own = described
        .pcrs
        .get(&0)
        .ok_or_else(|| KmsStartError::Pcr0("no PCR0".into()))?;
    let mut trusted_pcr0: std::collections::BTreeSet<String> =
        config.policy_pcr0.iter().cloned().collect();
    trusted_pcr0.insert(hex::encode(own));
    Ok(policy::Rules {
        key_arn: config.key_id.to_string(),
        partition: config.key_id.partition().to_owned(),
        account: config.key_id.account().to_owned(),
        trusted_pcr0,
    })
}

#[cfg(test)]
mod tests;
