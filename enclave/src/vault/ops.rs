//! The app-facing vault operations (reference §4.3–4.4 shapes), one function each.
//!
//! Every mutating operation works on a copy of the vault's state and commits it with one
//! conditional write before answering; the in-memory vault only changes once storage said yes.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use serde_json::{json, Map, Value};
use vettid_vault_crypto::{domain, legacy_ecies, Dek, Domain, PhcHash, Pin, PinVerifier};

use super::payload::{self, b64};
use super::record::{Credential, KeyPair, Meta, Secret, State, Utk};
use super::{now_ms, Slot, Vaults};
use crate::keys::TakeError;
use crate::reply::{Body, ClientError};
use crate::router::OwnerSpace;
use crate::sealing::{SealContext, SealError, Sealer};
use crate::state::EnclaveState;

/// UTKs minted at enrolment.
const UTKS_AT_SETUP: usize = 5;
/// UTKs added after credential.create, password-change and pin.change.
const UTKS_AFTER_CHANGE: usize = 5;
/// UTKs added after an unlock or any other UTK-consuming operation.
const UTKS_AFTER_USE: usize = 3;
/// Longest secret name / category.
const MAX_SECRET_NAME: usize = 256;
/// Largest secret value.
const MAX_SECRET_VALUE: usize = 64 * 1024;

/// Runs vault operation `op` for `owner`.
///
/// # Errors
/// The operation's [`ClientError`]; nothing was changed when one is returned.
pub async fn dispatch(
    state: &EnclaveState,
    owner: &OwnerSpace,
    op: &str,
    request: &Map<String, Value>,
) -> Result<Body, ClientError> {
    let sealer = state
        .sealer
        .as_deref()
        .ok_or(ClientError::Kms(SealError::NotConfigured))?;
    let ctx = Ctx {
        state,
        vaults: &state.vaults,
        sealer,
        owner: owner.as_str(),
    };
    let body = payload::body(request);
    let result = match op {
        "pin" => match request.get("type").and_then(Value::as_str) {
            Some("pin.setup") => ctx.pin_setup(body).await,
            Some("pin.unlock") => ctx.pin_unlock(body).await,
            Some("pin.change") => ctx.pin_change(body).await,
            _ => Err(ClientError::UnknownPinOp),
        },
        "pin-setup" => ctx.pin_setup(body).await,
        "pin-unlock" => ctx.pin_unlock(body).await,
        "pin-change" => ctx.pin_change(body).await,
        "credential.create" => ctx.credential_create(body).await,
        "credential.password-change" => ctx.password_change(body).await,
        "credential.get" => ctx.credential_get().await,
        "credential.version" => ctx.credential_version().await,
        "credential.delete" => ctx.credential_delete(body).await,
        "secrets.add" => ctx.secrets_add(body).await,
        "secrets.update" => ctx.secrets_update(body).await,
        "secrets.retrieve" => ctx.secrets_retrieve(body).await,
        "secrets.delete" => ctx.secrets_delete(body).await,
        "secrets.list" => ctx.secrets_list(body).await,
        "secrets.identity" => ctx.secrets_identity().await,
        "vault.save" => ctx.vault_save().await,
        _ => Err(ClientError::NotSupported),
    };
    state.vaults.evict_over_budget(owner.as_str());
    result.map(Body::Object)
}

struct Ctx<'a> {
    state: &'a EnclaveState,
    vaults: &'a Vaults,
    sealer: &'a dyn Sealer,
    owner: &'a str,
}

type Reply = Result<Map<String, Value>, ClientError>;

/// The optional fields of a secrets request.
struct SecretFields {
    name: Option<String>,
    value: Option<String>,
    category: Option<String>,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A fresh X25519 key pair (random scalar; X25519 clamps it).
fn x25519_pair() -> Result<KeyPair, ClientError> {
    let mut private = [0u8; 32];
    aws_lc_rs::rand::fill(&mut private).map_err(|_| ClientError::Internal)?;
    let key = PrivateKey::from_private_key(&X25519, &private).map_err(|_| ClientError::Internal)?;
    let public =
        vettid_vault_crypto::x25519::public_key_bytes(&key).map_err(|_| ClientError::Internal)?;
    Ok(KeyPair { private, public })
}

fn x25519_private(pair: &KeyPair) -> Result<PrivateKey, ClientError> {
    PrivateKey::from_private_key(&X25519, &pair.private).map_err(|_| ClientError::Internal)
}

fn random_id(prefix: &str) -> Result<String, ClientError> {
    let mut id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| ClientError::Internal)?;
    Ok(format!("{prefix}-{}", hex::encode(id)))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn dek_copy(dek: &Dek) -> Dek {
    Dek::from_bytes(*dek.expose())
}

fn utk_json(u: &Utk) -> Value {
    json!({"id": u.id, "public_key": b64(&u.key.public)})
}

impl Ctx<'_> {
    fn pin_policy(&self) -> super::PinPolicy {
        self.vaults.config().pin
    }

