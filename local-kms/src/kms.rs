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
use crate::policy;
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

/// Who sent a request: the account its access key id maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// 12-digit account id.
    pub account: String,
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
        for (id, account) in &config.ensure_keys {
            store
                .create(
                    id,
                    "created by --ensure-key",
                    now_secs(),
                    account.as_deref(),
                    None,
                )
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

    /// The account a request signed with `access_key_id` comes from (`--credential-account`, else the
    /// server's account).
    pub fn caller(&self, access_key_id: Option<&str>) -> Caller {
        let account = access_key_id
            .and_then(|akid| {
                self.config
                    .credential_accounts
                    .iter()
                    .find(|(id, _)| id == akid)
                    .map(|(_, account)| account.clone())
            })
            .unwrap_or_else(|| self.config.account.clone());
        Caller { account }
    }

    /// The account `key` lives in.
    pub fn key_account<'a>(&'a self, key: &'a Key) -> &'a str {
        key.record
            .account
            .as_deref()
            .unwrap_or(&self.config.account)
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub fn arn(&self, key: &Key) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{}",
            self.config.region,
            self.key_account(key),
            key.record.key_id
        )
    }

    /// The `KeyId` responses carry: the key's ARN, unless `--misreport-key-id` says otherwise.
    pub fn answered_key_id(&self, key: &Key) -> String {
        self.config
            .misreport_key_id
            .clone()
            .unwrap_or_else(|| self.arn(key))
    }

    /// The account id in ARNs.
    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// The key named by a `KeyId` parameter, as AWS resolves it: a key ARN or alias ARN names its account;
    /// a bare key id or an `alias/…` name resolves in the caller's account.
    ///
    /// # Errors
    /// [`KmsError::NotFound`] for an unknown key or alias, or a malformed id.
    pub fn key(&self, key_id: &str, caller: &Caller) -> Result<Key, KmsError> {
        let not_found = || KmsError::NotFound(format!("Key '{key_id}' does not exist"));
        let (account, name) = match key_id.strip_prefix("arn:aws:kms:") {
            Some(rest) => {
                let parts: Vec<&str> = rest.splitn(3, ':').collect();
                let [region, account, name] = parts[..] else {
                    return Err(not_found());
                };
                if region != self.config.region {
                    return Err(not_found());
                }
                (account.to_owned(), name)
            }
            None => (caller.account.clone(), key_id),
        };
        let in_account = |k: &Key| self.key_account(k) == account;
        if let Some(alias) = name.strip_prefix("alias/") {
            let alias = format!("alias/{alias}");
            return self
                .store
                .all()
                .into_iter()
                .find(|k| in_account(k) && k.record.aliases.contains(&alias))
                .ok_or_else(|| KmsError::NotFound(format!("Alias '{alias}' is not found")));
        }
        let id = name.strip_prefix("key/").unwrap_or(name);
        if key_id.starts_with("arn:") && !name.starts_with("key/") {
            return Err(not_found());
        }
        check_key_id(id).map_err(|_| not_found())?;
        self.store.get(id).filter(in_account).ok_or_else(not_found)
    }

    /// The key's policy document: as stored, or the default one (`policy::default_policy`).
    pub fn policy_of(&self, key: &Key) -> String {
        if let Some(policy) = &key.record.policy {
            return policy.clone();
        }
        let allowed: Vec<String> = if key.allowed_pcr0.is_empty() {
            self.config.allow_pcr0.iter().map(hex::encode).collect()
        } else {
            key.allowed_pcr0.iter().map(hex::encode).collect()
        };
        policy::default_policy(
            self.key_account(key),
            &allowed,
            self.config.require_recipient || key.record.require_recipient,
        )
    }

    /// Fails unless the key's policy allows `action` for `caller` without attestation (key management).
    ///
    /// # Errors
    /// [`KmsError::AccessDenied`].
    pub fn authorize(&self, key: &Key, action: &str, caller: &Caller) -> Result<(), KmsError> {
        self.evaluate(key, action, caller, None)
    }

    fn evaluate(
        &self,
        key: &Key,
        action: &str,
        caller: &Caller,
        pcr0: Option<&str>,
    ) -> Result<(), KmsError> {
        // moto ignores key policies as it ignores Recipient.
        if self.config.ignore_recipient {
            return Ok(());
        }
        let request = policy::Request {
            action,
            caller_account: &caller.account,
            pcr0,
        };
        if policy::allows(&self.policy_of(key), &request) {
            return Ok(());
        }
        let why = match pcr0 {
            Some(pcr0) => {
                format!(" with PCR0 {pcr0} (PCR0 {pcr0} is not allowed by the key policy)")
            }
            None => " without a Recipient attestation document".to_owned(),
        };
        Err(KmsError::AccessDenied(format!(
            "User: arn:aws:iam::{}:root is not authorized to perform: {action} on resource: {}{why}: no statement of the key policy allows it",
            caller.account,
            self.arn(key)
        )))
    }

    /// Fails unless the key may be used for a cryptographic operation.
    ///
    /// # Errors
    /// [`KmsError::Disabled`] or [`KmsError::InvalidState`] (pending deletion), with KMS's messages.
    pub fn check_usable(&self, key: &Key) -> Result<(), KmsError> {
        let arn = self.arn(key);
        match key.record.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            ))),
        }
    }

    /// Decides how the plaintext of `action` on `key` leaves, enforcing the key policy.
    ///
    /// With a `Recipient`, the document must verify (trusted root, signature, chain, freshness, not debug)
    /// and carry a public key; its PCR0 is the `kms:RecipientAttestation:PCR0` the policy sees, and the
    /// plaintext leaves as `CiphertextForRecipient`. Without one the policy sees no attestation and the
    /// plaintext leaves as `Plaintext`. `--ignore-recipient` treats every request as one without, as moto
    /// does. Without a key (GenerateRandom) the server's `--allow-pcr0` list applies to a `Recipient`.
    ///
    /// # Errors
    /// [`KmsError::AccessDenied`] for any policy failure; [`KmsError::Validation`] or
    /// [`KmsError::Serialization`] for a malformed `Recipient`.
    pub fn delivery(
        &self,
        recipient: Option<&Recipient>,
        target: Option<(&Key, &str, &Caller)>,
    ) -> Result<Delivery, KmsError> {
        let recipient = if self.config.ignore_recipient {
            None
        } else {
            recipient
        };
        let Some(recipient) = recipient else {
            return match target {
                Some((key, action, caller)) => {
                    self.evaluate(key, action, caller, None)?;
                    Ok(Delivery::Plaintext)
                }
                None if self.config.require_recipient => Err(KmsError::AccessDenied(
                    "The key policy requires a Recipient attestation document".into(),
                )),
                None => Ok(Delivery::Plaintext),
            };
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
        let pcr0 = verified
            .pcrs
            .get(&0)
            .ok_or_else(|| KmsError::AccessDenied("Attestation document has no PCR0".into()))?;
        match target {
            Some((key, action, caller)) => {
                self.evaluate(key, action, caller, Some(&hex::encode(pcr0)))?
            }
            None => {
                if !self.config.allow_pcr0.iter().any(|value| value == pcr0) {
                    return Err(KmsError::AccessDenied(format!(
                        "PCR0 {} is not allowed by the key policy",
                        hex::encode(pcr0)
                    )));
                }
            }
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
