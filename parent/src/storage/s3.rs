//! The S3 object store (production), with `aws-sdk-s3`.
//!
//! Conditional writes are S3's own: `If-None-Match: *` for `Create` and `If-Match: <etag>` for
//! `IfMatch`, evaluated atomically by S3, so two hosts writing one vault cannot both win (G17).
//! S3 answers a failed precondition with 412 `PreconditionFailed`, or with 409
//! `ConditionalRequestConflict` when a concurrent write to the same key raced ours; both are a
//! [`PutResult::Conflict`]. An `If-Match` on a key that no longer exists is 404 `NoSuchKey`:
//! also a conflict (the version the enclave read is gone).
//!
//! Error text from AWS is logged here and never forwarded: the enclave gets a bland
//! [`StorageError::Unavailable`]. A 404 other than a missing key (e.g. `NoSuchBucket`) is
//! *not* "not found": a misconfigured bucket must not look like an empty vault.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

/// The SDK, re-exported so tests drive S3 with exactly the version the store uses.
pub use aws_sdk_s3 as sdk;

use super::{
    DeleteResult, ListPrefix, ListedObject, Meta, Object, ObjectKey, ObjectStore, Page,
    PutCondition, PutResult, StorageError,
};
use crate::config::S3Config;

/// TCP + TLS connect bound for one attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Attempts per call (the SDK's standard retry: throttling and transient errors only).
pub const MAX_ATTEMPTS: u32 = 3;

/// A bucket (and optional key prefix) on S3 or an S3-compatible endpoint.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    key_prefix: String,
    max_object_bytes: u64,
}

/// What a failed SDK call means to us.
enum Failure {
    NotFound,
    Conflict,
    Other,
}

impl S3Store {
    /// Builds the store from the default credential chain (env, profile, web identity, ECS, and
    /// the instance role through IMDSv2 in production), applying `config`'s region and endpoint.
    /// `timeout` bounds one whole call, retries included.
    pub async fn connect(config: &S3Config, timeout: Duration, max_object_bytes: u64) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.force_path_style);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self::new(
            builder,
            &config.bucket,
            &config.key_prefix,
            timeout,
            max_object_bytes,
        )
    }

    /// Builds the store from an SDK config builder (tests pass static credentials and a local
    /// endpoint); our timeouts and retry policy are applied on top.
    pub fn new(
        builder: aws_sdk_s3::config::Builder,
        bucket: &str,
        key_prefix: &str,
        timeout: Duration,
        max_object_bytes: u64,
    ) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .operation_timeout(timeout)
            .build();
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_millis(500));
        let conf = builder.timeout_config(timeouts).retry_config(retry).build();
        Self {
            client: Client::from_conf(conf),
            bucket: bucket.to_owned(),
            key_prefix: key_prefix.to_owned(),
            max_object_bytes,
        }
    }

    /// The SDK client (tests use it to create the bucket).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    /// Classifies an SDK error and logs it with the AWS detail the enclave never sees.
    fn failure<E>(&self, op: &'static str, key: &str, err: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code();
        let failure = match (status, code) {
            (_, Some("PreconditionFailed" | "ConditionalRequestConflict")) | (Some(412), _) => {
                Failure::Conflict
            }
            (_, Some("NoSuchKey")) | (Some(404), None | Some("NotFound")) => Failure::NotFound,
            _ => Failure::Other,
        };
        if matches!(failure, Failure::Other) {
            tracing::warn!(op, key, bucket = %self.bucket, ?status, code, error = %DisplayErrorContext(err), "s3 call failed");
        }
        failure
    }
}

const UNAVAILABLE: StorageError = StorageError::Unavailable("s3 request failed");

// === impl ObjectStore ===

impl ObjectStore for S3Store {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                return match self.failure("get", key.as_str(), &e) {
                    Failure::NotFound => Ok(None),
                    _ => Err(UNAVAILABLE),
                }
            }
        };
        if out
            .content_length()
            .is_some_and(|n| n as u64 > self.max_object_bytes)
        {
            return Err(StorageError::TooLarge);
        }
        let etag = out.e_tag().ok_or(UNAVAILABLE)?.to_owned();
        let body = out.body.collect().await.map_err(|e| {
            tracing::warn!(key = key.as_str(), error = %e, "s3 body read failed");
            UNAVAILABLE
        })?;
        Ok(Some(Object {
            body: body.into_bytes(),
            etag,
        }))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<Meta>, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(Meta {
                etag: out.e_tag().ok_or(UNAVAILABLE)?.to_owned(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(e) => match self.failure("head", key.as_str(), &e) {
                Failure::NotFound => Ok(None),
                _ => Err(UNAVAILABLE),
            },
        }
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        condition: &PutCondition,
    ) -> Result<PutResult, StorageError> {
        if body.len() as u64 > self.max_object_bytes {
            return Err(StorageError::TooLarge);
        }
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()));
        let req = match condition {
            PutCondition::Create => req.if_none_match("*"),
            PutCondition::IfMatch(etag) => req.if_match(super::quote_etag(etag)),
        };
        match req.body(ByteStream::from(body)).send().await {
            Ok(out) => Ok(PutResult::Written(
                out.e_tag().ok_or(UNAVAILABLE)?.to_owned(),
            )),
            Err(e) => match self.failure("put", key.as_str(), &e) {
                // NotFound on If-Match: the version the enclave read was deleted meanwhile.
                Failure::Conflict | Failure::NotFound => Ok(PutResult::Conflict),
                Failure::Other => Err(UNAVAILABLE),
            },
        }
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        if_match: Option<&str>,
    ) -> Result<DeleteResult, StorageError> {
        // S3's delete succeeds on a missing key; the protocol reports NotFound, so look first.
        // The look is advisory (racy); the If-Match, when given, is S3's and atomic.
        if self.head(key).await?.is_none() {
            return Ok(DeleteResult::NotFound);
        }
        let req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()));
        let req = match if_match {
            Some(etag) => req.if_match(super::quote_etag(etag)),
            None => req,
        };
        match req.send().await {
            Ok(_) => Ok(DeleteResult::Deleted),
            Err(e) => match self.failure("delete", key.as_str(), &e) {
                Failure::NotFound => Ok(DeleteResult::NotFound),
                Failure::Conflict => Ok(DeleteResult::Conflict),
                Failure::Other => Err(UNAVAILABLE),
            },
        }
    }

    async fn list(
        &self,
        prefix: &ListPrefix,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<Page, StorageError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix.as_str()))
            .set_continuation_token(continuation.map(str::to_owned))
            .max_keys(max_keys.min(super::MAX_LIST_KEYS) as i32)
            .send()
            .await
            .map_err(|e| {
                self.failure("list", prefix.as_str(), &e);
                UNAVAILABLE
            })?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.strip_prefix(&self.key_prefix)?.to_owned();
                let etag = o.e_tag()?.to_owned();
                Some(ListedObject {
                    key,
                    etag,
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect();
        let continuation = match out.is_truncated() {
            Some(true) => out.next_continuation_token().map(str::to_owned),
            _ => None,
        };
        Ok(Page {
            objects,
            continuation,
        })
    }
}