    /// Mints `n` UTKs into `state`, prunes old and surplus ones, returns the new ones as JSON.
    fn add_utks(&self, state: &mut State, n: usize) -> Result<Vec<Value>, ClientError> {
        let now = now_ms();
        let max_age = self.vaults.config().utk_max_age.as_millis() as u64;
        state
            .utks
            .retain(|u| now.saturating_sub(u.created_at_ms) <= max_age);
        let mut fresh = Vec::with_capacity(n);
        for _ in 0..n {
            let utk = Utk {
                id: random_id("utk")?,
                key: x25519_pair()?,
                created_at_ms: now,
            };
            fresh.push(utk_json(&utk));
            state.utks.push(utk);
        }
        let max = self.vaults.config().max_utks.max(n);
        if state.utks.len() > max {
            let surplus = state.utks.len() - max;
            state.utks.drain(..surplus);
        }
        Ok(fresh)
    }

    /// Opens a UTK envelope `{utk_id, encrypted_payload}` and removes the UTK from `state`.
    fn open_utk(&self, state: &mut State, body: &Map<String, Value>) -> Reply {
        let id = payload::string(body, "utk_id")?;
        let envelope = payload::base64(body, "encrypted_payload")?;
        let index = state
            .utks
            .iter()
            .position(|u| u.id == id)
            .ok_or(ClientError::UtkInvalid)?;
        let key = x25519_private(&state.utks[index].key)?;
        let plain = domain::open(Domain::Utk, &key, &envelope)
            .map_err(|_| ClientError::DecryptionFailed)?;
        state.utks.remove(index);
        payload::plaintext_object(&plain)
    }

