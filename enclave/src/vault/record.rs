//! What a vault is at rest: one object per vault, `vaults/{guid}/vault.v2`, and the plaintext
//! records inside it.
//!
//! ```text
//! StoredVault (CBOR, readable by the host)
//!   format = 2, vault = guid, version = n         ← n only ever increases
//!   material = KMS CiphertextBlob                  ← M, openable only by an attested enclave
//!   meta  = sealed(K_meta = HMAC(M, label), (vault, "meta",  n),             cbor(Meta))
//!   state = sealed(DEK,                     (vault, "state", meta.state_version), cbor(State))
//! ```
//!
//! Why one object: enrolment, a PIN change and an attempt-counter update each change several
//! records; S3 has no multi-object transaction, so they live in one object written with one
//! conditional PUT. A crash can never leave a new state beside an old verifier.
//!
//! Why two sealed sections: the attempt counter must be written after a wrong PIN, when the DEK
//! is unknown. `meta` is keyed from M alone (the enclave can always write it); `state` needs the
//! DEK (only a correct PIN opens it). `meta` records `state_version`, and `state`'s AAD binds it, so
//! the host cannot pair a new `meta` with an old `state` either.
//!
//! Rollback: the enclave remembers the highest `version` it has seen per vault and refuses older
//! objects. That holds for the enclave's lifetime; across an enclave restart the host could offer
//! an older version (documented in docs/VAULT.md, G18).

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use vettid_vault_crypto::{sealed, Dek, Material, ObjectId};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The stored format this build writes and reads.
pub const FORMAT: u8 = 2;
/// The object's name under `vaults/{guid}/`.
pub const OBJECT_NAME: &str = "vault.v2";
/// Label of the meta key derivation.
const META_KEY_LABEL: &[u8] = b"vettid-vault-meta-key-v1";
/// Largest stored object accepted on load. Commits are held below it ([`MAX_COMMIT_LEN`]), so
/// a vault can never be written that its next load would refuse.
pub const MAX_OBJECT_LEN: usize = 4 * 1024 * 1024;
/// Largest object a commit that changes the state may write: below [`MAX_OBJECT_LEN`] by room for
/// the meta-only writes that must always succeed (a counted PIN attempt, a UTK spent).
pub const MAX_COMMIT_LEN: usize = MAX_OBJECT_LEN - 64 * 1024;

/// The object key for `vault`.
pub fn object_key(vault: &str) -> String {
    format!("vaults/{vault}/{OBJECT_NAME}")
}

/// Why a stored vault could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not CBOR of the expected shape, wrong format or wrong vault id.
    #[error("stored vault is malformed")]
    Malformed,
    /// Older than a version this enclave has already seen: a replayed object.
    #[error("stored vault is older than one already seen")]
    Stale,
    /// A sealed section failed authentication (tampering, or a section of another version).
    #[error("stored vault failed authentication")]
    Tampered,
    /// Serialisation or the random source failed.
    #[error("internal error sealing the vault")]
    Internal,
}

/// The host-readable envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredVault {
    /// [`FORMAT`].
    pub format: u8,
    /// The vault id; must equal the key's.
    pub vault: String,
    /// Write counter.
    pub version: u64,
    /// KMS CiphertextBlob of the vault material M.
    #[serde(with = "serde_bytes")]
    pub material: Vec<u8>,
    /// Sealed [`Meta`].
    #[serde(with = "serde_bytes")]
    pub meta: Vec<u8>,
    /// Sealed [`State`].
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl StoredVault {
    /// Parses stored bytes for `vault`.
    ///
    /// # Errors
    /// [`RecordError::Malformed`].
    pub fn parse(vault: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_OBJECT_LEN {
            return Err(RecordError::Malformed);
        }
        let v: StoredVault = ciborium::from_reader(bytes).map_err(|_| RecordError::Malformed)?;
        if v.format != FORMAT || v.vault != vault || v.version == 0 {
            return Err(RecordError::Malformed);
        }
        Ok(v)
    }

    /// The stored bytes.
    ///
    /// # Errors
    /// [`RecordError::Internal`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut out =
            Vec::with_capacity(self.meta.len() + self.state.len() + self.material.len() + 96);
        ciborium::into_writer(self, &mut out).map_err(|_| RecordError::Internal)?;
        Ok(out)
    }
}

