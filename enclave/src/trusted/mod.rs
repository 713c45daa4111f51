//! PLACEHOLDER (replaced by the trusted-store branch): the API the vault codes against.
#![allow(missing_docs, dead_code, clippy::unused_async)]

/// An item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub rev: u64,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedError {
    #[error("conflict")]
    Conflict,
    #[error("unavailable")]
    Unavailable,
    #[error("uncertain")]
    Uncertain,
    #[error("throttled")]
    Throttled,
    #[error("denied")]
    Denied,
    #[error("credentials")]
    Credentials,
    #[error("no time")]
    NoTime,
    #[error("malformed")]
    Malformed,
}

impl TrustedError {
    pub fn code(&self) -> &'static str {
        "TrustedStoreUnavailable"
    }
}

#[derive(Debug)]
pub struct TrustedStore {}

impl TrustedStore {
    pub async fn get(&self, _key: &str) -> Result<Option<Item>, TrustedError> {
        Err(TrustedError::Unavailable)
    }
    pub async fn swap(
        &self,
        _key: &str,
        _expected: Option<u64>,
        _body: &[u8],
    ) -> Result<u64, TrustedError> {
        Err(TrustedError::Unavailable)
    }
    pub async fn create(
        &self,
        _key: &str,
        _body: &[u8],
        _expires_at: Option<u64>,
    ) -> Result<(), TrustedError> {
        Err(TrustedError::Unavailable)
    }
    pub async fn take(&self, _key: &str) -> Result<Option<Vec<u8>>, TrustedError> {
        Err(TrustedError::Unavailable)
    }
}
