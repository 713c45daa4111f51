//! The seam between the vault and KMS: how a vault's 32-byte material is created and recovered.
//!
//! The vault never sees KMS, HTTP or the tunnel; it asks a [`Sealer`] for fresh material (a KMS
//! data key whose plaintext only ever exists inside the enclave) and to recover material from the
//! stored KMS blob. The production implementation is [`crate::kms`]: `GenerateDataKey` and
//! `Decrypt` with an attested `Recipient`, so neither the parent nor KMS's HTTP reply carries the
//! plaintext. The encryption context binds every blob to its vault and purpose, so a blob copied
//! from one vault to another does not decrypt (KMS refuses it before the enclave sees anything).

use std::future::Future;
use std::pin::Pin;

use vettid_vault_crypto::Material;

/// A boxed future, so [`Sealer`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a sealed blob is bound to (sent as the KMS encryption context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealContext {
    /// The vault id (owner-space GUID).
    pub vault: String,
    /// What the material is for, e.g. [`SealContext::VAULT_MATERIAL`].
    pub purpose: &'static str,
}

impl SealContext {
    /// Purpose of a vault's root material.
    pub const VAULT_MATERIAL: &'static str = "vault-material-v2";

    /// The context for `vault`'s root material.
    pub fn vault_material(vault: &str) -> Self {
        Self {
            vault: vault.to_owned(),
            purpose: Self::VAULT_MATERIAL,
        }
    }

    /// Purpose of the fleet's attestation-key wrapping key ([`crate::fleet`]).
    pub const FLEET_ATTESTATION: &'static str = "fleet-attestation-key-v1";

    /// The context for the fleet key that wraps attestation keys.
    pub fn fleet_attestation() -> Self {
        Self {
            vault: "fleet".to_owned(),
            purpose: Self::FLEET_ATTESTATION,
        }
    }

    /// As KMS `EncryptionContext` pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 2] {
        [
            ("vettid:vault", &self.vault),
            ("vettid:purpose", self.purpose),
        ]
    }
}

/// Why sealing or unsealing failed. The codes are what operators grep for (DR runbook §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// KMS refused: the key policy does not allow this enclave (its PCR0 is not listed, or the
    /// attestation did not verify), or the credentials lack permission.
    #[error("KMS access denied")]
    AccessDenied,
    /// The KMS key is disabled.
    #[error("KMS key disabled")]
    KeyDisabled,
    /// The KMS key is scheduled for deletion.
    #[error("KMS key pending deletion")]
    KeyPendingDeletion,
    /// The KMS key does not exist.
    #[error("KMS key not found")]
    KeyNotFound,
    /// KMS says the blob is not valid for this key and context (tampered, or another vault's).
    #[error("KMS rejected the sealed blob")]
    InvalidCiphertext,
    /// The reply carried `Plaintext` instead of `CiphertextForRecipient` although a Recipient was
    /// sent: a downgrade by the parent or a KMS stand-in that ignores `Recipient`. Refused.
    #[error("KMS reply was not encrypted to the enclave (downgrade refused)")]
    Downgrade,
    /// The `CiphertextForRecipient` did not open with our fresh key.
    #[error("KMS reply could not be opened")]
    BadEnvelope,
    /// KMS throttled the call.
    #[error("KMS throttled the request")]
    Throttled,
    /// KMS, the tunnel or the credentials are unavailable for now (retryable).
    #[error("KMS unavailable")]
    Unavailable,
    /// No KMS is configured in this enclave.
    #[error("KMS not configured")]
    NotConfigured,
    /// A KMS response named another key than the configured key ARN (`KeyId`, or DescribeKey's
    /// `Arn`): the lent credentials reached a key this enclave was not built for. The response's
    /// material and blob are discarded.
    #[error("KMS answered for another key than the configured one")]
    KeyMismatch,
    /// The key's policy, grants or metadata would let something other than an attested enclave
    /// with a trusted PCR0 obtain vault material (see docs/VAULT.md, "The KMS key and its
    /// policy"), or could not be read: nothing is sealed under it.
    #[error("the KMS key's policy is not safe to seal under")]
    KeyPolicyUnsafe,
}

