//! The app-facing vault operations (reference §4.3–4.4 shapes), one function each.
//!
//! Every mutating operation works on a copy of the vault's state and commits it with one
//! conditional write before answering; the in-memory vault only changes once storage said yes.
//!
//! Two request shapes (docs/VAULT.md): v1 as deployed apps send it, accepted only with
//! `--accept-v1-envelopes`, and the v2 envelope (`"v": 2`), bound to the operation, the owner and
//! the key it is sealed to, whose reply is sealed under a key only the requesting app holds
//! ([`vettid_vault_crypto::v2`]). A v2 request's reply, success or error, is
//! `{"v": 2, "sealed_reply": …}`; an error before the envelope opened is a plain (unauthenticated)
//! error, which a v2 app treats as "failed, told nothing".

use aws_lc_rs::agreement::{PrivateKey, X25519};
use serde_json::{json, Map, Value};
use vettid_vault_crypto::{domain, legacy_ecies, Dek, Domain, PhcHash, Pin, PinVerifier};

use super::payload::{self, b64};
use super::record::{Credential, KeyPair, Meta, Secret, State, Utk};
use super::request::{self, Envelope, Plaintext, ReadPlain, ReadRequest, UtkRequest, VaultOp};
use super::{Services, Slot, Vaults};
use crate::clock::now_ms;
use crate::error::ClientError;
use crate::fleet::FleetKeys;
use crate::keys::{KeyStore, TakeError};
use crate::reply::Body;
use crate::router::OwnerSpace;
use crate::sealing::{SealContext, SealError, Sealer};
use vettid_vault_crypto::v2;

/// UTKs minted at enrolment.
const UTKS_AT_SETUP: usize = 5;
/// UTKs added after credential.create, password-change and pin.change.
const UTKS_AFTER_CHANGE: usize = 5;
/// UTKs added after an unlock or any other UTK-consuming operation.
const UTKS_AFTER_USE: usize = 3;

/// Runs the vault operation named by subject token `op` for `owner`.
///
/// # Errors
/// The operation's [`ClientError`]; nothing was changed when one is returned.
pub async fn dispatch(
    services: Services<'_>,
    owner: &OwnerSpace,
    op: &str,
    request: &Map<String, Value>,
) -> Result<Body, ClientError> {
    // An operation this build does not have is `not_supported` whatever else is wrong (G30).
    if !VaultOp::serves(op) {
        return Err(ClientError::NotSupported);
    }
    let sealer = services
        .sealer
        .ok_or(ClientError::Kms(SealError::NotConfigured))?;
    let op = VaultOp::parse(op, request, services.vaults.config().accept_v1)?;
    let ctx = Ctx {
        vaults: services.vaults,
        sealer,
        keys: services.keys,
        fleet: services.fleet,
        owner: owner.as_str(),
        op: op.name(),
        reply_key: std::sync::Mutex::new(None),
    };
    super::anchor::with_app_floor(finish(ctx, owner, &op)).await
}

