//! The filesystem object store: the dev default, and the store two dev parents share in the
//! two-host tests, so its conditional writes must hold across processes, not only across tasks.
//!
//! Layout: key `vaults/g/x` is the file `ROOT/vaults/g/x@`; its lock is `x@lock` and its
//! in-progress write `x@tmp` beside it. `@` is outside the key alphabet ([`super::key`]), so
//! these names never collide with a key or with the directory of a longer key (`vaults/g/x/y`
//! lives in the directory `x`, the object `vaults/g/x` in the file `x@`).
//!
//! A write takes an exclusive `flock` on the key's lock file (per open file description, so it
//! excludes other tasks of this process and other processes alike), compares the current ETag
//! under the lock, then writes the temp file, fsyncs it, renames it over the object and fsyncs
//! the directory: a reader sees the old or the new object, never a mix, and a write that
//! returned survives a crash (RPO 0, defect G16). Reads take no lock: rename is atomic.
//!
//! ETag = quoted hex SHA-256 of the content, so equal content has an equal ETag, as with S3's MD5
//! for single-part uploads.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{
    quote_etag, DeleteResult, ListPrefix, ListedObject, Meta, Object, ObjectKey, ObjectStore, Page,
    PutCondition, PutResult, StorageError,
};

/// Suffix of an object's file.
const OBJECT_SUFFIX: &str = "@";

/// A directory of objects.
#[derive(Debug, Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    max_object_bytes: u64,
}

impl FsStore {
    /// Opens (creating it if needed, mode from the umask) the store rooted at `root`.
    ///
    /// # Errors
    /// The directory cannot be created or is not a directory.
    pub fn open(root: impl Into<PathBuf>, max_object_bytes: u64) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        if !std::fs::metadata(&root)?.is_dir() {
            return Err(std::io::Error::new(
                ErrorKind::NotADirectory,
                "storage root",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                max_object_bytes,
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Runs blocking filesystem work off the async workers. An I/O error is logged here, with
    /// the path, and leaves as a bland `Unavailable`.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Inner) -> std::io::Result<Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                tracing::warn!(op, root = %self.inner.root.display(), error = %e, "filesystem store error");
                Err(StorageError::Unavailable("filesystem error"))
            }
            Err(e) => {
                tracing::error!(op, error = %e, "filesystem store task failed");
                Err(StorageError::Unavailable("filesystem error"))
            }
        }
    }
}

// === impl Inner (blocking) ===

