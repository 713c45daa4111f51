//! The service state: configuration, keys, the attestation policy, and the checks every operation shares
//! (key lookup, key state, the `Recipient` decision).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Deserialize;
use vettid_attestation::Policy;
use vettid_recipient::build_ciphertext_for_recipient;
use zeroize::Zeroizing;

use crate::config::{check_key_id, Config};
use crate::error::{KmsError, StartError};
use crate::store::{Key, KeyState, KeyStore};

/// The only `Recipient.KeyEncryptionAlgorithm` KMS defines.
pub const RECIPIENT_ALGORITHM: &str = "RSAES_OAEP_SHA_256";

/// The `Recipient` request field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recipient {
    /// Must be [`RECIPIENT_ALGORITHM`].
    pub key_encryption_algorithm: Option<String>,
    /// The NSM attestation document, base64.
    pub attestation_document: Option<String>,
}

/// How a plaintext leaves the server.
pub enum Delivery {
    /// In the clear, as `Plaintext` (no `Recipient`, or `--ignore-recipient`).
    Plaintext,
    /// As `CiphertextForRecipient`, to this RSA SubjectPublicKeyInfo from a verified document.
    ForRecipient(Vec<u8>),
}

/// Everything the operations need.
pub struct Kms {
    config: Config,
    store: KeyStore,
    /// Origin checks only; the PCR0 allow-list is ours (see [`Kms::delivery`]).
    attestation: Policy,
}