/// An X25519 or Ed25519 private key (or seed) with its public half.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct KeyPair {
    /// Private key (X25519 scalar or Ed25519 seed).
    #[serde(with = "serde_bytes")]
    pub private: [u8; 32],
    /// Public key.
    #[serde(with = "serde_bytes")]
    pub public: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// The part of a vault the enclave can read and write without the PIN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The vault's long-lived X25519 key the app encrypts PINs to (`ecies_public_key`).
    pub ecies: KeyPair,
    /// The PIN verifier (HMAC of the DEK): a wrong PIN is rejected warm or cold.
    #[serde(with = "serde_bytes")]
    pub verifier: [u8; 32],
    /// Failed PIN attempts since the last success (counted before the PIN is evaluated).
    pub failed_attempts: u32,
    /// No PIN is evaluated before this time (Unix ms); 0 = no back-off.
    pub backoff_until_ms: u64,
    /// Version of the sealed [`State`] this meta belongs to.
    pub state_version: u64,
    /// A signed `credential.delete` arrived while the vault was locked: applied at next unlock.
    pub credential_delete_pending: bool,
    /// Enrolment time (Unix ms).
    pub enrolled_at_ms: u64,
    /// Live UTKs, oldest first. A used UTK is removed (single use). They live here, not in
    /// [`State`], so a PIN request's UTK is checked (and a v2 PIN envelope, sealed to its UTK,
    /// opened) before any PIN is counted or evaluated: a made-up or spent UTK id stops a request
    /// before it can touch the counter. Same protection as the ECIES key beside them (M).
    #[serde(default)]
    pub utks: Vec<Utk>,
    /// Ephemeral keys of the v1 PIN envelopes that unlocked this vault, newest last, at most
    /// [`V1_SEEN_MAX`]: v1 envelopes do not name their UTK inside the ciphertext, so this is what
    /// refuses a recorded correct unlock replayed under another live UTK id.
    #[serde(default)]
    pub v1_seen: std::collections::VecDeque<[u8; 32]>,
    /// SHA-256 of the proof `credential.create` must present (given to the app inside the
    /// sealed v2 reply of `pin.setup` or of a `pin.unlock` while no credential exists).
    #[serde(default)]
    pub create_proof: Option<[u8; 32]>,
}

/// Most v1 envelope keys remembered per vault (32 bytes each).
pub const V1_SEEN_MAX: usize = 256;

/// One UTK (the app encrypts a request payload to `public`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Utk {
    /// `utk-{16 hex}`.
    pub id: String,
    /// The key pair.
    pub key: KeyPair,
    /// Creation time (Unix ms), for pruning.
    pub created_at_ms: u64,
}

/// The v1 Protean credential's secret parts (what `encrypted_credential` decrypts to).
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Credential {
    /// Ed25519 identity seed and public key.
    pub identity: KeyPair,
    /// 32-byte vault master secret.
    #[serde(with = "serde_bytes")]
    pub master_secret: [u8; 32],
    /// The app's Argon2id PHC password hash (a bearer secret: compared in constant time).
    pub password_hash: String,
    /// Bumped on every change.
    pub version: u32,
    /// Creation time (Unix ms).
    pub created_at_ms: u64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("identity", &self.identity)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One stored secret.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Secret {
    /// Name the app gave it.
    pub name: String,
    /// The value.
    pub value: String,
    /// Optional category.
    pub category: Option<String>,
    /// Creation time (Unix ms).
    pub created_at_ms: u64,
    /// Last update (Unix ms).
    pub updated_at_ms: u64,
    /// Bumped on every update.
    pub version: u32,
}

/// The part of a vault only a correct PIN opens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Credential encryption key pair (the credential is sealed to its public half).
    pub cek: Option<KeyPair>,
    /// The credential, once created.
    pub credential: Option<Credential>,
    /// Secrets by id.
    pub secrets: std::collections::BTreeMap<String, Secret>,
    /// Profile given at PIN setup (`first_name`, `last_name`, `email`), as JSON text.
    pub profile: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The key `meta` is sealed under: HMAC-SHA256(M, label).
pub fn meta_key(material: &Material) -> zeroize::Zeroizing<[u8; 32]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, material.expose());
    let tag = hmac::sign(&key, META_KEY_LABEL);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

fn to_cbor<T: Serialize>(value: &T) -> Result<zeroize::Zeroizing<Vec<u8>>, RecordError> {
    let mut out = zeroize::Zeroizing::new(Vec::new());
    ciborium::into_writer(value, &mut *out).map_err(|_| RecordError::Internal)?;
    Ok(out)
}

/// Seals `meta` as version `version` of `vault`.
///
/// # Errors
/// [`RecordError::Internal`].
pub fn seal_meta(
    material: &Material,
    vault: &str,
    version: u64,
    meta: &Meta,
) -> Result<Vec<u8>, RecordError> {
    let id = ObjectId {
        vault,
        name: "meta",
        version,
    };
    sealed::seal(&meta_key(material), &id, &to_cbor(meta)?).map_err(|_| RecordError::Internal)
}

