//! Storage reachability for `/health`: one cheap probe of the configured object store, run on
//! demand and cached for [`PROBE_TTL`], so a load balancer polling `/health` never turns into a
//! stream of S3 calls, and concurrent `/health` requests share one probe (the cache's lock is held
//! across it).
//!
//! What "reachable" means per backend:
//! - fs: the root is a directory and a file can be created in it and removed again. A file in
//!   the root's place, a missing root or a read-only mount fail here before the enclave's next
//!   write would.
//! - S3: `HeadBucket` answers. It needs the `s3:ListBucket` permission the store's listings
//!   already use, and unlike a HEAD of an object it tells a missing bucket (404) apart from a
//!   missing key, which an object HEAD cannot (its 404 has no body).
//!
//! The probe never touches a `vaults/` key. Its error texts are for the operator reading
//! `/health` on the host (paths, S3 status and code); they never reach the enclave.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::storage::config::{StorageBackend, StorageConfig};
use crate::storage::Store;

/// How long a probe result is reused: `/health` stays cheap however often it is polled, and a
/// broken store still shows within a few seconds.
pub const PROBE_TTL: Duration = Duration::from_secs(3);

/// Bound of one probe: well under a health checker's own timeout, so `/health` answers even
/// while S3 hangs.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probe touches.
enum Target {
    Fs(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

/// One probe's result.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Whether the store answered as expected.
    pub reachable: bool,
    /// Why not, for the operator.
    pub error: Option<String>,
    /// When it ran.
    pub at: Instant,
}

/// The object store's reachability, probed on demand and cached.
pub struct StorageProbe {
    target: Target,
    ttl: Duration,
    last: Mutex<Option<Probe>>,
}

impl StorageProbe {
    /// Probes the store the parent opened (`config` names the S3 bucket, which the store keeps
    /// private).
    pub fn new(store: &Store, config: &StorageConfig) -> Self {
        match (store, &config.backend) {
            (Store::S3(s3), StorageBackend::S3(c)) => Self::s3(s3.client().clone(), &c.bucket),
            (Store::Fs(fs), _) => Self::fs(fs.root()),
            // `storage::open` builds the store from this very config, so this cannot happen;
            // if it ever did, the probe would say so rather than guess a bucket.
            (Store::S3(s3), StorageBackend::Fs { .. }) => Self::s3(s3.client().clone(), ""),
        }
    }

    /// Probes a filesystem store's root.
    pub fn fs(root: &Path) -> Self {
        Self::with_target(Target::Fs(root.to_owned()))
    }

    /// Probes an S3 bucket with `client`.
    pub fn s3(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        Self::with_target(Target::S3 {
            client,
            bucket: bucket.to_owned(),
        })
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            ttl: PROBE_TTL,
            last: Mutex::new(None),
        }
    }

    /// Replaces [`PROBE_TTL`] (tests).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// `fs` or `s3`.
    pub fn backend(&self) -> &'static str {
        match self.target {
            Target::Fs(_) => "fs",
            Target::S3 { .. } => "s3",
        }
    }

    /// The cached result while fresh, else a new probe (bounded by [`PROBE_TIMEOUT`]).
    pub async fn status(&self) -> Probe {
        let mut last = self.last.lock().await;
        if let Some(p) = last.as_ref().filter(|p| p.at.elapsed() < self.ttl) {
            return p.clone();
        }
        let result = match tokio::time::timeout(PROBE_TIMEOUT, self.run()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        let probe = Probe {
            reachable: result.is_ok(),
            error: result.err(),
            at: Instant::now(),
        };
        // Log transitions only: a dashboard polling a broken store must not flood the journal.
        let was = last.as_ref().map(|p| p.reachable);
        if was != Some(probe.reachable) {
            match &probe.error {
                None if was.is_some() => {
                    tracing::info!(backend = self.backend(), "object store reachable again");
                }
                None => {}
                Some(e) => {
                    tracing::warn!(backend = self.backend(), error = %e, "object store unreachable");
                }
            }
        }
        *last = Some(probe.clone());
        probe
    }

    /// The `storage` object of `/health`.
    pub async fn json(&self) -> Value {
        let p = self.status().await;
        json!({
            "backend": self.backend(),
            "reachable": p.reachable,
            "error": p.error,
            "checked_ms_ago": p.at.elapsed().as_millis() as u64,
        })
    }

    async fn run(&self) -> Result<(), String> {
        match &self.target {
            Target::Fs(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || probe_dir(&root))
                    .await
                    .map_err(|e| format!("probe task failed: {e}"))?
            }
            Target::S3 { client, bucket } => head_bucket(client, bucket).await,
        }
    }
}