/// [`dispatch`] from its context on.
async fn finish(ctx: Ctx<'_>, owner: &OwnerSpace, op: &VaultOp) -> Result<Body, ClientError> {
    let vaults = ctx.vaults;
    let mut result = ctx.run(op).await;
    // An unknown UTK may be one another host minted after this enclave cached the vault (two
    // hosts behind one queue group): if the stored object moved on, reload and try once more.
    // Nothing was changed by the first try (a UTK that does not open stops an operation before
    // its write), so the retry is the request's only effect.
    // If the store cannot say, its error is the answer: `utk_invalid` would make the app drop a
    // UTK that may be good.
    if matches!(result, Err(ClientError::UtkInvalid))
        && vaults.refresh_if_stale(owner.as_str()).await?
    {
        ctx.take_reply_key();
        result = ctx.run(op).await;
    }
    vaults.evict_over_budget(owner.as_str());
    match ctx.take_reply_key() {
        // A v2 request whose envelope opened: the answer, whatever it is, only for the app.
        Some(key) => {
            // The version this answer comes from, for the app's witness (`seen_version`); an
            // answer from below the app's witness is not given.
            let version = vaults.cached_version(owner.as_str()).await;
            let floor = super::anchor::app_floor();
            if result.is_ok() && version.is_some_and(|v| v < floor) {
                tracing::warn!(
                    vault = owner.as_str(),
                    ?version,
                    floor,
                    "below the app's witness"
                );
                result = Err(ClientError::StaleVault);
            }
            let inner = match result {
                Ok(mut map) => {
                    if let Some(v) = version {
                        map.insert("vault_version".into(), v.into());
                    }
                    map
                }
                Err(e) => crate::reply::error_body(e),
            };
            let bytes = zeroize::Zeroizing::new(
                serde_json::to_vec(&Value::Object(inner)).map_err(|_| ClientError::Internal)?,
            );
            let sealed = key.seal(&bytes).map_err(|_| ClientError::Internal)?;
            Ok(Body::Object(object(
                json!({"v": 2, "sealed_reply": b64(&sealed)}),
            )))
        }
        None => result.map(Body::Object),
    }
}

pub(super) struct Ctx<'a> {
    pub(super) vaults: &'a Vaults,
    pub(super) sealer: &'a dyn Sealer,
    /// Attestation keys minted on this host.
    pub(super) keys: &'a KeyStore,
    /// Attestation keys and unlocked sessions shared with the fleet (with a trusted store).
    pub(super) fleet: Option<&'a FleetKeys>,
    pub(super) owner: &'a str,
    /// The canonical operation name.
    pub(super) op: &'static str,
    /// Set once a v2 envelope opened: the reply is sealed under it.
    reply_key: std::sync::Mutex<Option<v2::ReplyKey>>,
}

pub(super) type Reply = Result<Map<String, Value>, ClientError>;

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

/// A fresh create proof: the secret goes to the app (inside a sealed v2 reply only), its SHA-256
/// into meta.
pub(super) fn new_create_proof() -> Result<([u8; 32], [u8; 32]), ClientError> {
    let mut proof = [0u8; 32];
    aws_lc_rs::rand::fill(&mut proof).map_err(|_| ClientError::Internal)?;
    Ok((proof, proof_hash(&proof)))
}

