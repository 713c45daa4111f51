//! One storage request from the enclave, start to finish: validate the key, run the backend
//! call under the storage timeout (and never past the enclave's own deadline), count it, and
//! turn the result into a protocol answer.
//!
//! The mapping is the contract the enclave codes against: `NotFound` and `Conflict` are
//! responses (the enclave reloads and retries on `Conflict`); S3 down or slow is
//! [`ErrorCode::Unavailable`], after which the enclave must treat a write as *unknown* (a timed-out
//! write may still land) and re-read before deciding; a bad key or an oversized object is
//! [`ErrorCode::Rejected`] (a bug in the enclave, not a reason to retry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vettid_protocol::{ErrorCode, StorageRequest, StorageResponse, WireError};

use super::key::check_token;
use super::{
    DeleteResult, ListPrefix, ObjectKey, ObjectStore, PutResult, StorageError, Store, MAX_LIST_KEYS,
};
use crate::metrics::{Metrics, StorageOp, StorageOutcome};

/// Serves [`StorageRequest`]s against one backend.
pub struct StorageRelay<S = Store> {
    store: S,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl<S: ObjectStore> StorageRelay<S> {
    /// A relay over `store`; `timeout` bounds every call.
    pub fn new(store: S, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            timeout,
            metrics,
        }
    }

    /// The backend.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Serves one request; `deadline` is when the enclave stops waiting.
    ///
    /// # Errors
    /// [`ErrorCode::Unavailable`] when the backend failed or timed out, [`ErrorCode::Rejected`]
    /// for an invalid key or an oversized object. Messages are bland.
    pub async fn serve(
        &self,
        request: StorageRequest,
        deadline: Option<Instant>,
    ) -> Result<StorageResponse, WireError> {
        let op = op_of(&request);
        let limit = deadline.map_or(self.timeout, |d| {
            self.timeout
                .min(d.saturating_duration_since(Instant::now()))
        });
        let result = match tokio::time::timeout(limit, self.execute(request)).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Timeout),
        };
        let outcome = match &result {
            Ok(StorageResponse::NotFound) => StorageOutcome::NotFound,
            Ok(StorageResponse::Conflict) => StorageOutcome::Conflict,
            Ok(_) => StorageOutcome::Ok,
            Err(StorageError::InvalidKey(_)) => StorageOutcome::Invalid,
            Err(StorageError::TooLarge) => StorageOutcome::TooLarge,
            Err(StorageError::Timeout) => StorageOutcome::Timeout,
            Err(StorageError::Unavailable(_)) => StorageOutcome::Unavailable,
        };
        self.metrics.storage(op, outcome);
        result.map_err(|e| {
            tracing::debug!(?op, error = %e, "storage request failed");
            to_wire(e)
        })
    }

    async fn execute(&self, request: StorageRequest) -> Result<StorageResponse, StorageError> {
        Ok(match request {
            StorageRequest::Get { key } => match self.store.get(&ObjectKey::parse(&key)?).await? {
                Some(o) => StorageResponse::Object {
                    body: o.body,
                    etag: o.etag,
                },
                None => StorageResponse::NotFound,
            },
            StorageRequest::Head { key } => {
                match self.store.head(&ObjectKey::parse(&key)?).await? {
                    Some(m) => StorageResponse::Meta {
                        etag: m.etag,
                        size: m.size,
                    },
                    None => StorageResponse::NotFound,
                }
            }
            StorageRequest::Put {
                key,
                body,
                condition,
            } => {
                match self
                    .store
                    .put(&ObjectKey::parse(&key)?, body, &condition)
                    .await?
                {
                    PutResult::Written(etag) => StorageResponse::Written { etag },
                    PutResult::Conflict => StorageResponse::Conflict,
                }
            }
            StorageRequest::Delete { key, if_match } => {
                match self
                    .store
                    .delete(&ObjectKey::parse(&key)?, if_match.as_deref())
                    .await?
                {
                    DeleteResult::Deleted => StorageResponse::Deleted,
                    DeleteResult::NotFound => StorageResponse::NotFound,
                    DeleteResult::Conflict => StorageResponse::Conflict,
                }
            }
            StorageRequest::List {
                prefix,
                continuation,
                max_keys,
            } => {
                let prefix = ListPrefix::parse(&prefix)?;
                if let Some(token) = &continuation {
                    check_token(token)?;
                }
                let page = self
                    .store
                    .list(
                        &prefix,
                        continuation.as_deref(),
                        max_keys.clamp(1, MAX_LIST_KEYS),
                    )
                    .await?;
                StorageResponse::Listing {
                    objects: page.objects,
                    continuation: page.continuation,
                }
            }
        })
    }
}

fn op_of(request: &StorageRequest) -> StorageOp {
    match request {
        StorageRequest::Get { .. } => StorageOp::Get,
        StorageRequest::Head { .. } => StorageOp::Head,
        StorageRequest::Put { .. } => StorageOp::Put,
        StorageRequest::Delete { .. } => StorageOp::Delete,
        StorageRequest::List { .. } => StorageOp::List,
    }
}

/// The error the enclave sees. [`StorageError`]'s texts are bland by construction.
pub fn to_wire(e: StorageError) -> WireError {
    let code = match e {
        StorageError::InvalidKey(_) | StorageError::TooLarge => ErrorCode::Rejected,
        StorageError::Unavailable(_) => ErrorCode::Unavailable,
        // The store call may still complete after this answer: the enclave must treat the
        // outcome as unknown, not as "nothing changed".
        StorageError::Timeout => ErrorCode::Timeout,
    };
    WireError::new(code, e.to_string())
}
