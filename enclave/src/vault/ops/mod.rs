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

/// Every vault operation this build implements (the `forVault.{op}` token).
pub const OPS: &[&str] = &[
    "pin",
    "pin-setup",
    "pin-unlock",
    "pin-change",
    "credential.create",
    "credential.password-change",
    "credential.get",
    "credential.version",
    "credential.delete",
    "secrets.add",
    "secrets.update",
    "secrets.retrieve",
    "secrets.delete",
    "secrets.list",
    "secrets.identity",
    "vault.save",
];

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
    // An operation this build does not have is `not_supported` whatever else is wrong (G30).
    if !OPS.contains(&op) {
        return Err(ClientError::NotSupported);
    }
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
    let mut result = ctx.run(op, request).await;
    // An unknown UTK may be one another host minted after this enclave cached the vault (two
    // hosts behind one queue group): if the stored object moved on, reload and try once more.
    // Nothing was changed by the first try (a UTK that does not open stops an operation before
    // its write), so the retry is the request's only effect.
    // If the store cannot say, its error is the answer: `utk_invalid` would make the app drop a
    // UTK that may be good.
    if matches!(result, Err(ClientError::UtkInvalid))
        && state.vaults.refresh_if_stale(owner.as_str()).await?
    {
        result = ctx.run(op, request).await;
    }
    state.vaults.evict_over_budget(owner.as_str());
    result.map(Body::Object)
}

pub(super) struct Ctx<'a> {
    pub(super) state: &'a EnclaveState,
    pub(super) vaults: &'a Vaults,
    pub(super) sealer: &'a dyn Sealer,
    pub(super) owner: &'a str,
}

pub(super) type Reply = Result<Map<String, Value>, ClientError>;

/// The optional fields of a secrets request.
pub(super) struct SecretFields {
    pub(super) name: Option<String>,
    pub(super) value: Option<String>,
    pub(super) category: Option<String>,
}

pub(super) fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A fresh X25519 key pair (random scalar; X25519 clamps it).
pub(super) fn x25519_pair() -> Result<KeyPair, ClientError> {
    let mut private = [0u8; 32];
    aws_lc_rs::rand::fill(&mut private).map_err(|_| ClientError::Internal)?;
    let key = PrivateKey::from_private_key(&X25519, &private).map_err(|_| ClientError::Internal)?;
    let public =
        vettid_vault_crypto::x25519::public_key_bytes(&key).map_err(|_| ClientError::Internal)?;
    Ok(KeyPair { private, public })
}

pub(super) fn x25519_private(pair: &KeyPair) -> Result<PrivateKey, ClientError> {
    PrivateKey::from_private_key(&X25519, &pair.private).map_err(|_| ClientError::Internal)
}

pub(super) fn random_id(prefix: &str) -> Result<String, ClientError> {
    let mut id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| ClientError::Internal)?;
    Ok(format!("{prefix}-{}", hex::encode(id)))
}

pub(super) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

pub(super) fn dek_copy(dek: &Dek) -> Dek {
    Dek::from_bytes(*dek.expose())
}

pub(super) fn utk_json(u: &Utk) -> Value {
    json!({"id": u.id, "public_key": b64(&u.key.public)})
}

/// A UTK list from [`utk_json`] in v1's older wire shape, `"id:base64(public_key)"` strings:
/// what v1's `pin.unlock` and `pin.change` answer as `new_utks` (its `EncodeUTKs`) and what
/// deployed apps and VettID's driver parse there (docs/VAULT.md, "Where this vault differs
/// from v1 on the wire"). Every other op answers objects, as v1 does.
pub(super) fn utk_strings_v1(utks: &[Value]) -> Vec<Value> {
    utks.iter()
        .map(|u| {
            let id = u["id"].as_str().unwrap_or_default();
            let key = u["public_key"].as_str().unwrap_or_default();
            Value::String(format!("{id}:{key}"))
        })
        .collect()
}

