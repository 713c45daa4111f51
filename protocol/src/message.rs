//! Bodies carried in request, response and event frames.
//!
//! These mirror the wire exactly (STYLE rule 5): they are transport types, not domain types.
//! Subjects and payloads arriving from NATS are opaque here; the enclave validates them when it
//! turns them into its own types.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A request, in either direction. New variants are added with a capability so an older peer
/// is never sent one it cannot decode (it would answer [`crate::ErrorCode::UnknownRequest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Parent → enclave: one NATS message, forwarded without interpretation.
    Nats(NatsMessage),
    /// Either direction: answered with [`Response::Pong`]; used by tools and tests.
    Ping,
}

impl Request {
    /// Wire names of every request type this build knows, to tell "unknown type" from
    /// "malformed body" when decoding fails.
    pub const NAMES: &'static [&'static str] = &["nats", "ping"];

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Nats(_) => "nats",
            Request::Ping => "ping",
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// What to publish for a [`Request::Nats`].
    Nats(NatsReply),
    /// Answer to [`Request::Ping`].
    Pong,
}

/// A NATS message as the parent received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsMessage {
    /// Full subject, e.g. `OwnerSpace.{guid}.forVault.attestation`.
    pub subject: String,
    /// Reply inbox, when the sender used request/reply.
    pub reply: Option<String>,
    /// Headers as (name, value) pairs, in arrival order; names may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Payload bytes, uninterpreted by the parent.
    pub payload: Bytes,
}

/// What the parent publishes on the enclave's behalf after a [`Request::Nats`].
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