impl Kms {
    /// Loads the key file, creates the `--ensure-key` keys and builds the attestation policy.
    ///
    /// # Errors
    /// [`StartError`] when the key file or the attestation root is unusable.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let store = KeyStore::load(&config.key_file)?;
        for id in &config.ensure_keys {
            store
                .create(id, "created by --ensure-key", now_secs())
                .map_err(|e| StartError::KeyFile {
                    path: config.key_file.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        // The verifier's PCR sets need PCR0, PCR1 and PCR2 together; KMS key policies usually condition on PCR0
        // alone, and rolling upgrades need several values at once. So the verifier checks origin, signature,
        // chain, freshness and debug mode, and `delivery` applies the PCR0 allow-list itself.
        let mut attestation = Policy::skip_pcr_check_unsafe();
        if let Some(root) = &config.attestation_root_der {
            attestation = attestation
                .with_extra_root(root.clone())
                .map_err(|e| StartError::Config(vec![format!("--attestation-root: {e}")]))?;
        }
        Ok(Self {
            config,
            store,
            attestation,
        })
    }

    /// Where to listen (validated loopback address).
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        self.config.listen
    }

    /// The key store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub fn arn(&self, key_id: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{key_id}",
            self.config.region, self.config.account
        )
    }

    /// The account id in ARNs.
    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// The key named by a `KeyId` parameter (a key id or a key ARN; aliases are not supported).
    ///
    /// # Errors
    /// [`KmsError::NotFound`] for an unknown key, an alias or a malformed id.
    pub fn key(&self, key_id: &str) -> Result<Key, KmsError> {
        let prefix = format!(
            "arn:aws:kms:{}:{}:key/",
            self.config.region, self.config.account
        );
        let id = key_id.strip_prefix(&prefix).unwrap_or(key_id);
        let not_found = || KmsError::NotFound(format!("Key '{}' does not exist", self.arn(id)));
        if key_id.starts_with("alias/") || key_id.contains(":alias/") {
            return Err(KmsError::NotFound(format!(
                "Alias '{key_id}' is not found (the local KMS has no aliases)"
            )));
        }
        check_key_id(id).map_err(|_| not_found())?;
        self.store.get(id).ok_or_else(not_found)
    }

    /// Fails unless the key may be used for a cryptographic operation.
    ///
    /// # Errors
    /// [`KmsError::Disabled`] or [`KmsError::InvalidState`] (pending deletion), with KMS's messages.
    pub fn check_usable(&self, key: &Key) -> Result<(), KmsError> {
        let arn = self.arn(&key.record.key_id);
        match key.record.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            ))),
        }
    }

    /// Decides how the plaintext of this request leaves, enforcing the attestation policy.
    ///
    /// With a `Recipient`: the document must verify (trusted root, signature, chain, freshness, not debug), its
    /// PCR0 must be in the key's own allow-list or, if the key has none, the server's `--allow-pcr0` list (an
    /// empty list allows nothing), and it must carry a public key. Without one: refused when the server or the
    /// key requires attestation. `--ignore-recipient` skips all of this, as moto does.
    ///
    /// # Errors
    /// [`KmsError::AccessDenied`] for any policy failure; [`KmsError::Validation`] or
    /// [`KmsError::Serialization`] for a malformed `Recipient`.
    pub fn delivery(
        &self,
        recipient: Option<&Recipient>,
        key: Option<&Key>,
    ) -> Result<Delivery, KmsError> {
        if self.config.ignore_recipient {
            return Ok(Delivery::Plaintext);
        }
        let Some(recipient) = recipient else {
            if self.config.require_recipient || key.is_some_and(|k| k.record.require_recipient) {
                return Err(KmsError::AccessDenied(
                    "The key policy requires a Recipient attestation document".into(),
                ));
            }
            return Ok(Delivery::Plaintext);
        };
        if recipient.key_encryption_algorithm.as_deref() != Some(RECIPIENT_ALGORITHM) {
            return Err(KmsError::Validation(format!(
                "Recipient.KeyEncryptionAlgorithm must be {RECIPIENT_ALGORITHM}"
            )));
        }
        let document = recipient.attestation_document.as_deref().ok_or_else(|| {
            KmsError::Validation("Recipient.AttestationDocument is required".into())
        })?;
        let document = decode_b64(document, "Recipient.AttestationDocument")?;
        let verified = vettid_attestation::verify(&document, &self.attestation, now_ms())
            .map_err(|e| KmsError::AccessDenied(format!("Attestation document rejected: {e}")))?;

        let allowed = match key {
            Some(key) if !key.allowed_pcr0.is_empty() => &key.allowed_pcr0,
            _ => &self.config.allow_pcr0,
        };
        let pcr0 = verified
            .pcrs
            .get(&0)
            .ok_or_else(|| KmsError::AccessDenied("Attestation document has no PCR0".into()))?;
        if !allowed.iter().any(|value| value == pcr0) {
            return Err(KmsError::AccessDenied(format!(
                "PCR0 {} is not allowed by the key policy",
                hex::encode(pcr0)
            )));
        }
        let public_key = verified.public_key.ok_or_else(|| {
            KmsError::Validation("The attestation document carries no public_key".into())
        })?;
        Ok(Delivery::ForRecipient(public_key))
    }

    /// The response field carrying `plaintext`: `("Plaintext", b64)` or `("CiphertextForRecipient", b64)`.
    ///
    /// # Errors
    /// [`KmsError::Validation`] when the document's public key is not an RSA key the builder accepts.
    pub fn deliver(
        &self,
        delivery: &Delivery,
        plaintext: &[u8],
    ) -> Result<(&'static str, String), KmsError> {
        let b64 = &base64::engine::general_purpose::STANDARD;
        match delivery {
            Delivery::Plaintext => Ok(("Plaintext", b64.encode(plaintext))),
            Delivery::ForRecipient(spki) => {
                let envelope = build_ciphertext_for_recipient(spki, plaintext).map_err(|e| {
                    KmsError::Validation(format!("Attestation document public_key: {e}"))
                })?;
                Ok(("CiphertextForRecipient", b64.encode(envelope)))
            }
        }
    }
}

/// Decodes a base64 request field.
///
/// # Errors
/// [`KmsError::Serialization`] naming the field.
pub fn decode_b64(value: &str, field: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Serialization(format!("{field} is not valid base64")))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
