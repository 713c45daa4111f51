//! The control commands: the closed set ([`CommandKind`]), a verified [`Command`] (what
//! [`super::verify`] produces from a signed envelope), and what each does once verified.
//!
//! `vault.reset` and `credential.delete` replace VettID's unsigned `enclave.vault.reset` (G6):
//! they only ever run from a command signed for exactly that user. The vault does not exist yet,
//! so they act through [`VaultAdmin`], whose one implementation today clears what the enclave
//! holds for the user (attestation keys); the vault will extend it to its records.

use std::future::Future;

use serde_json::{Map, Value};

use super::wire::Target;
use super::{ControlState, Rejection};
use crate::error::ClientError;
use crate::keys::KeyStore;
use crate::reply::Body;
use crate::router::OwnerSpace;

/// Longest `params.reason`.
pub const MAX_REASON_LEN: usize = 256;

/// The commands the enclave knows (a closed set: anything else is `unknown command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `health.request`: answer the health object (global or enclave target).
    HealthRequest,
    /// `drain`: refuse new vault work from now on; health and control keep answering.
    Drain,
    /// `vault.reset`: wipe one user's vault (user target).
    VaultReset,
    /// `credential.delete`: delete one user's credential (user target).
    CredentialDelete,
}

impl CommandKind {
    /// The command for its wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "health.request" => Self::HealthRequest,
            "drain" => Self::Drain,
            "vault.reset" => Self::VaultReset,
            "credential.delete" => Self::CredentialDelete,
            _ => return None,
        })
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HealthRequest => "health.request",
            Self::Drain => "drain",
            Self::VaultReset => "vault.reset",
            Self::CredentialDelete => "credential.delete",
        }
    }

    /// Whether the command makes sense for `target`: per-user commands never go fleet-wide.
    pub fn allowed_for(self, target: &Target) -> bool {
        match self {
            Self::HealthRequest | Self::Drain => {
                matches!(target, Target::Global | Target::Enclave(_))
            }
            Self::VaultReset | Self::CredentialDelete => matches!(target, Target::User(_)),
        }
    }
}

/// A verified command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its unique id.
    pub id: String,
    /// What to do.
    pub kind: CommandKind,
    /// Whom to do it to.
    pub target: Target,
    /// Optional `params.reason`, for the audit log.
    pub reason: Option<String>,
    /// Who signed it.
    pub issued_by: String,
    /// With which key.
    pub key_id: String,
    /// When it was signed (Unix ms): per-user commands apply only if newer than the last one
    /// applied to that vault, fleet-wide when vaults are anchored.
    pub issued_at_ms: u64,
}

/// Every command takes the same params today: an optional `reason` string (≤ 256 characters)
/// for the audit log. Anything else is refused so a signer can never believe a parameter had an
/// effect it did not have.
///
/// # Errors
/// [`Rejection::BadParams`].
pub fn check_params(params: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    let mut reason = None;
    for (k, v) in params {
        match (k.as_str(), v) {
            ("reason", Value::String(s)) if s.chars().count() <= MAX_REASON_LEN => {
                reason = Some(s.clone());
            }
            _ => return Err(Rejection::BadParams),
        }
    }
    Ok(reason)
}

/// Why an administrative vault operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Storage or the vault is unavailable for now; the command may be re-signed and retried.
    #[error("vault unavailable")]
    Unavailable,
    /// A command issued no later than this one was already applied to the vault (this one
    /// replayed, on this host or another).
    #[error("an equal or newer command was already applied")]
    Replayed,
}

/// Administrative operations on one user's vault. The vault issue implements this over its
/// records and storage; today [`InEnclaveAdmin`] clears the enclave's in-memory state.
pub trait VaultAdmin {
    /// Wipes everything held for `user` by a command signed at `issued_at_ms`; returns how many
    /// items were removed.
    fn reset(
        &self,
        user: &OwnerSpace,
        issued_at_ms: u64,
    ) -> impl Future<Output = Result<usize, AdminError>> + Send;
    /// Deletes `user`'s credential by a command signed at `issued_at_ms`; returns how many items
    /// were removed.
    fn delete_credential(
        &self,
        user: &OwnerSpace,
        issued_at_ms: u64,
    ) -> impl Future<Output = Result<usize, AdminError>> + Send;
}

/// [`VaultAdmin`] over what the enclave holds today: attestation keys minted for the user.
pub struct InEnclaveAdmin<'a> {
    keys: &'a KeyStore,
}

impl<'a> InEnclaveAdmin<'a> {
    /// Over `keys`.
    pub fn new(keys: &'a KeyStore) -> Self {
        Self { keys }
    }
}

impl VaultAdmin for InEnclaveAdmin<'_> {
    async fn reset(&self, user: &OwnerSpace, _issued_at_ms: u64) -> Result<usize, AdminError> {
        Ok(self.keys.remove_owner(user.as_str()))
    }

    async fn delete_credential(
        &self,
        user: &OwnerSpace,
        _issued_at_ms: u64,
    ) -> Result<usize, AdminError> {
        // No credential store yet: the user's pending attestation keys are all there is.
        Ok(self.keys.remove_owner(user.as_str()))
    }
}

/// Runs a verified command: `drain` on `control`, per-user commands through `admin`,
/// `health.request` by calling `health`.
///
/// # Errors
/// [`ClientError::Busy`] when the vault is unavailable.
pub async fn execute<A: VaultAdmin>(
    control: &ControlState,
    admin: &A,
    health: impl FnOnce() -> Body,
    cmd: &Command,
) -> Result<Body, ClientError> {
    let user_op = |status: &str, user: &OwnerSpace, removed: usize| {
        let mut m = Map::new();
        m.insert("status".into(), status.into());
        m.insert("user".into(), user.as_str().into());
        m.insert("removed".into(), removed.into());
        m.insert("command_id".into(), cmd.id.clone().into());
        Body::Object(m)
    };
    match (cmd.kind, &cmd.target) {
        (CommandKind::HealthRequest, _) => Ok(health()),
        (CommandKind::Drain, _) => {
            control.begin_drain();
            let mut m = Map::new();
            m.insert("status".into(), "draining".into());
            m.insert("command_id".into(), cmd.id.clone().into());
            Ok(Body::Object(m))
        }
        (CommandKind::VaultReset, Target::User(user)) => {
            let removed = admin
                .reset(user, cmd.issued_at_ms)
                .await
                .map_err(admin_error)?;
            Ok(user_op("reset", user, removed))
        }
        (CommandKind::CredentialDelete, Target::User(user)) => {
            let removed = admin
                .delete_credential(user, cmd.issued_at_ms)
                .await
                .map_err(admin_error)?;
            Ok(user_op("deleted", user, removed))
        }
        // The verifier only passes per-user commands with a user target.
        (CommandKind::VaultReset | CommandKind::CredentialDelete, _) => {
            Err(ClientError::ControlRejected(Rejection::NotForTarget))
        }
    }
}

fn admin_error(e: AdminError) -> ClientError {
    tracing::warn!(error = %e, "control command failed");
    match e {
        AdminError::Replayed => ClientError::ControlRejected(Rejection::Replayed),
        AdminError::Unavailable => ClientError::Busy,
    }
}