mod admin;
mod credential;
mod pin;
mod secrets;

pub use admin::VaultAdminImpl;

impl Ctx<'_> {
    /// Runs `op` (one of [`OPS`]) once.
    async fn run(&self, op: &str, request: &Map<String, Value>) -> Reply {
        let body = payload::body(request);
        match op {
            "pin" => match request.get("type").and_then(Value::as_str) {
                Some("pin.setup") => self.pin_setup(body).await,
                Some("pin.unlock") => self.pin_unlock(body).await,
                Some("pin.change") => self.pin_change(body).await,
                _ => Err(ClientError::UnknownPinOp),
            },
            "pin-setup" => self.pin_setup(body).await,
            "pin-unlock" => self.pin_unlock(body).await,
            "pin-change" => self.pin_change(body).await,
            "credential.create" => self.credential_create(body).await,
            "credential.password-change" => self.password_change(body).await,
            "credential.get" => self.credential_get().await,
            "credential.version" => self.credential_version().await,
            "credential.delete" => self.credential_delete(body).await,
            "secrets.add" => self.secrets_add(body).await,
            "secrets.update" => self.secrets_update(body).await,
            "secrets.retrieve" => self.secrets_retrieve(body).await,
            "secrets.delete" => self.secrets_delete(body).await,
            "secrets.list" => self.secrets_list(body).await,
            "secrets.identity" => self.secrets_identity().await,
            "vault.save" => self.vault_save().await,
            _ => Err(ClientError::NotSupported),
        }
    }

    pub(super) fn pin_policy(&self) -> super::PinPolicy {
        self.vaults.config().pin
    }

    /// Mints `n` UTKs into `state`, prunes old and surplus ones, returns the new ones as JSON.
    pub(super) fn add_utks(&self, state: &mut State, n: usize) -> Result<Vec<Value>, ClientError> {
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
    pub(super) fn open_utk(&self, state: &mut State, body: &Map<String, Value>) -> Reply {
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
    pub(super) fn credential_json(c: &Credential) -> zeroize::Zeroizing<Vec<u8>> {
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
    pub(super) fn credential_to_cek(state: &State, c: &Credential) -> Result<String, ClientError> {
        let cek = state.cek.as_ref().ok_or(ClientError::Internal)?;
        let sealed = domain::seal(Domain::Cek, &cek.public, &Self::credential_json(c))
            .map_err(|_| ClientError::Internal)?;
        Ok(b64(&sealed))
    }

    /// The credential under the DEK (v1 "DEK AEAD": pin.unlock and pin.change replies).
    pub(super) fn credential_under_dek(dek: &Dek, c: &Credential) -> Result<String, ClientError> {
        let sealed = vettid_vault_crypto::dek_aead::seal(dek, &Self::credential_json(c))
            .map_err(|_| ClientError::Internal)?;
        Ok(b64(&sealed))
    }

    pub(super) fn meta(slot: &Slot) -> Result<Meta, ClientError> {
        Ok(slot
            .vault
            .as_ref()
            .ok_or(ClientError::Internal)?
            .meta
            .clone())
    }

    pub(super) fn ecies_key(slot: &Slot) -> Result<PrivateKey, ClientError> {
        x25519_private(&slot.vault.as_ref().ok_or(ClientError::Internal)?.meta.ecies)
    }

    /// Locks the slot and returns it with a copy of the unlocked state and the DEK.
    pub(super) async fn unlocked(
        &self,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Slot>, State, Dek), ClientError> {
        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        if slot.vault.is_none() && slot.retained.is_none() {
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

    pub(super) async fn save(
        &self,
        slot: &mut Slot,
        state: State,
        dek: Dek,
    ) -> Result<(), ClientError> {
        let meta = Self::meta(slot)?;
        self.vaults
            .commit(self.owner, slot, meta, Some((dek, state)))
            .await
    }
}
