//! The enclave's way back to the parent: whichever link connection is up.
//!
//! Requests the enclave originates (storage, AWS credentials) and log events go over the current
//! connection. There is normally exactly one; during a parent restart there may briefly be none
//! (callers get [`NoParent`] and answer a retryable error) or two (the newest wins).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vettid_link::{Connection, RpcError};
use vettid_protocol::{EnclaveSide, Response, ToParent};

/// A link connection as the enclave holds it: it sends [`ToParent`] requests.
pub type ParentConnection = Connection<EnclaveSide>;

/// No parent connection is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no parent connection")]
pub struct NoParent;

/// Why a request to the parent failed.
#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    /// No connection.
    #[error(transparent)]
    NoParent(#[from] NoParent),
    /// The request failed on the link or the parent answered an error.
    #[error("parent request failed: {0}")]
    Rpc(#[from] RpcError),
}

/// Registry of live parent connections, newest last.
#[derive(Clone, Default)]
pub struct ParentLink {
    live: Arc<Mutex<BTreeMap<u64, ParentConnection>>>,
}

impl ParentLink {
    /// Records connection `id` as live.
    pub fn insert(&self, id: u64, conn: ParentConnection) {
        self.lock().insert(id, conn);
    }

    /// Forgets connection `id`.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The newest live connection.
    pub fn current(&self) -> Option<ParentConnection> {
        self.lock().values().rev().find(|c| !c.is_closed()).cloned()
    }

    /// Every live connection (for broadcasting log events).
    pub fn all(&self) -> Vec<ParentConnection> {
        self.lock().values().cloned().collect()
    }

    /// Sends `request` on the current connection.
    ///
    /// # Errors
    /// [`ParentError::NoParent`] or the link's error.
    pub async fn request(
        &self,
        request: ToParent,
        timeout: Duration,
    ) -> Result<Response, ParentError> {
        let conn = self.current().ok_or(NoParent)?;
        Ok(conn.request(request, timeout).await?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ParentConnection>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}
