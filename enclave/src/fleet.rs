//! Attestation keys any host of the fleet can use.
//!
//! An app attests on one host and enrols (`pin.setup`, sealed to the attestation key) on
//! whichever host the queue group picks next; with the private key only in the first enclave's
//! memory, N hosts fail (N−1)/N enrolments. So with a trusted store, a fresh attestation key is
//! not kept in memory: it is wrapped under the **fleet key** and written to the trusted store
//! before the attestation is answered, in one item per owner (`attest#{owner}`, at most
//! [`crate::keys::DEFAULT_PER_OWNER`] live keys, newest last).
//!
//! - The fleet key is a KMS data key generated once (the first enclave to need it creates the
//!   item `fleet#attestation-key` holding its `CiphertextBlob`, create-only) and opened by every
//!   enclave through KMS with an attested Recipient: only an enclave the key policy admits (its
//!   PCR0) ever holds it. The wrap is XChaCha20-Poly1305 whose AAD names the owner, the public
//!   key and the expiry, so a wrapped key cannot be moved to another owner or outlive its TTL.
//! - Single use: taking a key rewrites the owner's item without it by compare-and-swap on its
//!   revision, and the key is used only once that write succeeded. Two hosts racing for one key:
//!   one write wins, the other sees a conflict, reads again and finds the key gone.
//! - Cost, in forward secrecy: until it is used or expires (300 s), an attestation key exists
//!   outside the enclave that minted it, wrapped. Whoever obtains both the fleet key (which
//!   needs an enclave the key policy admits) and a copy of the table then could open the
//!   `pin.setup` envelopes sealed to keys still live at that moment; keys already used or
//!   expired are gone from the item (DynamoDB's TTL also removes items of owners who never came
//!   back). In writes: one read and one conditional write per attestation, and the same per
//!   enrolment (BENCHMARKS.md has the measured latency).
//! - **Unlocked sessions.** The DEK of an unlocked vault lives in the memory of the enclave that
//!   checked the PIN; the app's next request may reach another host. After every successful PIN
//!   check the DEK is also wrapped under the fleet key into `unlock#{owner}` (expiry: the idle
//!   lock from now, verifier in the AAD), and a host holding the vault locked takes it from
//!   there. This costs one write per unlock and one read when a host first serves an unlocked
//!   vault, and adds nothing a thief of the fleet key lacks: the fleet key's holder is an
//!   admitted enclave, which can open every vault's material anyway; the PIN still guards every
//!   vault that is not unlocked at that moment.
//! - If the trusted store cannot take the key, the attestation still answers and the key stays
//!   in this enclave's memory only (single use by [`KeyStore`]): enrolment then works on this
//!   host, as before the fleet existed, and the failure is logged.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::agreement::{PrivateKey, X25519};
use serde::{Deserialize, Serialize};
use vettid_vault_crypto::{wrap, Dek, Material};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::keys::{KeyStore, PublicKey, DEFAULT_PER_OWNER};
use crate::sealing::{SealContext, Sealer};
use crate::trusted::{TrustedError, TrustedStore};

/// The trusted store key of the fleet key's blob.
pub const FLEET_KEY_ITEM: &str = "fleet#attestation-key";
/// Compare-and-swap attempts before a busy owner item is given up on.
const SWAP_ATTEMPTS: usize = 4;
/// AAD label of a wrapped attestation key.
const WRAP_LABEL: &[u8] = b"vettid attestation key v1";

/// One wrapped key in an owner's item.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wrapped {
    #[serde(with = "serde_bytes")]
    public: PublicKey,
    expires_ms: u64,
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// The fleet's attestation keys (see the module docs).
pub struct FleetKeys {
    trusted: Arc<TrustedStore>,
    ttl: Duration,
    key: tokio::sync::OnceCell<Material>,
}

impl std::fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKeys")
            .field("ttl", &self.ttl)
            .field("key_loaded", &self.key.initialized())
            .finish()
    }
}

/// An unlocked vault's DEK, wrapped for the other hosts (see [`FleetKeys::put_session`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    expires_ms: u64,
    #[serde(with = "serde_bytes")]
    verifier: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// AAD label of a wrapped session DEK.