    /// The v1 credential JSON (what `encrypted_credential` decrypts to).
    fn credential_json(c: &Credential) -> zeroize::Zeroizing<Vec<u8>> {
        let mut private = zeroize::Zeroizing::new([0u8; 64]);
        private[..32].copy_from_slice(&c.identity.private);
        private[32..].copy_from_slice(&c.identity.public);
        let v = json!({
            "identity_private_key": b64(&private[..]),
            "identity_public_key": b64(&c.identity.public),
            "vault_master_secret": b64(&c.master_secret),
            "password_hash": c.password_hash,
            "auth_type": "password",
            "crypto_keys": [],
            "created_at": rfc3339(c.created_at_ms),
            "version": c.version,
        });
        zeroize::Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// The credential sealed to the CEK (credential.create, password-change, get).
    fn credential_to_cek(state: &State, c: &Credential) -> Result<String, ClientError> {
        let cek = state.cek.as_ref().ok_or(ClientError::Internal)?;
        let sealed = domain::seal(Domain::Cek, &cek.public, &Self::credential_json(c))
            .map_err(|_| ClientError::Internal)?;
        Ok(b64(&sealed))
    }

    /// The credential under the DEK (v1 "DEK AEAD": pin.unlock and pin.change replies).
    fn credential_under_dek(dek: &Dek, c: &Credential) -> Result<String, ClientError> {
        let sealed = vettid_vault_crypto::dek_aead::seal(dek, &Self::credential_json(c))
            .map_err(|_| ClientError::Internal)?;
        Ok(b64(&sealed))
    }

    /// Counts a PIN attempt (persisted first), then evaluates it. On success the caller must
    /// commit a meta with the counter reset.
    async fn attempt_pin(&self, slot: &mut Slot, pin: Pin) -> Result<Dek, ClientError> {
        let policy = self.pin_policy();
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        let now = now_ms();
        if loaded.meta.failed_attempts >= policy.max_attempts {
            return Err(ClientError::LockedOut);
        }
        if now < loaded.meta.backoff_until_ms {
            return Err(ClientError::PinBackoff {
                retry_after_seconds: (loaded.meta.backoff_until_ms - now).div_ceil(1000),
            });
        }
        let mut counted = loaded.meta.clone();
        counted.failed_attempts += 1;
        counted.backoff_until_ms = now + policy.backoff(counted.failed_attempts).as_millis() as u64;
        let failures = counted.failed_attempts;
        let verifier = counted.verifier;
        // No evaluation unless the attempt is on record: a host that kills the enclave or fails
        // the write mid-attempt gets no free guess.
        self.vaults.commit(self.owner, slot, counted, None).await?;
        let material = &slot.vault.as_ref().ok_or(ClientError::Internal)?.material;
        let dek = self.vaults.derive_dek(pin, material, self.owner).await?;
        let stored = PinVerifier::from_bytes(&verifier).map_err(|_| ClientError::CorruptVault)?;
        if !stored.matches(&dek) {
            tracing::warn!(vault = self.owner, failures, "wrong PIN");
            return Err(if failures >= policy.max_attempts {
                ClientError::LockedOut
            } else {
                ClientError::InvalidPin {
                    attempts_remaining: policy.max_attempts - failures,
                }
            });
        }
        Ok(dek)
    }

    /// The state of an unlocked vault, or the state sealed in storage opened with `dek`.
    fn current_state(&self, slot: &Slot, dek: &Dek) -> Result<State, ClientError> {
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        match &loaded.unlocked {
            Some(u) => Ok(u.state.clone()),
            None => super::record::open_state(dek, self.owner, &loaded.meta, &loaded.stored.state)
                .map_err(|_| ClientError::CorruptVault),
        }
    }

    fn meta(slot: &Slot) -> Result<Meta, ClientError> {
        Ok(slot
            .vault
            .as_ref()
            .ok_or(ClientError::Internal)?
            .meta
            .clone())
    }

    fn ecies_key(slot: &Slot) -> Result<PrivateKey, ClientError> {
        x25519_private(&slot.vault.as_ref().ok_or(ClientError::Internal)?.meta.ecies)
    }

    async fn pin_setup(&self, body: &Map<String, Value>) -> Reply {
        let encrypted_pin = payload::string(body, "encrypted_pin")?;
        let ephemeral = payload::string(body, "ephemeral_public_key")?;
        let nonce = payload::string(body, "nonce")?;
        let plain = self
            .state
            .keys
            .take_opening(self.owner, |key| {
                legacy_ecies::open_fields(key, encrypted_pin, ephemeral, nonce).ok()
            })
            .map_err(|e| match e {
                TakeError::NoKey => ClientError::AttestationKeyRequired,
                TakeError::NoneOpened => ClientError::DecryptionFailed,
            })?;
        let plain = payload::plaintext_object(&plain)?;
        let pin =
            Pin::parse(payload::string(&plain, "pin").map_err(|_| ClientError::InvalidPinFormat)?)
                .map_err(|_| ClientError::InvalidPinFormat)?;
        let profile = match plain.get("profile") {
            Some(p @ Value::Object(_)) => Some(p.to_string()),
            _ => None,
        };
        drop(plain);

        let mut slot = self.vaults.slot(self.owner).await;
        if slot.vault.is_some() || self.vaults.exists(self.owner).await? {
            return Err(ClientError::AlreadyEnrolled);
        }
        let generated = self
            .sealer
            .generate(&SealContext::vault_material(self.owner))
            .await;
        self.vaults.count_kms(&generated);
        let (material, blob) = generated.map_err(|e| {
            tracing::error!(
                code = e.code(),
                vault = self.owner,
                "KMS GenerateDataKey failed"
            );
            ClientError::Kms(e)
        })?;
        let dek = self.vaults.derive_dek(pin, &material, self.owner).await?;
        let meta = Meta {
            ecies: x25519_pair()?,
            verifier: *PinVerifier::derive(&dek).as_bytes(),
            failed_attempts: 0,
            backoff_until_ms: 0,
            state_version: 1,
            credential_delete_pending: false,
            enrolled_at_ms: now_ms(),
        };
        let mut state = State {
            cek: Some(x25519_pair()?),
            profile,
            ..State::default()
        };
        let utks = self.add_utks(&mut state, UTKS_AT_SETUP)?;
        let ecies_public = b64(&meta.ecies.public);
        self.vaults
            .create(
                self.owner,
                &mut slot,
                super::NewVault {
                    material,
                    material_blob: blob,
                    meta,
                    dek,
                    state,
                },
            )
            .await?;
        tracing::info!(vault = self.owner, "vault enrolled");
        Ok(object(json!({
            "status": "vault_ready",
            "utks": utks,
            "ecies_public_key": ecies_public,
        })))
    }

    async fn pin_unlock(&self, body: &Map<String, Value>) -> Reply {
        let utk_id = payload::string(body, "utk_id")?.to_owned();
        let envelope = payload::base64(body, "encrypted_payload")?;
        let mut slot = self.vaults.slot(self.owner).await;
        self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        let plain = legacy_ecies::open(&Self::ecies_key(&slot)?, &envelope)
            .map_err(|_| ClientError::DecryptionFailed)?;
        let plain = payload::plaintext_object(&plain)?;
        let pin =
            Pin::parse(payload::string(&plain, "pin").map_err(|_| ClientError::InvalidPinFormat)?)
                .map_err(|_| ClientError::InvalidPinFormat)?;
        drop(plain);

        let dek = self.attempt_pin(&mut slot, pin).await?;
        let mut meta = Self::meta(&slot)?;
        meta.failed_attempts = 0;
        meta.backoff_until_ms = 0;
        let mut state = self.current_state(&slot, &dek)?;
        if meta.credential_delete_pending {
            state.credential = None;
            meta.credential_delete_pending = false;
        }
        let Some(index) = state.utks.iter().position(|u| u.id == utk_id) else {
            // The PIN was right: clear the counter, but do not unlock on a bad UTK.
            self.vaults
                .commit(self.owner, &mut slot, meta, None)
                .await?;
            return Err(ClientError::UtkInvalid);
        };
        state.utks.remove(index);
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        let credential = state
            .credential
            .as_ref()
            .map(|c| Self::credential_under_dek(&dek, c))
            .transpose()?;
        self.vaults
            .commit(self.owner, &mut slot, meta, Some((dek, state)))
            .await?;
        tracing::info!(vault = self.owner, "vault unlocked");
        let mut reply = object(json!({"status": "unlocked", "new_utks": new_utks}));
        if let Some(c) = credential {
            reply.insert("encrypted_credential".into(), c.into());
        }
        Ok(reply)
    }

    async fn pin_change(&self, body: &Map<String, Value>) -> Reply {
        let utk_id = payload::string(body, "utk_id")?.to_owned();
        let envelope = payload::base64(body, "encrypted_payload")?;
        let mut slot = self.vaults.slot(self.owner).await;
        self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        let plain = legacy_ecies::open(&Self::ecies_key(&slot)?, &envelope)
            .map_err(|_| ClientError::DecryptionFailed)?;
        let plain = payload::plaintext_object(&plain)?;
        let parse = |field| {
            payload::string(&plain, field)
                .map_err(|_| ClientError::InvalidPinFormat)
                .and_then(|s| Pin::parse(s).map_err(|_| ClientError::InvalidPinFormat))
        };
        let (old_pin, new_pin) = (parse("old_pin")?, parse("new_pin")?);
        drop(plain);

        let old_dek = self.attempt_pin(&mut slot, old_pin).await?;
        let mut meta = Self::meta(&slot)?;
        meta.failed_attempts = 0;
        meta.backoff_until_ms = 0;
        let mut state = self.current_state(&slot, &old_dek)?;
        let Some(index) = state.utks.iter().position(|u| u.id == utk_id) else {
            self.vaults
                .commit(self.owner, &mut slot, meta, None)
                .await?;
            return Err(ClientError::UtkInvalid);
        };
        state.utks.remove(index);
        let material = &slot.vault.as_ref().ok_or(ClientError::Internal)?.material;
        let new_dek = self
            .vaults
            .derive_dek(new_pin, material, self.owner)
            .await?;
        meta.verifier = *PinVerifier::derive(&new_dek).as_bytes();
        if let Some(c) = state.credential.as_mut() {
            c.version += 1;
        }
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_CHANGE)?;
        let credential = state
            .credential
            .as_ref()
            .map(|c| Self::credential_under_dek(&new_dek, c))
            .transpose()?;
        // State re-sealed under the new DEK and the new verifier in one write.
        self.vaults
            .commit(self.owner, &mut slot, meta, Some((new_dek, state)))
            .await?;
        tracing::info!(vault = self.owner, "PIN changed");
        let mut reply = object(json!({"status": "pin_changed", "new_utks": new_utks}));
        if let Some(c) = credential {
            reply.insert("encrypted_credential".into(), c.into());
        }
        Ok(reply)
    }

