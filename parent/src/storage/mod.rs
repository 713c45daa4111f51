//! The object store the parent runs on the enclave's behalf: `vaults/{guid}/...` objects on S3
//! in production ([`s3::S3Store`]) or in a directory in dev ([`fs::FsStore`]).
//!
//! Every body is ciphertext the enclave sealed; the parent cannot read or forge it, only lose,
//! delay or replay it, and the enclave guards against that (AEAD with a version in the AAD).
//! What the parent *must* get right is the conditional write: `Create` (`If-None-Match: *`) and
//! `IfMatch(etag)`. Those are what make two hosts sharing one bucket safe (defect G17: VettID v1
//! let the last writer win, silently), and they are why a `Conflict` is a *result*, not an
//! error: it tells the enclave to reload and retry.
//!
//! Layers: [`key`] validates what the enclave sends, a backend implements [`ObjectStore`], and
//! [`relay`] turns a protocol request into a bounded, counted call and a protocol response.

pub mod config;
pub mod fs;
pub mod key;
pub mod relay;
pub mod s3;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
pub use vettid_protocol::{ListedObject, PutCondition};

pub use key::{KeyError, ListPrefix, ObjectKey};
pub use relay::StorageRelay;

/// How long one storage call may take unless configured otherwise (`storage.timeout_ms`). Well
/// under the enclave's own request deadline, so the enclave gets our `Unavailable` rather than
/// its own timeout and can tell "S3 is down" from "the parent is gone".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest object stored or returned unless configured otherwise (`storage.max_object_bytes`):
/// it must fit in one link frame with room for the envelope.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 8 * 1024 * 1024;

/// Largest page of a listing (S3's own cap).
pub const MAX_LIST_KEYS: u32 = 1000;

/// Why a storage call failed. "Not found" and "precondition failed" are not here: they are
/// answers ([`PutResult::Conflict`], `None`, ...). Reasons are bland on purpose; backend detail
/// (AWS messages, paths) is logged by the backend, never carried to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend failed or is unreachable.
    #[error("object store unavailable: {0}")]
    Unavailable(&'static str),
    /// The call did not finish within the storage timeout.
    #[error("object store timed out")]
    Timeout,
    /// The key, prefix or token broke a rule of [`key`].
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    /// The object exceeds the configured maximum size.
    #[error("object too large")]
    TooLarge,
}

/// An object and the ETag that identifies this version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its bytes.
    pub body: Bytes,
    /// ETag, quoted as S3 returns it.
    pub etag: String,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// ETag, quoted.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    /// Stored durably; the new ETag.
    Written(String),
    /// The precondition failed: the object exists (`Create`) or changed or vanished (`IfMatch`).
    Conflict,
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteResult {
    /// The object is gone.
    Deleted,
    /// There was no such object.
    NotFound,
    /// It exists with another ETag than required.
    Conflict,
}

/// One page of a listing, keys in lexicographic (byte) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Objects on this page.
    pub objects: Vec<ListedObject>,
    /// Token for the next page; `None` on the last one.
    pub continuation: Option<String>,
}

/// A backend. Callers ([`relay`]) bound every call with a timeout; backends may additionally
/// bound their own I/O. Keys arrive validated.
pub trait ObjectStore: Send + Sync + 'static {
    /// Reads an object; `None` if absent.
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Object>, StorageError>> + Send;

    /// Reads an object's ETag and size; `None` if absent.
    fn head(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Meta>, StorageError>> + Send;

    /// Writes an object if `condition` holds, atomically with respect to other writers.
    fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        condition: &PutCondition,
    ) -> impl Future<Output = Result<PutResult, StorageError>> + Send;

    /// Deletes an object, only if its ETag is `if_match` when given.
    fn delete(
        &self,
        key: &ObjectKey,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<DeleteResult, StorageError>> + Send;

    /// Lists up to `max_keys` (1..=[`MAX_LIST_KEYS`]) objects under `prefix`, after the page
    /// `continuation` names.
    fn list(
        &self,
        prefix: &ListPrefix,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> impl Future<Output = Result<Page, StorageError>> + Send;
}

/// The configured backend. An enum rather than `dyn ObjectStore`: the trait's methods return
/// `impl Future`, which is not object safe, and there are exactly two cases.
pub enum Store {
    /// A directory (dev default).
    Fs(fs::FsStore),
    /// An S3 bucket (production).
    S3(s3::S3Store),
}

impl Store {
    /// Backend name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Fs(_) => "fs",
            Store::S3(_) => "s3",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Fs($s) => $call.await,
            Store::S3($s) => $call.await,
        }
    };
}

impl ObjectStore for Store {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        delegate!(self, s => s.get(key))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<Meta>, StorageError> {
        delegate!(self, s => s.head(key))
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        condition: &PutCondition,
    ) -> Result<PutResult, StorageError> {
        delegate!(self, s => s.put(key, body, condition))
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        if_match: Option<&str>,
    ) -> Result<DeleteResult, StorageError> {
        delegate!(self, s => s.delete(key, if_match))
    }

    async fn list(
        &self,
        prefix: &ListPrefix,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<Page, StorageError> {
        delegate!(self, s => s.list(prefix, continuation, max_keys))
    }
}

/// Normalises an ETag to its quoted form, so callers may pass `abc` or `"abc"` alike (S3 is
/// lenient about quotes in `If-Match`; the filesystem store compares exactly).
pub fn quote_etag(etag: &str) -> String {
    let bare = etag.trim_matches('"');
    format!("\"{bare}\"")
}

/// Opens the configured backend: creates the filesystem store's root, or builds the S3 client
/// from the default credential chain (no network call is made here; the first request is).
///
/// # Errors
/// The filesystem root cannot be created; the text names the path, for the operator.
pub async fn open(config: &config::StorageConfig) -> Result<Store, String> {
    match &config.backend {
        config::StorageBackend::Fs { root } => fs::FsStore::open(root, config.max_object_bytes)
            .map(Store::Fs)
            .map_err(|e| format!("storage.fs.root {}: {e}", root.display())),
        config::StorageBackend::S3(s3) => Ok(Store::S3(
            s3::S3Store::connect(s3, config.timeout, config.max_object_bytes).await,
        )),
    }
}
