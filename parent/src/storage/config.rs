//! The `[storage]` section of `parent.toml`, parsed strictly and validated with the rest of the
//! file (every problem reported at once, see [`crate::config`]).
//!
//! ```toml
//! [storage]
//! backend = "s3"            # or "fs" (the default, for dev)
//! timeout_ms = 5000         # one call, retries included
//! max_object_bytes = 8388608
//! fs.root = "/var/lib/vettid/objects"
//! s3.bucket = "vettid-vaults"
//! s3.region = "us-east-1"   # else the default chain's region
//! s3.endpoint_url = "http://127.0.0.1:5000"   # local endpoints only
//! s3.force_path_style = true                  # likewise
//! s3.key_prefix = "prod/"   # optional; prepended to every key
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{DEFAULT_MAX_OBJECT_BYTES, DEFAULT_TIMEOUT};

/// Room left in a frame for the envelope around an object's bytes.
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// Default directory of the filesystem store.
pub const DEFAULT_FS_ROOT: &str = "/var/lib/vettid/objects";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StorageFile {
    backend: String,
    timeout_ms: u64,
    max_object_bytes: u64,
    fs: FsFile,
    s3: S3File,
}

impl Default for StorageFile {
    fn default() -> Self {
        Self {
            backend: "fs".into(),
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            fs: FsFile::default(),
            s3: S3File::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FsFile {
    root: PathBuf,
}

impl Default for FsFile {
    fn default() -> Self {
        Self {
            root: DEFAULT_FS_ROOT.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct S3File {
    bucket: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    force_path_style: bool,
    key_prefix: String,
}

/// Validated storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Where objects live.
    pub backend: StorageBackend,
    /// Bound of one call, retries included.
    pub timeout: Duration,
    /// Largest object stored or returned (must fit in one link frame).
    pub max_object_bytes: u64,
}

/// The object-store backend.
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// A directory (dev).
    Fs {
        /// Absolute path of the root directory.
        root: PathBuf,
    },
    /// An S3 bucket (production).
    S3(S3Config),
}

/// S3 settings.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region; `None` takes the default chain's (env, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for local S3-compatible servers.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), which local servers need.
    pub force_path_style: bool,
    /// Prepended to every key; empty or ending in `/`.
    pub key_prefix: String,
}

/// Validates the section; `None` (with problems recorded) when it is unusable.
pub(crate) fn validate(
    s: &StorageFile,
    max_frame_len: usize,
    problems: &mut Vec<String>,
) -> Option<StorageConfig> {
    let start = problems.len();
    if !(1..=60_000).contains(&s.timeout_ms) {
        problems.push(format!(
            "storage.timeout_ms = {}: must be between 1 and 60000",
            s.timeout_ms
        ));
    }
    let cap = max_frame_len.saturating_sub(FRAME_HEADROOM) as u64;
    if s.max_object_bytes == 0 || s.max_object_bytes > cap {
        problems.push(format!(
            "storage.max_object_bytes = {}: must be between 1 and {cap} (enclave.max_frame_len less {FRAME_HEADROOM})",
            s.max_object_bytes
        ));
    }
    let backend = match s.backend.as_str() {
        "fs" => {
            if !s.fs.root.is_absolute() {
                problems.push(format!(
                    "storage.fs.root {}: must be an absolute path",
                    s.fs.root.display()
                ));
            }
            if s.s3.bucket.is_some() {
                problems.push(
                    "storage.s3.bucket is set but storage.backend is \"fs\"; set backend = \"s3\""
                        .into(),
                );
            }
            Some(StorageBackend::Fs {
                root: s.fs.root.clone(),
            })
        }
        "s3" => s3_config(&s.s3, problems).map(StorageBackend::S3),
        other => {
            problems.push(format!(
                "storage.backend {other:?}: expected \"fs\" or \"s3\""
            ));
            None
        }
    };
    match backend {
        Some(backend) if problems.len() == start => Some(StorageConfig {
            backend,
            timeout: Duration::from_millis(s.timeout_ms),
            max_object_bytes: s.max_object_bytes,
        }),
        _ => None,
    }
}

fn s3_config(s: &S3File, problems: &mut Vec<String>) -> Option<S3Config> {
    let start = problems.len();
    match &s.bucket {
        None => problems.push("storage.s3.bucket is required when storage.backend = \"s3\"".into()),
        Some(b) if !valid_bucket(b) => problems.push(format!(
            "storage.s3.bucket {b:?}: expected 3-63 characters of a-z, 0-9, '.', '-'"
        )),
        Some(_) => {}
    }
    if let Some(r) = &s.region {
        if r.is_empty()
            || r.len() > 32
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!(
                "storage.s3.region {r:?}: expected a region name such as us-east-1"
            ));
        }
    }
    if let Some(u) = &s.endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://"))
            || u.contains(char::is_whitespace)
        {
            problems.push(format!(
                "storage.s3.endpoint_url {u:?}: expected http://HOST[:PORT] or https://..."
            ));
        }
    }
    if !valid_key_prefix(&s.key_prefix) {
        problems.push(format!(
            "storage.s3.key_prefix {:?}: expected empty, or segments of [A-Za-z0-9._-] each followed by '/' \
             (no leading '/', no '.' or '..' segment, at most 256 bytes)",
            s.key_prefix
        ));
    }
    (problems.len() == start).then(|| S3Config {
        bucket: s.bucket.clone().unwrap_or_default(),
        region: s.region.clone(),
        endpoint_url: s.endpoint_url.clone(),
        force_path_style: s.force_path_style,
        key_prefix: s.key_prefix.clone(),
    })
}

/// S3 bucket naming rules, the part that matters for a typo: length and alphabet.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && !b.starts_with(['.', '-'])
        && !b.ends_with(['.', '-'])
}

/// Empty, or `seg/seg/.../` with each segment a non-dot key segment.
fn valid_key_prefix(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    let Some(body) = p.strip_suffix('/') else {
        return false;
    };
    p.len() <= 256
        && body.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests;