    /// Locks the slot and returns it with a copy of the unlocked state and the DEK.
    async fn unlocked(
        &self,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Slot>, State, Dek), ClientError> {
        let mut slot = self.vaults.slot(self.owner).await;
        if slot.vault.is_none() {
            return Err(if self.vaults.exists(self.owner).await? {
                ClientError::VaultLocked
            } else {
                ClientError::NotEnrolled
            });
        }
        let loaded = self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        let unlocked = loaded.unlocked.as_mut().ok_or(ClientError::VaultLocked)?;
        unlocked.last_activity = std::time::Instant::now();
        let (state, dek) = (unlocked.state.clone(), dek_copy(&unlocked.dek));
        Ok((slot, state, dek))
    }

    async fn save(&self, slot: &mut Slot, state: State, dek: Dek) -> Result<(), ClientError> {
        let meta = Self::meta(slot)?;
        self.vaults
            .commit(self.owner, slot, meta, Some((dek, state)))
            .await
    }

    async fn credential_create(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        if state.credential.is_some() {
            return Err(ClientError::CredentialExists);
        }
        let plain = self.open_utk(&mut state, body)?;
        let hash = PhcHash::parse(payload::string(&plain, "password_hash")?)
            .map_err(|_| ClientError::InvalidPasswordHash)?;
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| ClientError::Internal)?;
        let identity = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| ClientError::Internal)?;
        let public: [u8; 32] = aws_lc_rs::signature::KeyPair::public_key(&identity)
            .as_ref()
            .try_into()
            .map_err(|_| ClientError::Internal)?;
        let mut master_secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut master_secret).map_err(|_| ClientError::Internal)?;
        let credential = Credential {
            identity: KeyPair {
                private: seed,
                public,
            },
            master_secret,
            password_hash: hash.as_str().to_owned(),
            version: 1,
            created_at_ms: now_ms(),
        };
        let encrypted = Self::credential_to_cek(&state, &credential)?;
        state.credential = Some(credential);
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_CHANGE)?;
        self.save(&mut slot, state, dek).await?;
        tracing::info!(vault = self.owner, "credential created");
        Ok(object(json!({
            "status": "created",
            "encrypted_credential": encrypted,
            "new_utks": new_utks,
        })))
    }

    async fn password_change(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        let old = payload::string(&plain, "old_password_hash")?;
        let new = PhcHash::parse(payload::string(&plain, "new_password_hash")?)
            .map_err(|_| ClientError::InvalidPasswordHash)?;
        let credential = state.credential.as_mut().ok_or(ClientError::NoCredential)?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if !stored.matches(old) {
            return Err(ClientError::PasswordMismatch);
        }
        credential.password_hash = new.as_str().to_owned();
        credential.version += 1;
        let credential = credential.clone();
        let encrypted = Self::credential_to_cek(&state, &credential)?;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_CHANGE)?;
        self.save(&mut slot, state, dek).await?;
        Ok(object(json!({
            "status": "password_changed",
            "encrypted_credential": encrypted,
            "new_utks": new_utks,
        })))
    }

    async fn credential_get(&self) -> Reply {
        let (_slot, state, _dek) = self.unlocked().await?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "encrypted_credential": Self::credential_to_cek(&state, credential)?,
            "version": credential.version,
        })))
    }

    async fn credential_version(&self) -> Reply {
        let (_slot, state, _dek) = self.unlocked().await?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "version": credential.version,
            "created_at": rfc3339(credential.created_at_ms),
        })))
    }

    async fn credential_delete(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if !stored.matches(payload::string(&plain, "password_hash")?) {
            return Err(ClientError::PasswordMismatch);
        }
        state.credential = None;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        self.save(&mut slot, state, dek).await?;
        tracing::info!(vault = self.owner, "credential deleted");
        Ok(object(json!({"status": "deleted", "new_utks": new_utks})))
    }

    /// Secrets operations carry the app's password hash inside the UTK envelope: a bearer secret
    /// the host never sees in clear, so a host replaying UTK public keys it observed cannot drive
    /// the user's secrets while the vault is unlocked.
    fn authorize(state: &State, plain: &Map<String, Value>) -> Result<(), ClientError> {
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if stored.matches(payload::string(plain, "password_hash")?) {
            Ok(())
        } else {
            Err(ClientError::PasswordMismatch)
        }
    }

    fn secret_fields(plain: &Map<String, Value>) -> Result<SecretFields, ClientError> {
        let field = |name, max| payload::opt_string(plain, name, max).map(|v| v.map(str::to_owned));
        Ok(SecretFields {
            name: field("name", MAX_SECRET_NAME)?,
            value: field("value", MAX_SECRET_VALUE)?,
            category: field("category", MAX_SECRET_NAME)?,
        })
    }

    async fn secrets_add(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        Self::authorize(&state, &plain)?;
        let SecretFields {
            name,
            value,
            category,
        } = Self::secret_fields(&plain)?;
        let name = name
            .filter(|n| !n.is_empty())
            .ok_or(ClientError::BadField("name"))?;
        let value = value.ok_or(ClientError::BadField("value"))?;
        if state.secrets.len() >= self.vaults.config().max_secrets {
            return Err(ClientError::TooManySecrets);
        }
        let id = random_id("sec")?;
        let now = now_ms();
        state.secrets.insert(
            id.clone(),
            Secret {
                name,
                value,
                category,
                created_at_ms: now,
                updated_at_ms: now,
                version: 1,
            },
        );
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        self.save(&mut slot, state, dek).await?;
        Ok(object(
            json!({"status": "added", "id": id, "new_utks": new_utks}),
        ))
    }

    async fn secrets_update(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        Self::authorize(&state, &plain)?;
        let id = payload::string(&plain, "id")?.to_owned();
        let SecretFields {
            name,
            value,
            category,
        } = Self::secret_fields(&plain)?;
        let secret = state
            .secrets
            .get_mut(&id)
            .ok_or(ClientError::SecretNotFound)?;
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            secret.name = n;
        }
        if let Some(v) = value {
            secret.value = v;
        }
        if category.is_some() {
            secret.category = category;
        }
        secret.updated_at_ms = now_ms();
        secret.version += 1;
        let version = secret.version;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        self.save(&mut slot, state, dek).await?;
        Ok(object(
            json!({"status": "updated", "id": id, "version": version, "new_utks": new_utks}),
        ))
    }

    /// The app's reply key from inside a UTK envelope (never from the clear payload, where the
    /// host could substitute its own).
    fn reply_key(plain: &Map<String, Value>) -> Result<[u8; 32], ClientError> {
        payload::key32(plain, "reply_key")
    }

    fn seal_reply(key: &[u8; 32], value: &Value) -> Result<String, ClientError> {
        let bytes =
            zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|_| ClientError::Internal)?);
        let sealed = domain::seal(Domain::Reply, key, &bytes)
            .map_err(|_| ClientError::BadField("reply_key"))?;
        Ok(b64(&sealed))
    }

    fn secret_json(id: &str, s: &Secret, with_value: bool) -> Value {
        let mut v = json!({
            "id": id,
            "name": s.name,
            "category": s.category,
            "created_at": rfc3339(s.created_at_ms),
            "updated_at": rfc3339(s.updated_at_ms),
            "version": s.version,
        });
        if with_value {
            v["value"] = Value::String(s.value.clone());
        }
        v
    }

    async fn secrets_retrieve(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        Self::authorize(&state, &plain)?;
        let id = payload::string(&plain, "id")?.to_owned();
        let key = Self::reply_key(&plain)?;
        let secret = state.secrets.get(&id).ok_or(ClientError::SecretNotFound)?;
        let encrypted = Self::seal_reply(&key, &Self::secret_json(&id, secret, true))?;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        // The UTK is spent: stored before the answer, like any mutation.
        self.save(&mut slot, state, dek).await?;
        Ok(object(json!({
            "status": "retrieved",
            "id": id,
            "encrypted_secret": encrypted,
            "new_utks": new_utks,
        })))
    }

    async fn secrets_delete(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        Self::authorize(&state, &plain)?;
        let id = payload::string(&plain, "id")?.to_owned();
        state
            .secrets
            .remove(&id)
            .ok_or(ClientError::SecretNotFound)?;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        self.save(&mut slot, state, dek).await?;
        Ok(object(
            json!({"status": "deleted", "id": id, "new_utks": new_utks}),
        ))
    }

    async fn secrets_list(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, mut state, dek) = self.unlocked().await?;
        let plain = self.open_utk(&mut state, body)?;
        Self::authorize(&state, &plain)?;
        let key = Self::reply_key(&plain)?;
        let list: Vec<Value> = state
            .secrets
            .iter()
            .map(|(id, s)| Self::secret_json(id, s, false))
            .collect();
        let count = list.len();
        let encrypted = Self::seal_reply(&key, &Value::Array(list))?;
        let new_utks = self.add_utks(&mut state, UTKS_AFTER_USE)?;
        self.save(&mut slot, state, dek).await?;
        Ok(object(json!({
            "status": "ok",
            "count": count,
            "encrypted_list": encrypted,
            "new_utks": new_utks,
        })))
    }

    async fn secrets_identity(&self) -> Reply {
        let (_slot, state, _dek) = self.unlocked().await?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "identity_public_key": b64(&credential.identity.public),
        })))
    }

    /// Every change is already stored before it is acknowledged; `vault.save` confirms that the
    /// stored object is still the one this enclave wrote (no other host changed it since).
    async fn vault_save(&self) -> Reply {
        let (mut slot, _state, _dek) = self.unlocked().await?;
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        let (etag, version) = (loaded.etag.clone(), loaded.stored.version);
        match self.vaults.store_head(self.owner).await? {
            Some(current) if current == etag => {
                Ok(object(json!({"status": "saved", "version": version})))
            }
            _ => {
                slot.vault = None;
                Err(ClientError::StorageConflict)
            }
        }
    }
}

