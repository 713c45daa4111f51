//! The trusted state store: a DynamoDB table that only attested enclaves write (issue 12).
//!
//! ```text
//!  vault ─▶ TrustedStore ─▶ aws-sdk-dynamodb ─TLS─▶ 127.0.0.1:P (forward) ═ parent tunnel ═▶ DynamoDB
//!            │ signs with credentials sealed under the KMS key, opened here (credentials)
//!            └ conditional writes on `rev`, consistent reads
//! ```
//!
//! Plumbing shared with the KMS client: the forwarder ([`crate::kms::forward`]) and the HTTP
//! client with its one-name resolver ([`crate::kms::http`]), each instantiated for the table's
//! host; the tunnel is the KMS tunnel (the parent's `[kms] allow` names both endpoints). TLS
//! ends here, verified for the table's host name, so the host relays ciphertext only and can
//! delay or drop calls but never forge an answer.
//!
//! Table schema: partition key `pk` (S); `rev` (N), `body` (B), `ttl` (N, the table's TTL
//! attribute, set by [`TrustedStore::create`]). Every request names the table by its full ARN
//! ([`config::TableArn`]), so credentials of another account can never reach a table of the same
//! name there.
//!
//! Every public call boxes its future: the SDK's are deep, and the vault's request futures that
//! await them would otherwise exceed the compiler's layout depth limit.
//!
//! Bounds: no call starts when the request's deadline has passed ([`TrustedError::NoTime`]). A
//! read runs inside the deadline and its own budget ([`OPERATION_TIMEOUT`], attempts of
//! [`ATTEMPT_TIMEOUT`], the SDK's standard retries). A write is the commit point of work already
//! begun, so, as for storage writes ([`crate::deadline`]), an attempt once started is not cut by
//! the deadline, only by [`ATTEMPT_TIMEOUT`]; it is retried only when it certainly was not
//! applied (the connection never came up, or DynamoDB throttled it), so a retried conditional
//! write can never report `Conflict` for a first attempt that landed. Anything else after
//! sending is [`TrustedError::Uncertain`].

pub mod config;
pub mod credentials;
pub mod errors;
mod report;

use report::Stats;
pub use report::TrustedReport;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, IdentityCache, Region, SharedCredentialsProvider};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

pub use config::{TableArn, TrustedConfig, TrustedFlags};
pub use credentials::{
    CredentialsLoadError, Opener, ParentObject, SealedCredentials, SealedSource, CREDENTIALS_OBJECT,
};

use crate::kms::forward::{Forwarder, Service};
use crate::kms::http::{Route, RouteError};
use errors::Kind;

/// Budget for one operation, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Budget for one attempt (TLS handshake through the tunnel included).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time to open the TCP connection to the forwarder (local).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts per operation.
pub const MAX_ATTEMPTS: u32 = 3;
/// Pause before retrying a write that was certainly not applied (doubled each time).
pub const WRITE_BACKOFF: Duration = Duration::from_millis(50);
/// The key [`TrustedStore::spawn_probe`] reads (never written).
pub const PROBE_KEY: &str = "_probe";
/// Probe interval while the table answers.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);
/// Probe interval while it does not (and the delay before the first).
pub const PROBE_RETRY: Duration = Duration::from_secs(2);
/// Longest key accepted (DynamoDB allows 2048 bytes of partition key).
pub const MAX_KEY_LEN: usize = 1024;
/// Largest body accepted (DynamoDB's item limit is 400 KB, attribute names included).
pub const MAX_BODY_LEN: usize = 350 * 1024;

/// Why a trusted-store call failed. Codes are stable (logs, health, client answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedError {
    /// The condition failed: the item's rev was not the one expected (or it exists, for a
    /// create). Nothing changed.
    #[error("trusted store condition failed")]
    Conflict,
    /// The table (or the tunnel to it) is unreachable, or answered 5xx to a read, after retries;
    /// or a configuration error (unknown table). Nothing changed.
    #[error("trusted store unavailable")]
    Unavailable,
    /// A write was sent but no definite answer came back: it may have landed.
    #[error("trusted store write outcome unknown")]
    Uncertain,
    /// DynamoDB throttled the call after retries. Nothing changed.
    #[error("trusted store throttled")]
    Throttled,
    /// DynamoDB refused the credentials or the action (they are re-read on the next call).
    #[error("trusted store access denied")]
    Denied,
    /// The sealed credentials are missing or would not open.
    #[error("trusted store credentials unavailable")]
    Credentials,
    /// The request's deadline left no time: the call was not started.
    #[error("no time left for a trusted store call")]
    NoTime,
    /// An item that does not parse (or a key or body that cannot be stored).
    #[error("trusted store item malformed")]
    Malformed,
}

