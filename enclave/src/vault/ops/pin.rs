//! `pin.setup`, `pin.unlock`, `pin.change` (reference §4.3), and the attempt counter.

use serde_json::{json, Map, Value};

use super::*;

impl Ctx<'_> {
    /// Counts a PIN attempt (persisted first), then evaluates it. On success the caller must
    /// commit a meta with the counter reset.
    pub(super) async fn attempt_pin(&self, slot: &mut Slot, pin: Pin) -> Result<Dek, ClientError> {
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
        // The memory permit first: waiting for it must not happen with an attempt already on
        // record (a queue of correct PINs would otherwise sit counted as failures).
        let permit = self.vaults.argon2_permit().await?;
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        let mut counted = loaded.meta.clone();
        counted.failed_attempts += 1;
        counted.backoff_until_ms = now + policy.backoff(counted.failed_attempts).as_millis() as u64;
        let failures = counted.failed_attempts;
        let verifier = counted.verifier;
        // No evaluation unless the attempt is on record: a host that kills the enclave or fails
        // the write mid-attempt gets no free guess.
        self.vaults.commit(self.owner, slot, counted, None).await?;
        let material = &slot.vault.as_ref().ok_or(ClientError::Internal)?.material;
        let dek = self
            .vaults
            .derive_dek_with(permit, pin, material, self.owner)
            .await?;
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
    pub(super) fn current_state(&self, slot: &Slot, dek: &Dek) -> Result<State, ClientError> {
        let loaded = slot.vault.as_ref().ok_or(ClientError::Internal)?;
        match &loaded.unlocked {
            Some(u) => Ok(u.state.clone()),
            None => crate::vault::record::open_state(
                dek,
                self.owner,
                &loaded.meta,
                &loaded.stored.state,
            )
            .map_err(|_| ClientError::CorruptVault),
        }
    }

    pub(super) async fn pin_setup(&self, body: &Map<String, Value>) -> Reply {
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

        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        if slot.vault.is_some() || self.vaults.exists(self.owner).await? {
            return Err(ClientError::AlreadyEnrolled);
        }
        let generated = super::super::kms_in_time(
            self.sealer
                .generate(&SealContext::vault_material(self.owner)),
        )
        .await?;
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
                crate::vault::NewVault {
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

    /// The common start of `pin.unlock` and `pin.change`: `{utk_id, encrypted_payload}`, the
    /// payload sealed (legacy ECIES) to the vault's key. Returns the locked slot, the UTK id and
    /// the decrypted JSON object.
    async fn open_pin_request(
        &self,
        body: &Map<String, Value>,
    ) -> Result<
        (
            tokio::sync::OwnedMutexGuard<Slot>,
            String,
            Map<String, Value>,
        ),
        ClientError,
    > {
        let utk_id = payload::string(body, "utk_id")?.to_owned();
        let envelope = payload::base64(body, "encrypted_payload")?;
        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        let plain = legacy_ecies::open(&Self::ecies_key(&slot)?, &envelope)
            .map_err(|_| ClientError::DecryptionFailed)?;
        Ok((slot, utk_id, payload::plaintext_object(&plain)?))
    }

    /// Checks `pin` (counted first), then opens the state and spends `utk_id`. Returns the meta
    /// with the counter cleared, the state and the DEK, for the caller to commit. A correct PIN
    /// with a bad UTK clears the counter but unlocks nothing.
    async fn verified(
        &self,
        slot: &mut Slot,
        pin: Pin,
        utk_id: &str,
    ) -> Result<(Meta, State, Dek), ClientError> {
        let dek = self.attempt_pin(slot, pin).await?;
        let mut meta = Self::meta(slot)?;
        meta.failed_attempts = 0;
        meta.backoff_until_ms = 0;
        let mut state = self.current_state(slot, &dek)?;
        if meta.credential_delete_pending {
            state.credential = None;
            meta.credential_delete_pending = false;
        }
        let Some(index) = state.utks.iter().position(|u| u.id == utk_id) else {
            self.vaults.commit(self.owner, slot, meta, None).await?;
            return Err(ClientError::UtkInvalid);
        };
        state.utks.remove(index);
        Ok((meta, state, dek))
    }

    /// Commits and builds the reply of an unlock or change: `status`, `new_utks` and, when a
    /// credential exists, `encrypted_credential` under the (new) DEK.
    async fn finish_pin(
        &self,
        slot: &mut Slot,
        meta: Meta,
        mut state: State,
        dek: Dek,
        status: &str,
        utks: usize,
    ) -> Reply {
        let new_utks = self.add_utks(&mut state, utks)?;
        let credential = state
            .credential
            .as_ref()
            .map(|c| Self::credential_under_dek(&dek, c))
            .transpose()?;
        self.vaults
            .commit(self.owner, slot, meta, Some((dek, state)))
            .await?;
        tracing::info!(vault = self.owner, status, "PIN operation done");
        let new_utks = utk_strings_v1(&new_utks);
        let mut reply = object(json!({"status": status, "new_utks": new_utks}));
        if let Some(c) = credential {
            reply.insert("encrypted_credential".into(), c.into());
        }
        Ok(reply)
    }

    pub(super) async fn pin_unlock(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, utk_id, plain) = self.open_pin_request(body).await?;
        let pin = parse_pin(&plain, "pin")?;
        drop(plain);
        let (meta, state, dek) = self.verified(&mut slot, pin, &utk_id).await?;
        self.finish_pin(&mut slot, meta, state, dek, "unlocked", UTKS_AFTER_USE)
            .await
    }

    pub(super) async fn pin_change(&self, body: &Map<String, Value>) -> Reply {
        let (mut slot, utk_id, plain) = self.open_pin_request(body).await?;
        let (old_pin, new_pin) = (parse_pin(&plain, "old_pin")?, parse_pin(&plain, "new_pin")?);
        drop(plain);
        let (mut meta, mut state, _old_dek) = self.verified(&mut slot, old_pin, &utk_id).await?;
        let material = &slot.vault.as_ref().ok_or(ClientError::Internal)?.material;
        let new_dek = self
            .vaults
            .derive_dek(new_pin, material, self.owner)
            .await?;
        meta.verifier = *PinVerifier::derive(&new_dek).as_bytes();
        if let Some(c) = state.credential.as_mut() {
            c.version += 1;
        }
        // State re-sealed under the new DEK beside the new verifier, in one write.
        self.finish_pin(
            &mut slot,
            meta,
            state,
            new_dek,
            "pin_changed",
            UTKS_AFTER_CHANGE,
        )
        .await
    }
}

/// A PIN field of a decrypted payload.
fn parse_pin(plain: &Map<String, Value>, field: &'static str) -> Result<Pin, ClientError> {
    payload::string(plain, field)
        .map_err(|_| ClientError::InvalidPinFormat)
        .and_then(|s| Pin::parse(s).map_err(|_| ClientError::InvalidPinFormat))
}