/// Opens the meta section of `stored`.
///
/// # Errors
/// [`RecordError::Tampered`] or [`RecordError::Malformed`].
pub fn open_meta(material: &Material, stored: &StoredVault) -> Result<Meta, RecordError> {
    let id = ObjectId {
        vault: &stored.vault,
        name: "meta",
        version: stored.version,
    };
    let plain =
        sealed::open(&meta_key(material), &id, &stored.meta).map_err(|_| RecordError::Tampered)?;
    ciborium::from_reader(plain.as_slice()).map_err(|_| RecordError::Malformed)
}

/// Seals `state` as state version `version` of `vault` under the DEK.
///
/// # Errors
/// [`RecordError::Internal`].
pub fn seal_state(
    dek: &Dek,
    vault: &str,
    version: u64,
    state: &State,
) -> Result<Vec<u8>, RecordError> {
    let id = ObjectId {
        vault,
        name: "state",
        version,
    };
    sealed::seal(dek.expose(), &id, &to_cbor(state)?).map_err(|_| RecordError::Internal)
}

/// Opens the state section, which must be `meta.state_version`.
///
/// # Errors
/// [`RecordError::Tampered`] (also for a DEK from a wrong PIN, which the verifier normally catches
/// first) or [`RecordError::Malformed`].
pub fn open_state(
    dek: &Dek,
    vault: &str,
    meta: &Meta,
    sealed_state: &[u8],
) -> Result<State, RecordError> {
    let id = ObjectId {
        vault,
        name: "state",
        version: meta.state_version,
    };
    let plain = sealed::open(dek.expose(), &id, sealed_state).map_err(|_| RecordError::Tampered)?;
    ciborium::from_reader(plain.as_slice()).map_err(|_| RecordError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            ecies: KeyPair {
                private: [1; 32],
                public: [2; 32],
            },
            verifier: [3; 32],
            failed_attempts: 0,
            backoff_until_ms: 0,
            state_version: 1,
            credential_delete_pending: false,
            enrolled_at_ms: 5,
            utks: Vec::new(),
            v1_seen: Default::default(),
            create_proof: None,
        }
    }

    #[test]
    fn sections_are_bound_to_vault_name_and_version() {
        let m = Material::from_bytes([7; 32]);
        let dek = Dek::from_bytes([9; 32]);
        let sealed_meta = seal_meta(&m, "u1", 3, &meta()).unwrap();
        let state = seal_state(&dek, "u1", 1, &State::default()).unwrap();
        let stored = StoredVault {
            format: FORMAT,
            vault: "u1".into(),
            version: 3,
            material: vec![0; 8],
            meta: sealed_meta.clone(),
            state: state.clone(),
        };
        let bytes = stored.to_bytes().unwrap();
        let back = StoredVault::parse("u1", &bytes).unwrap();
        let opened = open_meta(&m, &back).unwrap();
        assert_eq!(opened.state_version, 1);
        open_state(&dek, "u1", &opened, &back.state).unwrap();

        // Another vault's id, a bumped outer version, a wrong material: all refused.
        assert_eq!(
            StoredVault::parse("u2", &bytes).unwrap_err(),
            RecordError::Malformed
        );
        let mut bumped = back.clone();
        bumped.version = 4;
        assert_eq!(open_meta(&m, &bumped).unwrap_err(), RecordError::Tampered);
        assert_eq!(
            open_meta(&Material::from_bytes([8; 32]), &back).unwrap_err(),
            RecordError::Tampered
        );
        // State of another state_version, or under another DEK.
        let mut later = opened.clone();
        later.state_version = 2;
        assert_eq!(
            open_state(&dek, "u1", &later, &back.state).unwrap_err(),
            RecordError::Tampered
        );
        assert_eq!(
            open_state(&Dek::from_bytes([1; 32]), "u1", &opened, &back.state).unwrap_err(),
            RecordError::Tampered
        );
        // Meta used as state.
        assert!(open_state(&dek, "u1", &opened, &sealed_meta).is_err());
    }

    #[test]
    fn malformed_objects_are_refused() {
        for bad in [&b""[..], b"\xa0", b"garbage", &[0xff; 64]] {
            assert_eq!(
                StoredVault::parse("u1", bad).unwrap_err(),
                RecordError::Malformed
            );
        }
        let zero = StoredVault {
            format: FORMAT,
            vault: "u1".into(),
            version: 0,
            material: vec![],
            meta: vec![],
            state: vec![],
        };
        assert!(StoredVault::parse("u1", &zero.to_bytes().unwrap()).is_err());
        let old = StoredVault {
            format: 1,
            version: 1,
            ..zero
        };
        assert!(StoredVault::parse("u1", &old.to_bytes().unwrap()).is_err());
    }
}