/// The fs check: a directory we can create a file in. The probe file's name ends in `@`, outside
/// the key alphabet, so it can never be mistaken for an object (see `storage::fs`).
fn probe_dir(root: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!("{}: not a directory", root.display()));
    }
    let probe = root.join(format!(".health-probe-{}@", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| format!("{}: not writable: {e}", root.display()))?;
    std::fs::remove_file(&probe).map_err(|e| format!("{}: {e}", probe.display()))
}

async fn head_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    let err = match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    tracing::debug!(bucket, error = %DisplayErrorContext(&err), "HeadBucket failed");
    let status = err.raw_response().map(|r| r.status().as_u16());
    Err(match (&err, status, err.code()) {
        (_, Some(s), Some(code)) => format!("HeadBucket {bucket}: {s} {code}"),
        (_, Some(s), None) => format!("HeadBucket {bucket}: HTTP {s}"),
        (SdkError::TimeoutError(_), ..) => format!("HeadBucket {bucket}: timed out"),
        (SdkError::DispatchFailure(_), ..) => format!("HeadBucket {bucket}: cannot connect"),
        _ => format!("HeadBucket {bucket}: request failed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writable_directory_is_reachable_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let probe = StorageProbe::fs(dir.path());
        let p = probe.status().await;
        assert!(p.reachable, "{:?}", p.error);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let v = probe.json().await;
        assert_eq!(v["backend"], "fs");
        assert_eq!(v["reachable"], true);
        assert!(v["error"].is_null());
    }

    #[tokio::test]
    async fn file_in_place_of_the_root_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        std::fs::write(&root, b"not a directory").unwrap();
        let p = StorageProbe::fs(&root).status().await;
        assert!(!p.reachable);
        assert!(p.error.unwrap().ends_with("not a directory"));
    }

    #[tokio::test]
    async fn missing_root_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let p = StorageProbe::fs(&dir.path().join("gone")).status().await;
        assert!(!p.reachable);
        assert!(p.error.unwrap().contains("No such file"));
    }

    #[tokio::test]
    async fn result_is_cached_for_the_ttl_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        std::fs::create_dir(&root).unwrap();
        let cached = StorageProbe::fs(&root).with_ttl(Duration::from_secs(3600));
        let fresh = StorageProbe::fs(&root).with_ttl(Duration::ZERO);
        assert!(cached.status().await.reachable);
        assert!(fresh.status().await.reachable);
        std::fs::remove_dir(&root).unwrap();
        assert!(cached.status().await.reachable, "within the TTL: cached");
        assert!(
            !fresh.status().await.reachable,
            "past the TTL: probed again"
        );
    }

    #[tokio::test]
    async fn s3_endpoint_that_refuses_connections_is_unreachable_within_the_bound() {
        // A loopback port nobody listens on: connect is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .force_path_style(true)
            .build();
        let probe = StorageProbe::s3(aws_sdk_s3::Client::from_conf(conf), "vettid-vaults");
        let started = std::time::Instant::now();
        let p = probe.status().await;
        assert!(!p.reachable);
        let e = p.error.unwrap();
        // The SDK's retries may run into the probe's own bound on a loaded machine: either way
        // the store is reported unreachable, in time.
        assert!(
            e.starts_with("HeadBucket vettid-vaults: ") || e.starts_with("no answer within"),
            "{e}"
        );
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(probe.backend(), "s3");
    }
}
