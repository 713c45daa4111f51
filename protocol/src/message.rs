//! Bodies carried in request, response and event frames.
//!
//! These mirror the wire exactly (STYLE rule 5): they are transport types, not domain types.
//! Subjects and payloads arriving from NATS are opaque here; the enclave validates them when it
//! turns them into its own types.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A request the parent (or a tool speaking for it) sends the enclave. The link decodes only
/// these on the enclave side, so an enclave-bound request can never be confused with a
/// parent-bound one: a peer that sends a [`ToParent`] tag here is answered
/// [`crate::ErrorCode::UnknownRequest`] ("wrong direction") by the codec, before any handler runs.
///
/// New variants are added with a capability so an older peer is never sent one it cannot decode
/// (it would answer [`crate::ErrorCode::UnknownRequest`]). Wire tags are shared with [`ToParent`]
/// in one namespace (`ping` is in both) and are frozen by `protocol/tests/golden`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToEnclave {
    /// One NATS message, forwarded without interpretation.
    Nats(NatsMessage),
    /// Answered with [`Response::Pong`]; used by tools and tests.
    Ping,
    /// A fresh attestation document bound to the parent's nonce, so the parent can check which
    /// code it is talking to before it forwards anything.
    Attest {
        /// The parent's challenge (1..=512 bytes).
        nonce: Bytes,
    },
    /// The signed PCR manifest the parent was configured with. The enclave does not trust it
    /// (the parent could send anything); it hands it to apps verbatim as `expected_pcrs`, and
    /// apps check its signature with their pinned key.
    SetPcrManifest {
        /// Manifest JSON bytes, as signed.
        manifest: Bytes,
    },
}

/// A request the enclave sends the parent: things only the host can do for it. Decoded only on
/// the parent side (see [`ToEnclave`] for the wrong-direction rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToParent {
    /// Answered with [`Response::Pong`]; used by tests.
    Ping,
    /// One object-store operation (capability `storage`).
    Storage(StorageRequest),
    /// The AWS credentials the enclave signs its own KMS calls with (capability
    /// `aws_credentials`). They are the parent's instance-role credentials, so the parent learns
    /// nothing new; what it cannot do is read the KMS replies, which are encrypted to a key that
    /// never leaves the enclave.
    AwsCredentials,
}

/// A request body of one direction of the link: what the frame layer needs to decode it and
/// to tell "unknown type" from "wrong direction" from "malformed body".
pub trait RequestBody:
    Serialize + serde::de::DeserializeOwned + fmt::Debug + Clone + PartialEq + Send + Sync + 'static
{
    /// Wire names of every request type of this direction this build knows.
    const NAMES: &'static [&'static str];
    /// Wire names that only the other direction carries.
    const WRONG_WAY: &'static [&'static str];

    /// Short name for logs and metrics (the wire tag).
    fn name(&self) -> &'static str;
}

impl RequestBody for ToEnclave {
    const NAMES: &'static [&'static str] = &["nats", "ping", "attest", "set_pcr_manifest"];
    const WRONG_WAY: &'static [&'static str] = &["storage", "aws_credentials"];

    fn name(&self) -> &'static str {
        match self {
            ToEnclave::Nats(_) => "nats",
            ToEnclave::Ping => "ping",
            ToEnclave::Attest { .. } => "attest",
            ToEnclave::SetPcrManifest { .. } => "set_pcr_manifest",
        }
    }
}

impl RequestBody for ToParent {
    const NAMES: &'static [&'static str] = &["ping", "storage", "aws_credentials"];
    const WRONG_WAY: &'static [&'static str] = &["nats", "attest", "set_pcr_manifest"];

    fn name(&self) -> &'static str {
        match self {
            ToParent::Ping => "ping",
            ToParent::Storage(_) => "storage",
            ToParent::AwsCredentials => "aws_credentials",
        }
    }
}

/// One end of the link: which requests it sends and which it serves. The link's connection and
/// handler are typed by their side, so the compiler, not a run-time check, says who sends what.
pub trait Side: Send + Sync + 'static {
    /// Requests this side sends its peer.
    type Sends: RequestBody;
    /// Requests this side serves (the peer's [`Side::Sends`]).
    type Serves: RequestBody;
}

/// The parent, and tools that talk to the enclave the way the parent does.
#[derive(Debug, Clone, Copy)]
pub enum ParentSide {}

/// The enclave.
#[derive(Debug, Clone, Copy)]
pub enum EnclaveSide {}

impl Side for ParentSide {
    type Sends = ToEnclave;
    type Serves = ToParent;
}