pub(super) fn proof_hash(proof: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, proof).as_ref());
    out
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
    /// Runs the operation once.
    async fn run(&self, op: &VaultOp) -> Reply {
        match op {
            VaultOp::PinSetup(r) => self.pin_setup(r).await,
            VaultOp::PinUnlock(r) => self.pin_unlock(r).await,
            VaultOp::PinChange(r) => self.pin_change(r).await,
            VaultOp::CredentialCreate(r) => self.credential_create(r).await,
            VaultOp::PasswordChange(r) => self.password_change(r).await,
            VaultOp::CredentialGet(r) => self.credential_get(r).await,
            VaultOp::CredentialVersion(r) => self.credential_version(r).await,
            VaultOp::CredentialDelete(r) => self.credential_delete(r).await,
            VaultOp::SecretsAdd(r) => self.secrets_add(r).await,
            VaultOp::SecretsUpdate(r) => self.secrets_update(r).await,
            VaultOp::SecretsRetrieve(r) => self.secrets_retrieve(r).await,
            VaultOp::SecretsDelete(r) => self.secrets_delete(r).await,
            VaultOp::SecretsList(r) => self.secrets_list(r).await,
            VaultOp::SecretsIdentity(r) => self.secrets_identity(r).await,
            VaultOp::VaultSave(r) => self.vault_save(r).await,
        }
    }

    /// Remembers the key a v2 reply must be sealed under.
    pub(super) fn set_reply_key(&self, key: v2::ReplyKey) {
        *self.reply_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    fn take_reply_key(&self) -> Option<v2::ReplyKey> {
        self.reply_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The binding of a v2 envelope of this operation sealed to `key_ref`.
    pub(super) fn binding<'k>(&'k self, key_ref: &'k str) -> v2::Binding<'k> {
        v2::Binding {
            op: self.op,
            owner: self.owner,
            key_ref,
        }
    }

    /// Opens a v2 envelope (`sealed`) to `private`/`public` and reads its plaintext as `T`; on
    /// success the reply will be sealed.
    pub(super) fn open_v2<T: Plaintext>(
        &self,
        private: &PrivateKey,
        public: &[u8; 32],
        key_ref: &str,
        sealed: &[u8],
    ) -> Result<T, ClientError> {
        request::plaintext(
            &self.open_v2_object(private, public, key_ref, sealed)?,
            true,
        )
    }

    /// [`Self::open_v2`] up to the plaintext's JSON object. The app's `seen_version` raises this
    /// request's floor.
    pub(super) fn open_v2_object(
        &self,
        private: &PrivateKey,
        public: &[u8; 32],
        key_ref: &str,
        sealed: &[u8],
    ) -> Result<Map<String, Value>, ClientError> {
        let opened = v2::open(private, public, &self.binding(key_ref), sealed)
            .map_err(|_| ClientError::DecryptionFailed)?;
        let plain = payload::plaintext_object(&opened.plaintext)?;
        match plain.get("seen_version") {
            None => {}
            Some(v) => super::anchor::raise_app_floor(
                v.as_u64().ok_or(ClientError::BadField("seen_version"))?,
            ),
        }
        // Opened: from here on every answer, an error in a field included, is for the app only.
        self.set_reply_key(opened.reply_key);
        Ok(plain)
    }

    /// A read (no UTK): v2 requests are sealed to the vault's own key so their reply is
    /// authenticated; v1 reads carry nothing.
    pub(super) fn open_read(&self, meta: &Meta, read: &ReadRequest) -> Result<(), ClientError> {
        match read.ciphertext()? {
            Some(sealed) => {
                let key = x25519_private(&meta.ecies)?;
                self.open_v2::<ReadPlain>(&key, &meta.ecies.public, v2::KEY_REF_VAULT, sealed)
                    .map(drop)
            }
            None => Ok(()),
        }
    }

    pub(super) fn pin_policy(&self) -> super::PinPolicy {
        self.vaults.config().pin
    }

    /// Mints `n` UTKs into `meta`, prunes old and surplus ones, returns the new ones as JSON.
    pub(super) fn add_utks(&self, meta: &mut Meta, n: usize) -> Result<Vec<Value>, ClientError> {
        let now = now_ms();
        let max_age = self.vaults.config().utk_max_age.as_millis() as u64;
        meta.utks
            .retain(|u| now.saturating_sub(u.created_at_ms) <= max_age);
        let mut fresh = Vec::with_capacity(n);
        for _ in 0..n {
            let utk = Utk {
                id: random_id("utk")?,
                key: x25519_pair()?,
                created_at_ms: now,
            };
            fresh.push(utk_json(&utk));
            meta.utks.push(utk);
        }
        let max = self.vaults.config().max_utks.max(n);
        if meta.utks.len() > max {
            let surplus = meta.utks.len() - max;
            meta.utks.drain(..surplus);
        }
        Ok(fresh)
    }

    /// The index of live UTK `id` in `meta` (unknown, spent or too old: `utk_invalid`).
    pub(super) fn find_utk(&self, meta: &Meta, id: &str) -> Result<usize, ClientError> {
        let now = now_ms();
        let max_age = self.vaults.config().utk_max_age.as_millis() as u64;
        meta.utks
            .iter()
            .position(|u| u.id == id && now.saturating_sub(u.created_at_ms) <= max_age)
            .ok_or(ClientError::UtkInvalid)
    }

    /// Opens a UTK request — v2 `{v:2, utk_id, sealed}` or v1 `{utk_id, encrypted_payload}` —
    /// reads its plaintext as `T` and removes the UTK from `meta` (spent once the caller
    /// commits).
    pub(super) fn open_utk<T: Plaintext>(
        &self,
        meta: &mut Meta,
        request: &UtkRequest,
    ) -> Result<T, ClientError> {
        let id = request.utk_id.as_str();
        let index = self.find_utk(meta, id)?;
        let key = x25519_private(&meta.utks[index].key)?;
        let sealed = request.ciphertext()?;
        let plain = if request.is_v2() {
            self.open_v2(&key, &meta.utks[index].key.public, id, sealed)?
        } else {
            let plain = domain::open(Domain::Utk, &key, sealed)
                .map_err(|_| ClientError::DecryptionFailed)?;
            request::plaintext(&payload::plaintext_object(&plain)?, false)?
        };
        meta.utks.remove(index);
        Ok(plain)
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

    /// Shares an unlocked vault's DEK with the fleet ([`crate::fleet`]); a failure only means
    /// other hosts will ask for the PIN.
    pub(super) async fn share_session(&self, dek: &Dek, verifier: &[u8; 32]) {
        let Some(fleet) = self.fleet else {
            return;
        };
        let ttl = self.vaults.config().idle_lock;
        if let Err(e) = fleet
            .put_session(self.sealer, self.owner, dek, verifier, ttl)
            .await
        {
            tracing::warn!(vault = self.owner, code = e.code(), "unlock not shared");
        }
    }

    /// The unlocked state from a session another host shared, if one is live for this vault's
    /// current PIN. Not while a credential deletion waits for the next PIN unlock.
    async fn shared_session(
        &self,
        loaded: &super::Loaded,
    ) -> Result<Option<super::Unlocked>, ClientError> {
        let Some(fleet) = self.fleet else {
            return Ok(None);
        };
        if loaded.meta.credential_delete_pending {
            return Ok(None);
        }
        let Some(dek) = fleet
            .session(self.sealer, self.owner, &loaded.meta.verifier)
            .await?
        else {
            return Ok(None);
        };
        let verifier = PinVerifier::from_bytes(&loaded.meta.verifier)
            .map_err(|_| ClientError::CorruptVault)?;
        if !verifier.matches(&dek) {
            return Ok(None);
        }
        let state = super::record::open_state(&dek, self.owner, &loaded.meta, &loaded.stored.state)
            .map_err(|_| ClientError::CorruptVault)?;
        tracing::debug!(
            vault = self.owner,
            "unlocked by a session shared from another host"
        );
        Ok(Some(super::Unlocked {
            dek,
            state,
            last_activity: std::time::Instant::now(),
        }))
    }

    /// Locks the slot and returns it with copies of the meta, the unlocked state and the DEK.
    pub(super) async fn unlocked(
        &self,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Slot>, Meta, State, Dek), ClientError> {
        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        // In a fleet the vault may be unlocked on another host: load it and ask.
        if slot.vault.is_none() && slot.retained.is_none() && self.fleet.is_none() {
            return Err(if self.vaults.exists(self.owner).await? {
                ClientError::VaultLocked
            } else {
                ClientError::NotEnrolled
            });
        }
        let loaded = self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        if loaded.unlocked.is_none() {
            loaded.unlocked = self.shared_session(loaded).await?;
        }
        let meta = loaded.meta.clone();
        let unlocked = loaded.unlocked.as_mut().ok_or(ClientError::VaultLocked)?;
        unlocked.last_activity = std::time::Instant::now();
        let (state, dek) = (unlocked.state.clone(), dek_copy(&unlocked.dek));
        Ok((slot, meta, state, dek))
    }

    pub(super) async fn save(
        &self,
        slot: &mut Slot,
        meta: Meta,
        state: State,
        dek: Dek,
    ) -> Result<(), ClientError> {
        self.vaults
            .commit(self.owner, slot, meta, Some((dek, state)))
            .await
    }
}