impl Inner {
    /// (directory, object file, lock file, temp file) of `key`.
    fn paths(&self, key: &ObjectKey) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
        let (dir, name) = key
            .as_str()
            .rsplit_once('/')
            .expect("validated keys contain `/`");
        let dir = self.root.join(dir);
        let object = dir.join(format!("{name}{OBJECT_SUFFIX}"));
        let lock = dir.join(format!("{name}@lock"));
        let temp = dir.join(format!("{name}@tmp"));
        (dir, object, lock, temp)
    }

    /// Reads a file, refusing (before reading) one over the size cap. `None` if absent.
    fn read(&self, path: &Path) -> std::io::Result<Result<Option<Vec<u8>>, StorageError>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        if size > self.max_object_bytes {
            return Ok(Err(StorageError::TooLarge));
        }
        let mut body = Vec::with_capacity(size as usize);
        file.read_to_end(&mut body)?;
        Ok(Ok(Some(body)))
    }

    /// Takes the key's exclusive lock, creating (and making durable) its directories first.
    fn lock(&self, dir: &Path, lock: &Path) -> std::io::Result<File> {
        self.create_dirs(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock)?;
        file.lock()?;
        Ok(file)
    }

    /// `create_dir_all` that also fsyncs each parent of a directory it created, so a new vault's
    /// directory is as durable as the object written into it.
    fn create_dirs(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = dir.parent().unwrap_or(&self.root);
        if parent != self.root && parent.starts_with(&self.root) {
            self.create_dirs(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => File::open(parent)?.sync_all(),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn put(
        &self,
        key: &ObjectKey,
        body: &[u8],
        condition: &PutCondition,
    ) -> std::io::Result<PutResult> {
        let (dir, object, lock, temp) = self.paths(key);
        let _guard = self.lock(&dir, &lock)?;
        // Under the lock: nobody else can change the object between this check and the rename.
        let current = match File::open(&object) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                Some(etag_of(&buf))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let allowed = match condition {
            PutCondition::Create => current.is_none(),
            PutCondition::IfMatch(want) => current.is_some_and(|c| c == quote_etag(want)),
        };
        if !allowed {
            return Ok(PutResult::Conflict);
        }
        let mut file = File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &object)?;
        File::open(&dir)?.sync_all()?;
        Ok(PutResult::Written(etag_of(body)))
    }

    fn delete(&self, key: &ObjectKey, if_match: Option<&str>) -> std::io::Result<DeleteResult> {
        let (dir, object, lock, _) = self.paths(key);
        if !dir.is_dir() {
            return Ok(DeleteResult::NotFound);
        }
        let _guard = self.lock(&dir, &lock)?;
        let current = match std::fs::read(&object) {
            Ok(body) => etag_of(&body),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(DeleteResult::NotFound),
            Err(e) => return Err(e),
        };
        if if_match.is_some_and(|want| quote_etag(want) != current) {
            return Ok(DeleteResult::Conflict);
        }
        std::fs::remove_file(&object)?;
        File::open(&dir)?.sync_all()?;
        Ok(DeleteResult::Deleted)
    }

    fn list(
        &self,
        prefix: &ListPrefix,
        after: Option<&str>,
        max_keys: u32,
    ) -> std::io::Result<Page> {
        let mut keys = Vec::new();
        walk(&self.root.join(prefix.as_str()), prefix.as_str(), &mut keys)?;
        // Whole-key byte order, as S3 lists: per-directory order would put `a/b` before `a-c`.
        keys.sort();
        let mut page = Page::default();
        let mut remaining = keys
            .into_iter()
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .peekable();
        while page.objects.len() < max_keys as usize {
            let Some(key) = remaining.next() else { break };
            let path = self.root.join(format!("{key}{OBJECT_SUFFIX}"));
            match std::fs::read(&path) {
                Ok(body) => page.objects.push(ListedObject {
                    etag: etag_of(&body),
                    size: body.len() as u64,
                    key,
                }),
                // Deleted since the walk: not part of this listing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if remaining.peek().is_some() {
            page.continuation = page.objects.last().map(|o| o.key.clone());
        }
        Ok(page)
    }
}

/// Collects the keys of every object file under `dir`, whose key prefix is `prefix`.
fn walk(dir: &Path, prefix: &str, keys: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_dir() && !name.contains('@') {
            walk(&entry.path(), &format!("{prefix}{name}/"), keys)?;
        } else if kind.is_file() {
            if let Some(stem) = name
                .strip_suffix(OBJECT_SUFFIX)
                .filter(|s| !s.contains('@'))
            {
                keys.push(format!("{prefix}{stem}"));
            }
        }
    }
    Ok(())
}

/// Quoted hex SHA-256.
pub fn etag_of(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    format!("\"{}\"", hex::encode(digest.as_ref()))
}

// === impl ObjectStore ===

impl ObjectStore for FsStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        let (_, object, _, _) = self.inner.paths(key);
        let body = self.blocking("get", move |s| s.read(&object)).await?;
        Ok(body.map(|b| Object {
            etag: etag_of(&b),
            body: Bytes::from(b),
        }))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<Meta>, StorageError> {
        let (_, object, _, _) = self.inner.paths(key);
        let body = self.blocking("head", move |s| s.read(&object)).await?;
        Ok(body.map(|b| Meta {
            etag: etag_of(&b),
            size: b.len() as u64,
        }))
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        condition: &PutCondition,
    ) -> Result<PutResult, StorageError> {
        if body.len() as u64 > self.inner.max_object_bytes {
            return Err(StorageError::TooLarge);
        }
        let (key, condition) = (key.clone(), condition.clone());
        self.blocking("put", move |s| s.put(&key, &body, &condition).map(Ok))
            .await
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        if_match: Option<&str>,
    ) -> Result<DeleteResult, StorageError> {
        let (key, if_match) = (key.clone(), if_match.map(str::to_owned));
        self.blocking("delete", move |s| {
            s.delete(&key, if_match.as_deref()).map(Ok)
        })
        .await
    }

    async fn list(
        &self,
        prefix: &ListPrefix,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<Page, StorageError> {
        let (prefix, after) = (prefix.clone(), continuation.map(str::to_owned));
        self.blocking("list", move |s| {
            s.list(&prefix, after.as_deref(), max_keys).map(Ok)
        })
        .await
    }
}
