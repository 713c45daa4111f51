//! The Protean credential operations (reference §4.4).

use serde_json::json;

use super::*;
use crate::vault::fields::Base64;
use crate::vault::request::{CreatePlain, PasswordChangePlain, PasswordPlain};

/// Constant-time equality of two hashes.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl Ctx<'_> {
    pub(super) async fn credential_create(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        if state.credential.is_some() {
            return Err(ClientError::CredentialExists);
        }
        let CreatePlain {
            password_hash,
            create_proof,
        } = self.open_utk(&mut meta, request)?;
        // Who may create the credential: UTK public keys travel in v1 replies, so a UTK alone
        // proves nothing. A v2 request carries the proof that only the sealed reply of this
        // vault's `pin.setup` (or of a `pin.unlock` while no credential exists) revealed.
        if request.is_v2() {
            let Base64(proof) = create_proof.ok_or(ClientError::CreateProofRequired)?;
            let expected = meta.create_proof.ok_or(ClientError::CreateProofRequired)?;
            if !same_hash(&proof_hash(&proof), &expected) {
                return Err(ClientError::CreateProofRequired);
            }
            meta.create_proof = None;
        }
        let hash =
            PhcHash::parse(password_hash.as_str()).map_err(|_| ClientError::InvalidPasswordHash)?;
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
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_CHANGE)?;
        self.save(&mut slot, meta, state, dek).await?;
        tracing::info!(vault = self.owner, "credential created");
        Ok(object(json!({
            "status": "created",
            "encrypted_credential": encrypted,
            "new_utks": new_utks,
        })))
    }

    pub(super) async fn password_change(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        let PasswordChangePlain {
            old_password_hash,
            new_password_hash,
        } = self.open_utk(&mut meta, request)?;
        let new = PhcHash::parse(new_password_hash.as_str())
            .map_err(|_| ClientError::InvalidPasswordHash)?;
        let credential = state.credential.as_mut().ok_or(ClientError::NoCredential)?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if !stored.matches(old_password_hash.as_str()) {
            return Err(ClientError::PasswordMismatch);
        }
        credential.password_hash = new.as_str().to_owned();
        credential.version += 1;
        let credential = credential.clone();
        let encrypted = Self::credential_to_cek(&state, &credential)?;
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_CHANGE)?;
        self.save(&mut slot, meta, state, dek).await?;
        Ok(object(json!({
            "status": "password_changed",
            "encrypted_credential": encrypted,
            "new_utks": new_utks,
        })))
    }

    pub(super) async fn credential_get(&self, request: &ReadRequest) -> Reply {
        let (_slot, meta, state, _dek) = self.unlocked().await?;
        self.open_read(&meta, request)?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "encrypted_credential": Self::credential_to_cek(&state, credential)?,
            "version": credential.version,
        })))
    }

    pub(super) async fn credential_version(&self, request: &ReadRequest) -> Reply {
        let (_slot, meta, state, _dek) = self.unlocked().await?;
        self.open_read(&meta, request)?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        Ok(object(json!({
            "status": "ok",
            "version": credential.version,
            "created_at": rfc3339(credential.created_at_ms),
        })))
    }

    pub(super) async fn credential_delete(&self, request: &UtkRequest) -> Reply {
        let (mut slot, mut meta, mut state, dek) = self.unlocked().await?;
        let PasswordPlain { password_hash } = self.open_utk(&mut meta, request)?;
        let credential = state.credential.as_ref().ok_or(ClientError::NoCredential)?;
        let stored =
            PhcHash::parse(&credential.password_hash).map_err(|_| ClientError::CorruptVault)?;
        if !stored.matches(password_hash.as_str()) {
            return Err(ClientError::PasswordMismatch);
        }
        state.credential = None;
        let new_utks = self.add_utks(&mut meta, UTKS_AFTER_USE)?;
        // The user deleted it themselves: they may create the next one (the proof reaches only a
        // v2 app, inside its sealed reply).
        let (proof, hash) = new_create_proof()?;
        meta.create_proof = Some(hash);
        self.save(&mut slot, meta, state, dek).await?;
        tracing::info!(vault = self.owner, "credential deleted");
        let mut reply = object(json!({"status": "deleted", "new_utks": new_utks}));
        if request.is_v2() {
            reply.insert("create_proof".into(), b64(&proof).into());
        }
        Ok(reply)
    }
}
