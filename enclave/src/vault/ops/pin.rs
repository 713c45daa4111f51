//! `pin.setup`, `pin.unlock`, `pin.change` (reference §4.3), and the attempt counter.

use serde_json::{json, Value};

use super::*;
use crate::vault::fields::{Key32, Text};
use crate::vault::request::{
    ChangePlain, SetupPlain, SetupRequest, SetupV1, SetupV2, UnlockPlain, UtkSealed,
};

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

    pub(super) async fn pin_setup(&self, request: &SetupRequest) -> Reply {
        let plain = match request {
            // v2: the app names the attestation key it sealed to (one lookup, no trial
            // decryption) and the envelope is bound to this owner and this operation.
            SetupRequest::V2(
                setup @ SetupV2 {
                    attestation_key: Key32(public),
                    ..
                },
            ) => match (self.keys.take(public, self.owner), self.fleet) {
                (Some(key), _) => {
                    self.open_v2_object(&key, public, v2::KEY_REF_ATTESTATION, setup.ciphertext()?)?
                }
                // Minted on any host of the fleet: taken from the trusted store, once.
                (None, Some(fleet)) => {
                    let sealed = setup.ciphertext()?;
                    let mut failure = None;
                    fleet
                        .take_opening(self.sealer, self.owner, |candidate, key| {
                            if candidate != public {
                                return None;
                            }
                            self.open_v2_object(key, public, v2::KEY_REF_ATTESTATION, sealed)
                                .map_err(|e| failure = Some(e))
                                .ok()
                        })
                        .await
                        .map_err(|e| match (e, failure.take()) {
                            (ClientError::DecryptionFailed, Some(f)) => f,
                            (ClientError::DecryptionFailed, None) => {
                                ClientError::AttestationKeyRequired
                            }
                            (e, _) => e,
                        })?
                }
                (None, None) => return Err(ClientError::AttestationKeyRequired),
            },
            SetupRequest::V1(SetupV1 {
                encrypted_pin,
                ephemeral_public_key,
                nonce,
            }) => {
                let (encrypted_pin, ephemeral, nonce) = (
                    encrypted_pin.as_str(),
                    ephemeral_public_key.as_str(),
                    nonce.as_str(),
                );
                let local = self.keys.take_opening(self.owner, |key| {
                    legacy_ecies::open_fields(key, encrypted_pin, ephemeral, nonce).ok()
                });
                let plain = match (local, self.fleet) {
                    (Ok(plain), _) => plain,
                    // v1 does not name its key: each of the owner's fleet keys is tried.
                    (Err(_), Some(fleet)) => {
                        fleet
                            .take_opening(self.sealer, self.owner, |_, key| {
                                legacy_ecies::open_fields(key, encrypted_pin, ephemeral, nonce).ok()
                            })
                            .await?
                    }
                    (Err(TakeError::NoKey), None) => {
                        return Err(ClientError::AttestationKeyRequired)
                    }
                    (Err(TakeError::NoneOpened), None) => {
                        return Err(ClientError::DecryptionFailed)
                    }
                };
                payload::plaintext_object(&plain)?
            }
        };
        let SetupPlain { pin, profile } = request::plaintext(&plain, request.is_v2())?;
        drop(plain);
        let pin = parse_pin(&pin)?;
        // Kept only when it is an object, as v1 did.
        let profile = profile.filter(Value::is_object).map(|p| p.to_string());

        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        if slot.vault.is_some() {
            return Err(ClientError::AlreadyEnrolled);
        }
        let at = self.vaults.enrolment(self.owner).await?;
        let generated = crate::deadline::kms_in_time(
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
        let (proof, proof_hash) = new_create_proof()?;
        let mut meta = Meta {
            ecies: x25519_pair()?,
            verifier: *PinVerifier::derive(&dek).as_bytes(),
            failed_attempts: 0,
            backoff_until_ms: 0,
            state_version: 1,
            credential_delete_pending: false,
            enrolled_at_ms: now_ms(),
            utks: Vec::new(),
            v1_seen: Default::default(),
            create_proof: Some(proof_hash),
        };
        let state = State {
            cek: Some(x25519_pair()?),
            profile,
            ..State::default()
        };
        let utks = self.add_utks(&mut meta, UTKS_AT_SETUP)?;
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
                at,
            )
            .await?;
        tracing::info!(vault = self.owner, "vault enrolled");
        if let Some(u) = slot.vault.as_ref().and_then(|v| v.unlocked.as_ref()) {
            let (dek, verifier) = (
                dek_copy(&u.dek),
                slot.vault.as_ref().map(|v| v.meta.verifier),
            );
            if let Some(verifier) = verifier {
                self.share_session(&dek, &verifier).await;
            }
        }
        let mut reply = object(json!({
            "status": "vault_ready",
            "utks": utks,
            "ecies_public_key": ecies_public,
        }));
        if request.is_v2() {
            // Revealed only inside the sealed reply: what `credential.create` must present.
            reply.insert("create_proof".into(), b64(&proof).into());
        }
        Ok(reply)
    }

    /// The common start of `pin.unlock` and `pin.change`. The UTK is checked first, before the
    /// envelope is opened and long before any PIN is counted: a made-up, spent or expired UTK
    /// id stops the request with nothing counted and nothing evaluated, so it can neither
    /// refund guesses nor tell a right PIN from a wrong one.
    ///
    /// - v2 `{v:2, utk_id, sealed}`: sealed to the UTK itself, bound to this operation and owner.
    /// - v1 `{utk_id, encrypted_payload}` (with `--accept-v1-envelopes`): legacy ECIES to the
    ///   vault's key; the UTK id is outside the ciphertext, so an envelope that already unlocked
    ///   the vault is refused by its ephemeral key ([`Meta::v1_seen`]).
    async fn open_pin_request<T: Plaintext>(
        &self,
        request: &UtkRequest,
    ) -> Result<PinRequest<T>, ClientError> {
        let utk_id = request.utk_id.as_str().to_owned();
        let mut slot = self.vaults.slot_in_time(self.owner).await?;
        self.vaults.load(self.sealer, self.owner, &mut slot).await?;
        let meta = Self::meta(&slot)?;
        let index = self.find_utk(&meta, &utk_id)?;
        let sealed = request.ciphertext()?;
        let (plain, v1_key) = match &request.sealed {
            UtkSealed::V2(_) => {
                let utk = &meta.utks[index].key;
                let plain = self.open_v2(&x25519_private(utk)?, &utk.public, &utk_id, sealed)?;
                (plain, None)
            }
            UtkSealed::V1(_) => {
                let ephemeral: [u8; 32] = sealed
                    .get(..32)
                    .and_then(|e| e.try_into().ok())
                    .ok_or(ClientError::DecryptionFailed)?;
                if meta.v1_seen.contains(&ephemeral) {
                    tracing::warn!(vault = self.owner, "replayed v1 PIN envelope refused");
                    return Err(ClientError::ReplayedRequest);
                }
                let plain = legacy_ecies::open(&Self::ecies_key(&slot)?, sealed)
                    .map_err(|_| ClientError::DecryptionFailed)?;
                let plain = request::plaintext(&payload::plaintext_object(&plain)?, false)?;
                (plain, Some(ephemeral))
            }
        };
        Ok(PinRequest {
            slot,
            utk_id,
            plain,
            v1_key,
        })
    }

    /// Checks `pin` (counted first). Only a correct PIN spends the request's UTK (and records a
    /// v1 envelope as used) and clears the counter, in the same write as the rest of the
    /// operation. Returns the meta, the state and the DEK, for the caller to commit.
    async fn verified(
        &self,
        slot: &mut Slot,
        pin: Pin,
        utk_id: &str,
        v1_key: Option<[u8; 32]>,
    ) -> Result<(Meta, State, Dek), ClientError> {
        let dek = self.attempt_pin(slot, pin).await?;
        let mut meta = Self::meta(slot)?;
        meta.failed_attempts = 0;
        meta.backoff_until_ms = 0;
        // Same vault lock since the check: the UTK is still there.
        let index = self.find_utk(&meta, utk_id)?;
        meta.utks.remove(index);
        if let Some(key) = v1_key {
            meta.v1_seen.push_back(key);
            while meta.v1_seen.len() > crate::vault::record::V1_SEEN_MAX {
                meta.v1_seen.pop_front();
            }
        }
        let mut state = self.current_state(slot, &dek)?;
        if meta.credential_delete_pending {
            state.credential = None;
            meta.credential_delete_pending = false;
        }
        Ok((meta, state, dek))
    }

    /// Commits and builds the reply of an unlock or change: `status`, `new_utks` and, when a
    /// credential exists, `encrypted_credential` under the (new) DEK. A v2 reply without a
    /// credential carries a fresh create proof.
    #[allow(clippy::too_many_arguments)]
    async fn finish_pin(
        &self,
        slot: &mut Slot,
        mut meta: Meta,
        state: State,
        dek: Dek,
        status: &str,
        utks: usize,
        v2: bool,
    ) -> Reply {
        let new_utks = self.add_utks(&mut meta, utks)?;
        let credential = state
            .credential
            .as_ref()
            .map(|c| Self::credential_under_dek(&dek, c))
            .transpose()?;
        let proof = if v2 && state.credential.is_none() {
            let (proof, hash) = new_create_proof()?;
            meta.create_proof = Some(hash);
            Some(proof)
        } else {
            None
        };
        let verifier = meta.verifier;
        let session_dek = dek_copy(&dek);
        self.vaults
            .commit(self.owner, slot, meta, Some((dek, state)))
            .await?;
        tracing::info!(vault = self.owner, status, "PIN operation done");
        self.share_session(&session_dek, &verifier).await;
        // v1 apps parse `"id:base64"` strings here; a v2 reply has the one object shape.
        let new_utks = if v2 {
            new_utks
        } else {
            utk_strings_v1(&new_utks)
        };
        let mut reply = object(json!({"status": status, "new_utks": new_utks}));
        if let Some(c) = credential {
            reply.insert("encrypted_credential".into(), c.into());
        }
        if let Some(p) = proof {
            reply.insert("create_proof".into(), b64(&p).into());
        }
        Ok(reply)
    }

    pub(super) async fn pin_unlock(&self, request: &UtkRequest) -> Reply {
        let PinRequest {
            mut slot,
            utk_id,
            plain,
            v1_key,
        } = self.open_pin_request::<UnlockPlain>(request).await?;
        let pin = parse_pin(&plain.pin)?;
        drop(plain);
        let (meta, state, dek) = self.verified(&mut slot, pin, &utk_id, v1_key).await?;
        self.finish_pin(
            &mut slot,
            meta,
            state,
            dek,
            "unlocked",
            UTKS_AFTER_USE,
            request.is_v2(),
        )
        .await
    }

    pub(super) async fn pin_change(&self, request: &UtkRequest) -> Reply {
        let PinRequest {
            mut slot,
            utk_id,
            plain,
            v1_key,
        } = self.open_pin_request::<ChangePlain>(request).await?;
        let (old_pin, new_pin) = (parse_pin(&plain.old_pin)?, parse_pin(&plain.new_pin)?);
        drop(plain);
        let (mut meta, mut state, _old_dek) =
            self.verified(&mut slot, old_pin, &utk_id, v1_key).await?;
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
            request.is_v2(),
        )
        .await
    }
}

/// An opened PIN request, with its vault locked.
struct PinRequest<T> {
    slot: tokio::sync::OwnedMutexGuard<Slot>,
    utk_id: String,
    plain: T,
    /// The ephemeral key of a v1 envelope (recorded once it unlocks).
    v1_key: Option<[u8; 32]>,
}

/// A PIN from a decrypted payload.
fn parse_pin(text: &Text) -> Result<Pin, ClientError> {
    Pin::parse(text.as_str()).map_err(|_| ClientError::InvalidPinFormat)
}
