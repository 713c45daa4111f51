//! Vault objects through the parent: get, conditional put, delete.
//!
//! The parent executes these against S3 (or a directory in dev). It sees only [`StoredVault`]
//! bytes: ciphertext plus a version number. Every write is conditional: `Create` for enrolment,
//! `IfMatch(etag)` for every later write, so two enclaves (two hosts) can never silently
//! overwrite each other; the loser gets [`StoreError::Conflict`].
//!
//! [`StoredVault`]: super::record::StoredVault

use std::time::Duration;

use bytes::Bytes;
use vettid_protocol::{PutCondition, Response, StorageRequest, StorageResponse, ToParent};

use super::record::object_key;
use crate::parent::{ParentError, ParentLink};
use vettid_link::RpcError;
use vettid_protocol::ErrorCode;

/// Why a storage call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object changed (or appeared) since we read it: another enclave wrote it.
    #[error("storage conflict")]
    Conflict,
    /// The parent, the link or the object store failed; nothing was written.
    #[error("storage unavailable")]
    Unavailable,
    /// No answer in time, or the link died mid-call: the write may still land.
    #[error("storage outcome unknown")]
    Uncertain,
    /// The request's deadline passed before a read could start; nothing was asked.
    #[error("no time left for a storage read")]
    NoTime,
}

/// A fetched object.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Bytes.
    pub body: Bytes,
    /// ETag, for the next conditional write.
    pub etag: String,
}

/// Storage for vault objects.
#[derive(Clone)]
pub struct VaultStore {
    parent: ParentLink,
    timeout: Duration,
}

impl VaultStore {
    /// Storage through `parent`, each call bounded by `timeout`.
    pub fn new(parent: ParentLink, timeout: Duration) -> Self {
        Self { parent, timeout }
    }

    /// One storage call. A read is also bounded by the request's deadline ([`crate::deadline`]);
    /// a write (`Put`, `Delete`) keeps the full timeout: it commits work already begun.
    ///
    /// A read with no answer in time changed nothing: [`StoreError::Unavailable`]. Only a write
    /// can be [`StoreError::Uncertain`].
    async fn call(&self, request: StorageRequest) -> Result<StorageResponse, StoreError> {
        let write = matches!(
            request,
            StorageRequest::Put { .. } | StorageRequest::Delete { .. }
        );
        let limit = if write {
            self.timeout
        } else {
            crate::deadline::limit(self.timeout).map_err(|_| StoreError::NoTime)?
        };
        match self.parent.request(ToParent::Storage(request), limit).await {
            Ok(Response::Storage(r)) => Ok(r),
            Ok(other) => {
                tracing::warn!(
                    response = other_name(&other),
                    "parent answered storage with the wrong type"
                );
                Err(StoreError::Unavailable)
            }
            Err(e) => {
                tracing::warn!(error = %e, "storage request failed");
                Err(match e {
                    ParentError::Rpc(RpcError::Timeout(_) | RpcError::Closed(_)) if write => {
                        StoreError::Uncertain
                    }
                    ParentError::Rpc(RpcError::Remote(w))
                        if write && w.code == ErrorCode::Timeout =>
                    {
                        StoreError::Uncertain
                    }
                    _ => StoreError::Unavailable,
                })
            }
        }
    }

    /// Reads `vault`'s object; `None` if the vault does not exist.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn get(&self, vault: &str) -> Result<Option<Fetched>, StoreError> {
        match self
            .call(StorageRequest::Get {
                key: object_key(vault),
            })
            .await?
        {
            StorageResponse::Object { body, etag } => Ok(Some(Fetched { body, etag })),
            StorageResponse::NotFound => Ok(None),
            _ => Err(StoreError::Unavailable),
        }
    }

    /// Writes `vault`'s object: create-only when `etag` is `None`, else only over `etag`.
    /// Returns the new ETag.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] or [`StoreError::Unavailable`].
    pub async fn put(
        &self,
        vault: &str,
        body: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<String, StoreError> {
        let condition = match etag {
            None => PutCondition::Create,
            Some(e) => PutCondition::IfMatch(e.to_owned()),
        };
        match self
            .call(StorageRequest::Put {
                key: object_key(vault),
                body: body.into(),
                condition,
            })
            .await?
        {
            StorageResponse::Written { etag } => Ok(etag),
            StorageResponse::Conflict => Err(StoreError::Conflict),
            _ => Err(StoreError::Unavailable),
        }
    }

    /// Deletes `vault`'s object (a signed reset). Deleting a missing object succeeds.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete(&self, vault: &str) -> Result<bool, StoreError> {
        match self
            .call(StorageRequest::Delete {
                key: object_key(vault),
                if_match: None,
            })
            .await?
        {
            StorageResponse::Deleted => Ok(true),
            StorageResponse::NotFound => Ok(false),
            StorageResponse::Conflict => Err(StoreError::Conflict),
            _ => Err(StoreError::Unavailable),
        }
    }

    /// The current ETag of `vault`'s object, if any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn head(&self, vault: &str) -> Result<Option<String>, StoreError> {
        match self
            .call(StorageRequest::Head {
                key: object_key(vault),
            })
            .await?
        {
            StorageResponse::Meta { etag, .. } => Ok(Some(etag)),
            StorageResponse::NotFound => Ok(None),
            _ => Err(StoreError::Unavailable),
        }
    }
}

fn other_name(r: &Response) -> &'static str {
    match r {
        Response::Nats(_) => "nats",
        Response::Pong => "pong",
        Response::Storage(_) => "storage",
        Response::Attestation { .. } => "attestation",
        Response::Done => "done",
        Response::AwsCredentials(_) => "aws_credentials",
    }
}