/// Signed control commands on one user's vault ([`crate::control::VaultAdmin`]).
pub struct VaultAdminImpl<'a> {
    state: &'a EnclaveState,
}

impl<'a> VaultAdminImpl<'a> {
    /// Over the enclave's vaults.
    pub fn new(state: &'a EnclaveState) -> Self {
        Self { state }
    }
}

impl crate::control::VaultAdmin for VaultAdminImpl<'_> {
    async fn reset(&self, user: &OwnerSpace) -> Result<usize, crate::control::AdminError> {
        let keys = self.state.keys.remove_owner(user.as_str());
        let mut slot = self.state.vaults.slot(user.as_str()).await;
        let existed = self
            .state
            .vaults
            .delete(user.as_str(), &mut slot)
            .await
            .map_err(|_| crate::control::AdminError::Unavailable)?;
        tracing::warn!(vault = %user, existed, "vault reset by signed command");
        Ok(keys + usize::from(existed))
    }

    async fn delete_credential(
        &self,
        user: &OwnerSpace,
    ) -> Result<usize, crate::control::AdminError> {
        let unavailable = |_| crate::control::AdminError::Unavailable;
        let sealer = self
            .state
            .sealer
            .as_deref()
            .ok_or(crate::control::AdminError::Unavailable)?;
        let vaults = &self.state.vaults;
        let mut slot = vaults.slot(user.as_str()).await;
        match vaults.load(sealer, user.as_str(), &mut slot).await {
            Err(ClientError::NotEnrolled) => return Ok(0),
            Err(e) => return Err(unavailable(e)),
            Ok(_) => {}
        }
        let loaded = slot
            .vault
            .as_ref()
            .ok_or(crate::control::AdminError::Unavailable)?;
        let mut meta = loaded.meta.clone();
        match &loaded.unlocked {
            Some(u) => {
                let mut state = u.state.clone();
                let had = state.credential.take().is_some();
                let dek = dek_copy(&u.dek);
                vaults
                    .commit(user.as_str(), &mut slot, meta, Some((dek, state)))
                    .await
                    .map_err(unavailable)?;
                Ok(usize::from(had))
            }
            None => {
                // Locked: the state needs the PIN. Record the deletion in meta; the next unlock
                // applies it before anything else can read the credential.
                meta.credential_delete_pending = true;
                vaults
                    .commit(user.as_str(), &mut slot, meta, None)
                    .await
                    .map_err(unavailable)?;
                Ok(1)
            }
        }
    }
}