impl TrustedError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TrustedError::Conflict => "TrustedStoreConflict",
            TrustedError::Unavailable => "TrustedStoreUnavailable",
            TrustedError::Uncertain => "TrustedStoreUncertain",
            TrustedError::Throttled => "TrustedStoreThrottled",
            TrustedError::Denied => "TrustedStoreDenied",
            TrustedError::Credentials => "TrustedStoreCredentials",
            TrustedError::NoTime => "TrustedStoreNoTime",
            TrustedError::Malformed => "TrustedStoreMalformed",
        }
    }
}

/// One item: its revision and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Revision: 1 when created, +1 per [`TrustedStore::swap`].
    pub rev: u64,
    /// The body, opaque here.
    pub body: Vec<u8>,
}

/// Why the trusted store could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrustedStartError {
    /// The forwarder could not bind its loopback port.
    #[error("cannot bind the trusted store forwarder on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client's TLS context could not be built.
    #[error("cannot build the trusted store HTTP client: {0}")]
    Http(String),
}

/// The trusted store client (see the module docs). Cheap to share: `Arc<TrustedStore>`.
pub struct TrustedStore {
    /// Standard retries: reads.
    reads: aws_sdk_dynamodb::Client,
    /// One attempt per send: writes (retried here only when certainly not applied).
    writes: aws_sdk_dynamodb::Client,
    table: TableArn,
    endpoint: String,
    credentials: Arc<SealedCredentials>,
    forwarder: Forwarder,
    stats: Mutex<Stats>,
}

impl std::fmt::Debug for TrustedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedStore")
            .field("table", &self.table)
            .field("endpoint", &self.endpoint)
            .field("forwarder", &self.forwarder.local_addr())
            .finish()
    }
}

