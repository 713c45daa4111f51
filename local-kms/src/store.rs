//! The keys: an in-memory map persisted to a JSON file after every change.
//!
//! Each key is 32 random bytes (AES-256-GCM) with its KMS state. The file holds key material in base64: it is a
//! dev/test stand-in, and the file is written with mode 0600. Writes go to a temporary file that is then
//! renamed, so a crash never leaves a half-written key file. The map sits behind a `std::sync::Mutex` held for
//! microseconds (plus the small synchronous file write on a change); no lock is held across an `.await`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{check_key_id, parse_pcr};
use crate::error::{KmsError, StartError};

/// Length of a key's AES-256-GCM material.
pub const KEY_LEN: usize = 32;

/// A key's lifecycle state, as KMS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Refuses cryptographic operations with `DisabledException`.
    Disabled,
    /// Scheduled for deletion: refuses almost everything with `KMSInvalidStateException`.
    PendingDeletion,
}

impl KeyState {
    /// KMS's spelling (`KeyMetadata.KeyState`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
        }
    }
}

/// One key as stored in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// The key id (a UUID for keys we create).
    pub key_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Creation time, seconds since the Unix epoch.
    pub creation_date: u64,
    /// When a pending deletion would happen (we never actually delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<u64>,
    /// This key's own PCR0 allow-list (hex); empty means the server's `--allow-pcr0` list applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_pcr0: Vec<String>,
    /// Refuse Decrypt/GenerateDataKey without `Recipient` for this key (like a key policy that conditions on
    /// `kms:RecipientAttestation:PCR0`, which a request without attestation never satisfies).
    #[serde(default)]
    pub require_recipient: bool,
    /// The account the key lives in; absent: the server's `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Alias names (`alias/…`) pointing at this key, in its account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The key policy document as given to CreateKey or PutKeyPolicy; absent: the default policy
    /// (`policy::default_policy`) built from `allowed_pcr0` and `require_recipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The AES-256-GCM key, base64.
    pub material: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    keys: Vec<StoredKey>,
}

/// A key ready for use: its stored record plus decoded material and PCR0 list.
#[derive(Clone)]
pub struct Key {
    /// The stored record (its `material` field is the base64 text).
    pub record: StoredKey,
    /// Decoded material.
    pub material: Zeroizing<[u8; KEY_LEN]>,
    /// Decoded per-key PCR0 allow-list.
    pub allowed_pcr0: Vec<Vec<u8>>,
}

/// All keys, and the file they live in.
pub struct KeyStore {
    path: PathBuf,
    keys: Mutex<BTreeMap<String, Key>>,
}

impl KeyStore {
    /// Loads `path` (an absent file is an empty store).
    ///
    /// # Errors
    /// [`StartError::KeyFile`] when the file cannot be read or holds an invalid key.
    pub fn load(path: &Path) -> Result<Self, StartError> {
        let fail = |reason: String| StartError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let file: KeyFile = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
            Err(e) => return Err(fail(e.to_string())),
        };
        let mut keys = BTreeMap::new();
        for record in file.keys {
            let id = record.key_id.clone();
            let key = decode(record).map_err(|e| fail(format!("key {id}: {e}")))?;
            if keys.insert(id.clone(), key).is_some() {
                return Err(fail(format!("key {id} appears twice")));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            keys: Mutex::new(keys),
        })
    }

    /// A copy of the key with this id.
    pub fn get(&self, key_id: &str) -> Option<Key> {
        self.lock().get(key_id).cloned()
    }

    /// Every key (the store is small: a handful of keys in dev and tests).
    pub fn all(&self) -> Vec<Key> {
        self.lock().values().cloned().collect()
    }

    /// Adds a fresh key with `key_id` in `account` (None: the server's) and `policy` (None: the
    /// default) unless one exists; returns the key either way.
    ///
    /// # Errors
    /// [`KmsError::Internal`] when random generation or the file write fails.
    pub fn create(
        &self,
        key_id: &str,
        description: &str,
        now: u64,
        account: Option<&str>,
        policy: Option<String>,
    ) -> Result<Key, KmsError> {
        let mut keys = self.lock();
        if let Some(existing) = keys.get(key_id) {
            return Ok(existing.clone());
        }
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(material.as_mut())
            .map_err(|_| KmsError::Internal("random generation failed".into()))?;
        let record = StoredKey {
            key_id: key_id.to_owned(),
            description: description.to_owned(),
            state: KeyState::Enabled,
            creation_date: now,
            deletion_date: None,
            allowed_pcr0: Vec::new(),
            require_recipient: false,
            account: account.map(str::to_owned),
            aliases: Vec::new(),
            policy,
            material: base64::engine::general_purpose::STANDARD.encode(material.as_ref()),
        };
        let key = Key {
            record,
            material,
            allowed_pcr0: Vec::new(),
        };
        keys.insert(key_id.to_owned(), key.clone());
        self.persist(&keys)?;
        Ok(key)
    }

    /// Applies `change` to the key's record and persists; returns the updated key.
    ///
    /// # Errors
    /// [`KmsError::NotFound`]; whatever `change` returns; [`KmsError::Internal`] when the write fails.
    pub fn update(
        &self,
        key_id: &str,
        arn: &str,
        change: impl FnOnce(&mut StoredKey) -> Result<(), KmsError>,
    ) -> Result<Key, KmsError> {
        let mut keys = self.lock();
        let key = keys
            .get_mut(key_id)
            .ok_or_else(|| KmsError::NotFound(format!("Key '{arn}' does not exist")))?;
        let before = key.record.clone();
        if let Err(e) = change(&mut key.record) {
            key.record = before;
            return Err(e);
        }
        let updated = key.clone();
        if let Err(e) = self.persist(&keys) {
            // Keep memory and file in agreement: undo the change that could not be stored.
            if let Some(key) = keys.get_mut(key_id) {
                key.record = before;
            }
            return Err(e);
        }
        Ok(updated)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Key>> {
        // Records are replaced whole under the lock, so a panic elsewhere cannot leave one half-written.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self, keys: &BTreeMap<String, Key>) -> Result<(), KmsError> {
        let file = KeyFile {
            version: 1,
            keys: keys.values().map(|k| k.record.clone()).collect(),
        };
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&file).map_err(|e| KmsError::Internal(e.to_string()))?,
        );
        write_private(&self.path, &json)
            .map_err(|e| KmsError::Internal(format!("cannot write the key file: {e}")))
    }
}

fn decode(record: StoredKey) -> Result<Key, String> {
    check_key_id(&record.key_id)?;
    if let Some(account) = &record.account {
        crate::config::check_account(account)?;
    }
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(&record.material)
            .map_err(|_| "material is not base64".to_string())?,
    );
    let material: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("material is not {KEY_LEN} bytes"))?;
    let allowed_pcr0 = record
        .allowed_pcr0
        .iter()
        .map(|hex| parse_pcr(hex).map_err(|e| format!("allowed_pcr0 {hex}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Key {
        record,
        material: Zeroizing::new(material),
        allowed_pcr0,
    })
}

/// Writes `bytes` to `path` via a 0600 temporary file in the same directory and a rename: the
/// one way this crate writes a secret (key material here, the TLS private key in [`crate::tls`]).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
