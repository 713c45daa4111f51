//! Secrets and `vault.save`. Values arrive inside UTK envelopes and leave sealed to the app's `reply_key`.

use serde_json::{json, Value};

use super::*;
use crate::vault::fields::{Bounded, Key32, Text};
use crate::vault::request::{
    SecretsAddPlain, SecretsDeletePlain, SecretsListPlain, SecretsRetrievePlain, SecretsUpdatePlain,
};

impl Ctx<'_> {
    /// Secrets operations carry the app's password hash inside the UTK envelope: a bearer secret
    /// the host never sees in clear, so a host replaying UTK public keys it observed cannot drive
    /// the user's secrets while the vault is unlocked.
    pub(super) fn authorize(
        state: &State,
        password_hash: Option<&Text>,
    ) -> Result<(), ClientError> {
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        let password_hash = password_hash.ok_or(ClientError::BadField("password_hash"))?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if stored.matches(password_hash.as_str()) {
            Ok(())
        } else {
            Err(ClientError::PasswordMismatch)
        }
    }

    pub(super) async fn secrets_add(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        let SecretsAddPlain {
            password_hash,
            name,
            value,
            category,
        } = self.open_utk(&mut meta, request)?;
        Self::authorize(&state, password_hash.as_ref())?;
        let name = name
            .map(|Bounded(n)| n)
            .filter(|n| !n.is_empty())
            .ok_or(ClientError::BadField("name"))?;
        let Bounded(value) = value.ok_or(ClientError::BadField("value"))?;
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
                category: category.map(|Bounded(c)| c),
                created_at_ms: now,
                updated_at_ms: now,
                version: 1,
            },
        );
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        self.save(&mut slot, meta, state, dek).await?;
        Ok(object(
            json!({"status": "added", "id": id, "new_utks": new_utks}),
        ))
    }

    pub(super) async fn secrets_update(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        let SecretsUpdatePlain {
            password_hash,
            id: Text(id),
            name,
            value,
            category,
        } = self.open_utk(&mut meta, request)?;
        Self::authorize(&state, password_hash.as_ref())?;
        let secret = state
            .secrets
            .get_mut(&id)
            .ok_or(ClientError::SecretNotFound)?;
        if let Some(Bounded(n)) = name.filter(|Bounded(n)| !n.is_empty()) {
            secret.name = n;
        }
        if let Some(Bounded(v)) = value {
            secret.value = v;
        }
        if let Some(Bounded(c)) = category {
            secret.category = Some(c);
        }
        secret.updated_at_ms = now_ms();
        secret.version += 1;
        let version = secret.version;
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        self.save(&mut slot, meta, state, dek).await?;
        Ok(object(
            json!({"status": "updated", "id": id, "version": version, "new_utks": new_utks}),
        ))
    }

    /// Seals `value` to the app's `reply_key` (v1's way), which came from inside the UTK
    /// envelope: never from the clear payload, where the host could substitute its own.
    pub(super) fn seal_reply(key: &[u8; 32], value: &Value) -> Result<String, ClientError> {
        let bytes =
            zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|_| ClientError::Internal)?);
        let sealed = domain::seal(Domain::Reply, key, &bytes)
            .map_err(|_| ClientError::BadField("reply_key"))?;
        Ok(b64(&sealed))
    }

    /// The v1 `reply_key`, which a v1 request must carry.
    fn reply_key(key: Option<Key32>) -> Result<[u8; 32], ClientError> {
        key.map(|Key32(k)| k)
            .ok_or(ClientError::BadField("reply_key"))
    }

    pub(super) fn secret_json(id: &str, s: &Secret, with_value: bool) -> Value {
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

    pub(super) async fn secrets_retrieve(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, state, dek) = self.unlocked().await?;
        let SecretsRetrievePlain {
            password_hash,
            id: Text(id),
            reply_key,
        } = self.open_utk(&mut meta, request)?;
        Self::authorize(&state, password_hash.as_ref())?;
        let secret = state.secrets.get(&id).ok_or(ClientError::SecretNotFound)?;
        let value = Self::secret_json(&id, secret, true);
        // v2: the whole reply is sealed to the app already, so the value goes in it; a
        // `reply_key` (v1's way) is still honoured.
        let (field, sealed) = match (request.is_v2(), reply_key) {
            (true, None) => ("secret", value),
            (_, key) => (
                "encrypted_secret",
                Self::seal_reply(&Self::reply_key(key)?, &value)?.into(),
            ),
        };
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        // The UTK is spent: stored before the answer, like any mutation.
        self.save(&mut slot, meta, state, dek).await?;
        let mut reply = object(json!({"status": "retrieved", "id": id, "new_utks": new_utks}));
        reply.insert(field.into(), sealed);
        Ok(reply)
    }

    pub(super) async fn secrets_delete(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        let SecretsDeletePlain {
            password_hash,
            id: Text(id),
        } = self.open_utk(&mut meta, request)?;
        Self::authorize(&state, password_hash.as_ref())?;
        state
            .secrets
            .remove(&id)
            .ok_or(ClientError::SecretNotFound)?;
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        self.save(&mut slot, meta, state, dek).await?;
        Ok(object(
            json!({"status": "deleted", "id": id, "new_utks": new_utks}),
        ))
    }

    pub(super) async fn secrets_list(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, state, dek) = self.unlocked().await?;
        let SecretsListPlain {
            password_hash,
            reply_key,
        } = self.open_utk(&mut meta, request)?;
        Self::authorize(&state, password_hash.as_ref())?;
        let list: Vec<Value> = state
            .secrets
            .iter()
            .map(|(id, s)| Self::secret_json(id, s, false))
            .collect();
        let count = list.len();
        let (field, listed) = match (request.is_v2(), reply_key) {
            (true, None) => ("list", Value::Array(list)),
            (_, key) => (
                "encrypted_list",
                Self::seal_reply(&Self::reply_key(key)?, &Value::Array(list))?.into(),
            ),
        };
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        self.save(&mut slot, meta, state, dek).await?;
        let mut reply = object(json!({"status": "ok", "count": count, "new_utks": new_utks}));
        reply.insert(field.into(), listed);
        Ok(reply)
    }

    pub(super) async fn secrets_identity(&self, request: &ReadRequest) -> Reply {
        let (_slot, meta, state, _dek) = self.unlocked().await?;
        self.open_read(&meta, request)?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "identity_public_key": b64(&credential.identity.public),
        })))
    }

    /// Every change is already stored before it is acknowledged; `vault.save` confirms that the
    /// stored object is still the one this enclave wrote (no other host changed it since).
    pub(super) async fn vault_save(&self, request: &ReadRequest) -> Reply {
        let (mut slot, meta, _state, _dek) = self.unlocked().await?;
        self.open_read(&meta, request)?;
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        let (etag, version) = (loaded.etag.clone(), loaded.stored.version);
        match self.vaults.store_head(self.owner).await? {
            Some(current) if current == etag => {
                Ok(object(json!({"status": "saved", "version": version})))
            }
            _ => {
                slot.reload_later();
                Err(ClientError::StorageConflict)
            }
        }
    }
}