impl TrustedStore {
    /// Binds the forwarder (through `tunnel`, the parent's KMS tunnel) and builds the clients.
    /// Nothing is read yet: the credentials are opened on the first call.
    ///
    /// # Errors
    /// [`TrustedStartError`] when the forwarder cannot bind or the client cannot be built.
    pub async fn start(
        config: TrustedConfig,
        tunnel: vettid_link::Address,
        source: Arc<dyn SealedSource>,
        opener: Arc<dyn Opener>,
    ) -> Result<Self, TrustedStartError> {
        let endpoint = config.endpoint.authority();
        let Route {
            forwarder,
            url,
            http,
        } = crate::kms::http::route(
            Service::TRUSTED_STORE,
            (&config.endpoint.host, config.endpoint.port),
            config.forward_port,
            tunnel.clone(),
            config.extra_ca_pem.as_deref(),
        )
        .await
        .map_err(|e| match e {
            RouteError::Bind { port, source } => TrustedStartError::Bind { port, source },
            RouteError::Http(e) => TrustedStartError::Http(e),
        })?;
        let credentials = Arc::new(SealedCredentials::new(
            source,
            opener,
            config.table.as_str(),
        ));
        let build = |attempts: u32| {
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(config.region.clone()))
                .endpoint_url(&url)
                .http_client(http.clone())
                .credentials_provider(SharedCredentialsProvider::new(credentials::SdkProvider(
                    credentials.clone(),
                )))
                // SealedCredentials caches (and invalidates on Denied) itself.
                .identity_cache(IdentityCache::no_cache())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                        .operation_timeout(OPERATION_TIMEOUT)
                        .build(),
                )
                .retry_config(RetryConfig::standard().with_max_attempts(attempts))
                .build()
        };
        let reads = aws_sdk_dynamodb::Client::from_conf(build(MAX_ATTEMPTS));
        let writes = aws_sdk_dynamodb::Client::from_conf(build(1));
        tracing::info!(
            endpoint = %endpoint,
            forward = %forwarder.local_addr(),
            tunnel = %tunnel,
            table = %config.table,
            "trusted store client ready"
        );
        Ok(Self {
            reads,
            writes,
            table: config.table,
            endpoint,
            credentials,
            forwarder,
            stats: Mutex::new(Stats::default()),
        })
    }

    /// The loopback address of this store's forwarder.
    pub fn forward_addr(&self) -> std::net::SocketAddr {
        self.forwarder.local_addr()
    }

    /// The table.
    pub fn table(&self) -> &TableArn {
        &self.table
    }

    /// Consistent read of `key`.
    ///
    /// # Errors
    /// [`TrustedError`]; a read never changes anything.
    pub async fn get(&self, key: &str) -> Result<Option<Item>, TrustedError> {
        Box::pin(self.get_unboxed(key)).await
    }

    async fn get_unboxed(&self, key: &str) -> Result<Option<Item>, TrustedError> {
        const OP: &str = "GetItem";
        let result = self
            .run(
                OP,
                Kind::Read,
                || {
                    self.reads
                        .get_item()
                        .table_name(self.table.as_str())
                        .key("pk", AttributeValue::S(key.to_owned()))
                        .consistent_read(true)
                        .send()
                },
                key,
            )
            .await
            .and_then(|out| out.item.map(|item| parse_item(&item)).transpose());
        self.count(OP, result)
    }

    /// Writes `body` with rev `expected.map_or(1, |r| r + 1)` iff the item's rev is `expected`
    /// (`None`: the item must not exist). Returns the new rev.
    ///
    /// # Errors
    /// [`TrustedError::Conflict`] when the condition failed (nothing changed),
    /// [`TrustedError::Uncertain`] when the write may have landed, and the rest.
    pub async fn swap(
        &self,
        key: &str,
        expected: Option<u64>,
        body: &[u8],
    ) -> Result<u64, TrustedError> {
        let result = Box::pin(self.swap_inner(key, expected, body)).await;
        self.count(
            if expected.is_some() {
                "UpdateItem"
            } else {
                "PutItem"
            },
            result,
        )
    }

    async fn swap_inner(
        &self,
        key: &str,
        expected: Option<u64>,
        body: &[u8],
    ) -> Result<u64, TrustedError> {
        check_body(body)?;
        let Some(expected) = expected else {
            self.run(
                "PutItem",
                Kind::Write,
                || {
                    self.writes
                        .put_item()
                        .table_name(self.table.as_str())
                        .item("pk", AttributeValue::S(key.to_owned()))
                        .item("rev", AttributeValue::N("1".into()))
                        .item("body", AttributeValue::B(Blob::new(body.to_vec())))
                        .condition_expression("attribute_not_exists(pk)")
                        .send()
                },
                key,
            )
            .await?;
            return Ok(1);
        };
        let new = expected.checked_add(1).ok_or(TrustedError::Malformed)?;
        self.run(
            "UpdateItem",
            Kind::Write,
            || {
                self.writes
                    .update_item()
                    .table_name(self.table.as_str())
                    .key("pk", AttributeValue::S(key.to_owned()))
                    .update_expression("SET #rev = :new, #body = :body")
                    .condition_expression("#rev = :expected")
                    .expression_attribute_names("#rev", "rev")
                    .expression_attribute_names("#body", "body")
                    .expression_attribute_values(":new", AttributeValue::N(new.to_string()))
                    .expression_attribute_values(
                        ":expected",
                        AttributeValue::N(expected.to_string()),
                    )
                    .expression_attribute_values(
                        ":body",
                        AttributeValue::B(Blob::new(body.to_vec())),
                    )
                    .send()
            },
            key,
        )
        .await?;
        Ok(new)
    }

    /// Creates `key` (rev 1) iff absent; `expires_at` (unix seconds) also goes into the table's
    /// TTL attribute `ttl`. DynamoDB deletes expired items lazily (up to days later) and a
    /// stand-in may never: a reader must compare `expires_at` itself.
    ///
    /// # Errors
    /// [`TrustedError::Conflict`] when it exists, and the rest as for [`TrustedStore::swap`].
    pub async fn create(
        &self,
        key: &str,
        body: &[u8],
        expires_at: Option<u64>,
    ) -> Result<(), TrustedError> {
        const OP: &str = "PutItem";
        let result = Box::pin(async {
            check_body(body)?;
            self.run(
                OP,
                Kind::Write,
                || {
                    let mut put = self
                        .writes
                        .put_item()
                        .table_name(self.table.as_str())
                        .item("pk", AttributeValue::S(key.to_owned()))
                        .item("rev", AttributeValue::N("1".into()))
                        .item("body", AttributeValue::B(Blob::new(body.to_vec())))
                        .condition_expression("attribute_not_exists(pk)");
                    if let Some(at) = expires_at {
                        put = put.item("ttl", AttributeValue::N(at.to_string()));
                    }
                    put.send()
                },
                key,
            )
            .await
            .map(|_| ())
        })
        .await;
        self.count(OP, result)
    }

    /// Deletes `key` and returns its body iff it existed; of two callers at most one gets it
    /// (the delete is conditional on the item existing, and DynamoDB applies one of them).
    ///
    /// # Errors
    /// [`TrustedError::Uncertain`] when the delete may have happened without us learning the
    /// body (the body is then lost to every caller: single use holds), and the rest.
    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, TrustedError> {
        Box::pin(self.take_unboxed(key)).await
    }

    async fn take_unboxed(&self, key: &str) -> Result<Option<Vec<u8>>, TrustedError> {
        const OP: &str = "DeleteItem";
        let result = self
            .run(
                OP,
                Kind::Write,
                || {
                    self.writes
                        .delete_item()
                        .table_name(self.table.as_str())
                        .key("pk", AttributeValue::S(key.to_owned()))
                        .condition_expression("attribute_exists(pk)")
                        .return_values(ReturnValue::AllOld)
                        .send()
                },
                key,
            )
            .await;
        let result = match result {
            Ok(out) => match out.attributes {
                Some(item) => parse_item(&item).map(|i| Some(i.body)),
                // DeleteItem with ALL_OLD on an existing item always returns it.
                None => Err(TrustedError::Malformed),
            },
            Err(TrustedError::Conflict) => Ok(None),
            Err(e) => Err(e),
        };
        self.count(OP, result)
    }

    /// Reads [`PROBE_KEY`] now and then, so health shows whether the table answers (and the
    /// sealed credentials open) before any vault needs it: every [`PROBE_EVERY`], every
    /// [`PROBE_RETRY`] while it fails. Reads only; counted like any call. Stops when the store is
    /// dropped.
    pub fn spawn_probe(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(PROBE_RETRY).await;
            loop {
                let Some(s) = store.upgrade() else { return };
                let ok = s.get(PROBE_KEY).await.is_ok();
                drop(s);
                tokio::time::sleep(if ok { PROBE_EVERY } else { PROBE_RETRY }).await;
            }
        })
    }

    /// One operation: deadline check, credentials, send (writes retried only when certainly
    /// not applied), typed error, logged.
    async fn run<T, E, F, Fut>(
        &self,
        operation: &'static str,
        kind: Kind,
        send: F,
        key: &str,
    ) -> Result<T, TrustedError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(TrustedError::Malformed);
        }
        crate::deadline::limit(OPERATION_TIMEOUT).map_err(|_| TrustedError::NoTime)?;
        let started = Instant::now();
        let credentials = match kind {
            Kind::Read => crate::deadline::within(self.credentials.current()).await,
            Kind::Write => Some(self.credentials.current().await),
        };
        match credentials {
            None => return Err(TrustedError::NoTime),
            Some(Err(_)) => return Err(TrustedError::Credentials),
            Some(Ok(_)) => {}
        }
        let mut backoff = WRITE_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = match kind {
                Kind::Read => match crate::deadline::within(send()).await {
                    Some(outcome) => outcome,
                    None => {
                        // A read changes nothing: cut at the deadline, it is just unavailable.
                        tracing::warn!(
                            code = TrustedError::Unavailable.code(),
                            operation,
                            reason = "deadline",
                            "trusted store read cut at the request's deadline"
                        );
                        return Err(TrustedError::Unavailable);
                    }
                },
                Kind::Write => send().await,
            };
            let err = match outcome {
                Ok(out) => return Ok(out),
                Err(err) => err,
            };
            let (error, not_sent, reason) = errors::classify(&err, kind);
            if error == TrustedError::Denied {
                // Rotated or revoked: open the sealed object again next time.
                self.credentials.invalidate();
            }
            let retry = kind == Kind::Write
                && attempt < MAX_ATTEMPTS
                && not_sent
                && matches!(error, TrustedError::Unavailable | TrustedError::Throttled)
                && started.elapsed() + backoff < OPERATION_TIMEOUT
                && crate::deadline::remaining().is_none_or(|left| left > backoff);
            let level_error = !matches!(
                error,
                TrustedError::Conflict | TrustedError::Unavailable | TrustedError::Throttled
            );
            if level_error {
                tracing::error!(code = error.code(), operation, reason, attempt, dynamodb_code = err.code().unwrap_or_default(), error = %DisplayErrorContext(&err), "trusted store call failed");
            } else if error != TrustedError::Conflict {
                tracing::warn!(code = error.code(), operation, reason, attempt, dynamodb_code = err.code().unwrap_or_default(), error = %DisplayErrorContext(&err), "trusted store call failed");
            }
            if !retry {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }
}

fn check_body(body: &[u8]) -> Result<(), TrustedError> {
    if body.len() > MAX_BODY_LEN {
        return Err(TrustedError::Malformed);
    }
    Ok(())
}

/// `rev` (N, a u64 ≥ 1) and `body` (B) of an item; anything else is [`TrustedError::Malformed`].
fn parse_item(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<Item, TrustedError> {
    let rev = match item.get("rev") {
        Some(AttributeValue::N(n)) => n.parse::<u64>().ok().filter(|r| *r >= 1),
        _ => None,
    };
    let body = match item.get("body") {
        Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
        _ => None,
    };
    match (rev, body) {
        (Some(rev), Some(body)) => Ok(Item { rev, body }),
        _ => {
            tracing::error!(
                code = TrustedError::Malformed.code(),
                "trusted store item does not parse"
            );
            Err(TrustedError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests;