const SESSION_LABEL: &[u8] = b"vettid unlocked dek v1";

fn session_key(owner: &str) -> String {
    format!("unlock#{owner}")
}

fn session_aad(owner: &str, expires_ms: u64, verifier: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SESSION_LABEL.len() + owner.len() + 48);
    out.extend_from_slice(SESSION_LABEL);
    out.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    out.extend_from_slice(owner.as_bytes());
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(verifier);
    out
}

fn item_key(owner: &str) -> String {
    format!("attest#{owner}")
}

fn aad(owner: &str, public: &PublicKey, expires_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(WRAP_LABEL.len() + owner.len() + 48);
    out.extend_from_slice(WRAP_LABEL);
    out.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    out.extend_from_slice(owner.as_bytes());
    out.extend_from_slice(public);
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<Wrapped>, ClientError> {
    ciborium::from_reader(bytes).map_err(|_| {
        tracing::error!("fleet attestation key item does not parse");
        ClientError::Internal
    })
}

fn encode(list: &[Wrapped]) -> Vec<u8> {
    let mut out = Vec::new();
    // A list of byte strings and integers always serialises.
    let _ = ciborium::into_writer(&list, &mut out);
    out
}

fn trusted_error(e: TrustedError) -> ClientError {
    match e {
        TrustedError::NoTime => ClientError::DeadlineExceeded,
        e => {
            tracing::warn!(
                code = e.code(),
                "trusted store call for attestation keys failed"
            );
            ClientError::TrustedStoreUnavailable
        }
    }
}

/// A fresh X25519 key with its private bytes (to wrap) and public half.
fn fresh() -> Result<(Zeroizing<[u8; 32]>, PrivateKey, PublicKey), ClientError> {
    let mut private = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(private.as_mut()).map_err(|_| ClientError::AttestationFailed)?;
    let key = PrivateKey::from_private_key(&X25519, private.as_ref())
        .map_err(|_| ClientError::AttestationFailed)?;
    let public = vettid_vault_crypto::x25519::public_key_bytes(&key)
        .map_err(|_| ClientError::AttestationFailed)?;
    Ok((private, key, public))
}

impl FleetKeys {
    /// Keys kept in `trusted` for `ttl`.
    pub fn new(trusted: Arc<TrustedStore>, ttl: Duration) -> Self {
        Self {
            trusted,
            ttl,
            key: tokio::sync::OnceCell::new(),
        }
    }

    /// The fleet key: from this enclave's memory, or the trusted store's blob opened by KMS, or
    /// (the fleet's first use) made by KMS and stored create-only.
    async fn key(&self, sealer: &dyn Sealer) -> Result<&Material, ClientError> {
        self.key
            .get_or_try_init(|| async {
                let context = SealContext::fleet_attestation();
                let kms = |e: crate::sealing::SealError| {
                    tracing::error!(code = e.code(), "KMS failed for the fleet key");
                    ClientError::Kms(e)
                };
                for _ in 0..2 {
                    let existing = self
                        .trusted
                        .get(FLEET_KEY_ITEM)
                        .await
                        .map_err(trusted_error)?;
                    if let Some(item) = existing {
                        let sealed =
                            crate::deadline::kms_in_time(sealer.unseal(&item.body, &context))
                                .await?;
                        return sealed.map_err(kms);
                    }
                    let (material, blob) = crate::deadline::kms_in_time(sealer.generate(&context))
                        .await?
                        .map_err(kms)?;
                    match self.trusted.create(FLEET_KEY_ITEM, &blob, None).await {
                        Ok(()) => {
                            tracing::info!("fleet attestation key created");
                            return Ok(material);
                        }
                        // Another enclave created it first: use theirs.
                        Err(TrustedError::Conflict) => continue,
                        Err(e) => return Err(trusted_error(e)),
                    }
                }
                Err(ClientError::TrustedStoreUnavailable)
            })
            .await
    }

    /// A fresh attestation key for `owner`, wrapped into the trusted store so any host can take
    /// it. If that fails it goes into `local` instead (this host only). Returns the public key.
    ///
    /// # Errors
    /// [`ClientError::AttestationFailed`] if no key can be made; [`ClientError::Busy`] when
    /// `local` is full and the trusted store failed.
    pub async fn generate(
        &self,
        sealer: &dyn Sealer,
        local: &KeyStore,
        owner: &str,
    ) -> Result<PublicKey, ClientError> {
        let (private, key, public) = fresh()?;
        match self.export(sealer, owner, &private, &public).await {
            Ok(()) => Ok(public),
            Err(e) => {
                tracing::warn!(
                    owner,
                    code = e.code(),
                    "attestation key kept on this host only (trusted store failed)"
                );
                local
                    .insert(owner, key, public)
                    .map_err(|_| ClientError::Busy)?;
                Ok(public)
            }
        }
    }

    async fn export(
        &self,
        sealer: &dyn Sealer,
        owner: &str,
        private: &[u8; 32],
        public: &PublicKey,
    ) -> Result<(), ClientError> {
        let fleet = self.key(sealer).await?;
        let now = crate::clock::now_ms();
        let expires_ms = now + self.ttl.as_millis() as u64;
        let sealed = wrap::seal(fleet.expose(), &aad(owner, public, expires_ms), private)
            .map_err(|_| ClientError::Internal)?;
        let entry = Wrapped {
            public: *public,
            expires_ms,
            sealed,
        };
        let key = item_key(owner);
        for _ in 0..SWAP_ATTEMPTS {
            let current = self.trusted.get(&key).await.map_err(trusted_error)?;
            let (rev, mut list) = match &current {
                Some(item) => (Some(item.rev), decode(&item.body)?),
                None => (None, Vec::new()),
            };
            list.retain(|w| w.expires_ms > now);
            list.push(entry.clone());
            let excess = list.len().saturating_sub(DEFAULT_PER_OWNER);
            list.drain(..excess);
            match self.trusted.swap(&key, rev, &encode(&list)).await {
                Ok(_) => return Ok(()),
                Err(TrustedError::Conflict) => continue,
                Err(e) => return Err(trusted_error(e)),
            }
        }
        Err(ClientError::TrustedStoreUnavailable)
    }

    /// Takes `owner`'s live key for which `open` returns `Some` (v2 names the public key; v1
    /// tries each), removing it from the trusted store before returning what `open` produced.
    ///
    /// # Errors
    /// [`ClientError::AttestationKeyRequired`] when the owner has no live key there;
    /// [`ClientError::DecryptionFailed`] when none opens; trusted store and KMS errors.
    pub async fn take_opening<T>(
        &self,
        sealer: &dyn Sealer,
        owner: &str,
        mut open: impl FnMut(&PublicKey, &PrivateKey) -> Option<T>,
    ) -> Result<T, ClientError> {
        let key = item_key(owner);
        for _ in 0..SWAP_ATTEMPTS {
            let Some(item) = self.trusted.get(&key).await.map_err(trusted_error)? else {
                return Err(ClientError::AttestationKeyRequired);
            };
            let mut list = decode(&item.body)?;
            let now = crate::clock::now_ms();
            list.retain(|w| w.expires_ms > now);
            if list.is_empty() {
                return Err(ClientError::AttestationKeyRequired);
            }
            let fleet = self.key(sealer).await?;
            let mut found = None;
            for (i, w) in list.iter().enumerate() {
                let Ok(private) = wrap::open(
                    fleet.expose(),
                    &aad(owner, &w.public, w.expires_ms),
                    &w.sealed,
                ) else {
                    tracing::error!(owner, "a wrapped attestation key did not open");
                    continue;
                };
                let Ok(private) = PrivateKey::from_private_key(&X25519, &private) else {
                    continue;
                };
                if let Some(out) = open(&w.public, &private) {
                    found = Some((i, out));
                    break;
                }
            }
            let Some((index, out)) = found else {
                return Err(ClientError::DecryptionFailed);
            };
            list.remove(index);
            match self
                .trusted
                .swap(&key, Some(item.rev), &encode(&list))
                .await
            {
                Ok(_) => return Ok(out),
                // Changed meanwhile (a new attestation, or this key taken elsewhere): read again.
                Err(TrustedError::Conflict) => continue,
                Err(e) => return Err(trusted_error(e)),
            }
        }
        Err(ClientError::TrustedStoreUnavailable)
    }

    /// Records that `owner`'s vault is unlocked with `dek` (whose verifier is `verifier`) until
    /// `ttl` from now, so another host can serve the app's next request without the PIN.
    ///
    /// # Errors
    /// Trusted store and KMS errors (the unlock itself stands; only other hosts will ask for
    /// the PIN).
    pub async fn put_session(
        &self,
        sealer: &dyn Sealer,
        owner: &str,
        dek: &Dek,
        verifier: &[u8; 32],
        ttl: Duration,
    ) -> Result<(), ClientError> {
        let fleet = self.key(sealer).await?;
        let expires_ms = crate::clock::now_ms() + ttl.as_millis() as u64;
        let sealed = wrap::seal(
            fleet.expose(),
            &session_aad(owner, expires_ms, verifier),
            dek.expose(),
        )
        .map_err(|_| ClientError::Internal)?;
        let mut body = Vec::new();
        let _ = ciborium::into_writer(
            &Session {
                expires_ms,
                verifier: verifier.to_vec(),
                sealed,
            },
            &mut body,
        );
        let key = session_key(owner);
        for _ in 0..SWAP_ATTEMPTS {
            let current = self.trusted.get(&key).await.map_err(trusted_error)?;
            match self.trusted.swap(&key, current.map(|c| c.rev), &body).await {
                Ok(_) => return Ok(()),
                Err(TrustedError::Conflict) => continue,
                Err(e) => return Err(trusted_error(e)),
            }
        }
        Err(ClientError::TrustedStoreUnavailable)
    }

    /// The DEK of `owner`'s unlocked session, if one is live for the vault whose PIN verifier is
    /// `verifier` (a PIN change on any host ends the old session: its verifier differs).
    ///
    /// # Errors
    /// Trusted store and KMS errors.
    pub async fn session(
        &self,
        sealer: &dyn Sealer,
        owner: &str,
        verifier: &[u8; 32],
    ) -> Result<Option<Dek>, ClientError> {
        let Some(item) = self
            .trusted
            .get(&session_key(owner))
            .await
            .map_err(trusted_error)?
        else {
            return Ok(None);
        };
        let Ok(session) = ciborium::from_reader::<Session, _>(item.body.as_slice()) else {
            tracing::error!(owner, "unlock session item does not parse");
            return Ok(None);
        };
        if session.expires_ms <= crate::clock::now_ms() || session.verifier != verifier {
            return Ok(None);
        }
        let fleet = self.key(sealer).await?;
        let Ok(dek) = wrap::open(
            fleet.expose(),
            &session_aad(owner, session.expires_ms, verifier),
            &session.sealed,
        ) else {
            tracing::error!(owner, "unlock session did not open");
            return Ok(None);
        };
        let bytes: [u8; 32] = dek
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Internal)?;
        Ok(Some(Dek::from_bytes(bytes)))
    }

    /// Drops every key of `owner` (signed reset).
    pub async fn remove_owner(&self, owner: &str) -> Result<bool, ClientError> {
        let session = self.trusted.take(&session_key(owner)).await;
        let keys = self.trusted.take(&item_key(owner)).await;
        session.map_err(trusted_error)?;
        keys.map(|t| t.is_some()).map_err(trusted_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrap_is_bound_to_owner_key_and_expiry() {
        let fleet = [9u8; 32];
        let (private, _, public) = fresh().unwrap();
        let sealed = wrap::seal(&fleet, &aad("alice", &public, 100), private.as_ref()).unwrap();
        assert!(wrap::open(&fleet, &aad("alice", &public, 100), &sealed).is_ok());
        assert!(wrap::open(&fleet, &aad("mallory", &public, 100), &sealed).is_err());
        assert!(wrap::open(&fleet, &aad("alice", &public, 101), &sealed).is_err());
        assert!(wrap::open(&fleet, &aad("alice", &[1; 32], 100), &sealed).is_err());
    }

    #[test]
    fn owner_items_round_trip() {
        let list = vec![Wrapped {
            public: [3; 32],
            expires_ms: 5,
            sealed: vec![1, 2, 3],
        }];
        let back = decode(&encode(&list)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].public, [3; 32]);
        assert!(decode(b"\x01").is_err());
    }
}