impl SealError {
    /// Stable code, in the reply's `code` and in logs.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::AccessDenied => "KMSAccessDenied",
            SealError::KeyDisabled => "KMSKeyDisabled",
            SealError::KeyPendingDeletion => "KMSKeyPendingDeletion",
            SealError::KeyNotFound => "KMSKeyNotFound",
            SealError::InvalidCiphertext => "KMSInvalidCiphertext",
            SealError::Downgrade => "KMSDowngradeRefused",
            SealError::BadEnvelope => "KMSBadEnvelope",
            SealError::Throttled => "KMSThrottled",
            SealError::Unavailable => "KMSUnavailable",
            SealError::NotConfigured => "KMSNotConfigured",
            SealError::KeyMismatch => "KMSKeyMismatch",
            SealError::KeyPolicyUnsafe => "KMSKeyPolicyUnsafe",
        }
    }
}

/// Creates and recovers vault material.
pub trait Sealer: Send + Sync + 'static {
    /// Fresh 32-byte material and the blob that recovers it under `context`.
    fn generate<'a>(
        &'a self,
        context: &'a SealContext,
    ) -> BoxFuture<'a, Result<(Material, Vec<u8>), SealError>>;

    /// The material `blob` seals under `context`.
    fn unseal<'a>(
        &'a self,
        blob: &'a [u8],
        context: &'a SealContext,
    ) -> BoxFuture<'a, Result<Material, SealError>>;

    /// The last check of the sealing key's policy, for health (`None`: this sealer has no key
    /// policy to check, like the unit tests' sealer).
    fn key_check(&self) -> Option<KeyCheckReport> {
        None
    }
}

/// What health shows about the sealing key's policy check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyCheckReport {
    /// `pending` (not yet checked), `passed`, `refused` (unsafe: no seal), `unavailable` (could
    /// not be read; seals wait for a successful check).
    pub state: &'static str,
    /// The key ARN checked.
    pub key_arn: String,
    /// The SealError code of a failed check (`KMSKeyPolicyUnsafe`, `KMSKeyMismatch`, …).
    pub code: Option<&'static str>,
    /// Stable reason (`unattested_action`, `origin`, …).
    pub reason: Option<&'static str>,
    /// What exactly (statement, action, principal); public policy text only.
    pub detail: Option<String>,
    /// Milliseconds since the last completed check.
    pub checked_ago_ms: Option<u64>,
}

/// A sealer for unit tests only: AES-GCM under a process-local key, context as AAD. It exists so
/// vault logic can be tested without a KMS; every end-to-end test uses the real KMS client
/// against the local KMS through the tunnel.
#[cfg(test)]
pub mod test_sealer {
    use super::*;
    use std::sync::Mutex;

    /// Test sealer with a switchable failure.
    pub struct TestSealer {
        key: [u8; 32],
        /// When set, every call fails with this error.
        pub fail: Mutex<Option<SealError>>,
    }

    impl Default for TestSealer {
        fn default() -> Self {
            let mut key = [0u8; 32];
            aws_lc_rs::rand::fill(&mut key).expect("rng");
            Self {
                key,
                fail: Mutex::new(None),
            }
        }
    }

    impl TestSealer {
        fn check(&self) -> Result<(), SealError> {
            match *self.fail.lock().unwrap() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }

        fn id<'a>(context: &'a SealContext) -> vettid_vault_crypto::ObjectId<'a> {
            vettid_vault_crypto::ObjectId {
                vault: &context.vault,
                name: context.purpose,
                version: 0,
            }
        }
    }

    impl Sealer for TestSealer {
        fn generate<'a>(
            &'a self,
            context: &'a SealContext,
        ) -> BoxFuture<'a, Result<(Material, Vec<u8>), SealError>> {
            Box::pin(async move {
                self.check()?;
                let m = Material::generate().map_err(|_| SealError::Unavailable)?;
                let blob =
                    vettid_vault_crypto::sealed::seal(&self.key, &Self::id(context), m.expose())
                        .map_err(|_| SealError::Unavailable)?;
                Ok((m, blob))
            })
        }

        fn unseal<'a>(
            &'a self,
            blob: &'a [u8],
            context: &'a SealContext,
        ) -> BoxFuture<'a, Result<Material, SealError>> {
            Box::pin(async move {
                self.check()?;
                let plain = vettid_vault_crypto::sealed::open(&self.key, &Self::id(context), blob)
                    .map_err(|_| SealError::InvalidCiphertext)?;
                let bytes: [u8; 32] = plain
                    .as_slice()
                    .try_into()
                    .map_err(|_| SealError::InvalidCiphertext)?;
                Ok(Material::from_bytes(bytes))
            })
        }
    }
}