impl Side for EnclaveSide {
    type Sends = ToParent;
    type Serves = ToEnclave;
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// What to publish for a [`ToEnclave::Nats`].
    Nats(NatsReply),
    /// Answer to [`ToEnclave::Ping`] and [`ToParent::Ping`].
    Pong,
    /// Answer to [`ToParent::Storage`].
    Storage(StorageResponse),
    /// Answer to [`ToEnclave::Attest`]: the NSM document (COSE_Sign1 bytes).
    Attestation {
        /// Document bytes.
        document: Bytes,
    },
    /// A request that needs no data back was carried out.
    Done,
    /// Answer to [`ToParent::AwsCredentials`].
    AwsCredentials(AwsCredentials),
}

/// Temporary AWS credentials (instance role in production, static in dev).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    /// `AKIA…` / `ASIA…`.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// STS session token, for temporary credentials.
    pub session_token: Option<String>,
    /// When they expire, as Unix milliseconds; `None` for long-lived (dev) credentials.
    pub expires_at_ms: Option<u64>,
}

/// Never prints the secret or the token.
impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// An object-store operation the enclave asks the parent to perform. Keys are chosen by the
/// enclave only (`vaults/{guid}/...`); the parent re-validates them for good errors, but the
/// enclave never relies on that. Bodies are ciphertext the parent cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageRequest {
    /// Read an object and its ETag.
    Get {
        /// Object key.
        key: String,
    },
    /// Read an object's ETag and size only.
    Head {
        /// Object key.
        key: String,
    },
    /// Write an object, always conditionally: two hosts can never silently overwrite each other.
    Put {
        /// Object key.
        key: String,
        /// Object bytes.
        body: Bytes,
        /// When the write may happen.
        condition: PutCondition,
    },
    /// Delete an object, optionally only if it still has the given ETag.
    Delete {
        /// Object key.
        key: String,
        /// Required current ETag, if any.
        if_match: Option<String>,
    },
    /// List keys under a prefix, one page at a time.
    List {
        /// Key prefix (must end in `/`).
        prefix: String,
        /// Continuation token from the previous page.
        continuation: Option<String>,
        /// Page size (the parent caps it at 1000).
        max_keys: u32,
    },
}

/// Precondition of a [`StorageRequest::Put`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutCondition {
    /// Create only: fails with [`StorageResponse::Conflict`] if the key exists (`If-None-Match: *`).
    Create,
    /// Replace only the version read: fails with [`StorageResponse::Conflict`] if the ETag
    /// changed (`If-Match`).
    IfMatch(String),
}

/// Result of a [`StorageRequest`]. Infrastructure failures (S3 unreachable, timeouts) are
/// [`crate::ErrorCode::Unavailable`] errors instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageResponse {
    /// A `Get` result.
    Object {
        /// Object bytes.
        body: Bytes,
        /// Its ETag.
        etag: String,
    },
    /// A `Head` result.
    Meta {
        /// ETag.
        etag: String,
        /// Size in bytes.
        size: u64,
    },
    /// A successful `Put`, with the new ETag.
    Written {
        /// New ETag.
        etag: String,
    },
    /// A successful `Delete`.
    Deleted,
    /// A page of a `List`.
    Listing {
        /// Objects on this page.
        objects: Vec<ListedObject>,
        /// Token for the next page, if any.
        continuation: Option<String>,
    },
    /// No such key (`Get`, `Head`, `Delete`).
    NotFound,
    /// A precondition failed: the object exists (`Create`) or changed (`IfMatch`).
    Conflict,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedObject {
    /// Full key.
    pub key: String,
    /// ETag.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// A NATS message as the parent received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsMessage {
    /// Full subject, e.g. `OwnerSpace.{guid}.forVault.attestation`.
    pub subject: String,
    /// Reply inbox, when the sender used request/reply.
    pub reply: Option<String>,
    /// Headers as (name, value) pairs; names may repeat, order is not significant.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Payload bytes, uninterpreted by the parent.
    pub payload: Bytes,
}

/// What the parent publishes on the enclave's behalf after a [`ToEnclave::Nats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsReply {
    /// Payload for the request's reply inbox (ignored when the request had none).
    pub reply: Option<Bytes>,
    /// Extra publications, e.g. `OwnerSpace.{guid}.forApp.{op}.response`.
    #[serde(default)]
    pub publish: Vec<Publication>,
}

/// One message to publish on core NATS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Subject to publish on.
    pub subject: String,
    /// Payload bytes.
    pub payload: Bytes,
}

/// Fire-and-forget notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A structured log line from the enclave, re-logged by the parent.
    Log(LogEvent),
    /// A publication not tied to a request.
    Publish(Publication),
}

/// Severity of a forwarded log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is off.
    Warn,
    /// Normal operation.
    Info,
    /// Detail.
    Debug,
}

/// A structured log line. The enclave only emits allow-listed messages and fields: never
/// secrets, never free-form crypto error text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Severity.
    pub level: LogLevel,
    /// Emitting module (tracing target).
    pub target: String,
    /// The message.
    pub message: String,
    /// Structured fields as (name, value) pairs.
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}
