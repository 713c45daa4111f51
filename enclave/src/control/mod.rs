//! Signed control commands (`Control.global.*`, `Control.enclave.{id}.*`, `Control.user.{guid}.*`),
//! verified here in the enclave because the parent that relays them is untrusted.
//!
//! Why this exists in this shape: VettID's signer and verifier canonicalised differently, so no
//! signed command ever verified (G4), and its vault reset was not signed at all (G6). Here one
//! encoding ([`wire`]: `"vettid-control-v1\n"` + RFC 8785 JCS of the command without its
//! signature, Ed25519) is pinned by test vectors that an independent implementation reproduces;
//! the keys are measured into the EIF ([`keys`]); freshness, targeting and replay are checked in
//! order ([`verify`], [`replay`]); and only a closed set of commands runs ([`commands`]).
//! Protocol details for operators and signers: `docs/CONTROL.md`.
//!
//! Replies go back on the request's reply inbox only; nothing is published on app subjects.

pub mod commands;
pub mod keys;
pub mod replay;
pub mod verify;
pub mod wire;

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use commands::{AdminError, CommandKind, InEnclaveAdmin, VaultAdmin};
pub use keys::{KeyFileError, VerifyingKeys};
pub use verify::{Command, Verifier};
pub use wire::Target;

use crate::reply::{Body, ClientError};
use crate::router::ControlScope;
use crate::state::EnclaveState;

/// Why a control command was refused. Each text is fixed and names the reason; none says which
/// byte was wrong or echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No `--control-keys` were configured.
    #[error("control command rejected: no control keys configured")]
    Disabled,
    /// Not the exact command shape (strict JSON, known members, right types).
    #[error("control command rejected: malformed command")]
    Malformed,
    /// No `signature`.
    #[error("control command rejected: unsigned")]
    Unsigned,
    /// `key_id` is not one of the enclave's keys.
    #[error("control command rejected: unknown key")]
    UnknownKey,
    /// The signature does not verify (tampered, or signed by another key).
    #[error("control command rejected: bad signature")]
    BadSignature,
    /// `command` is not one the enclave knows.
    #[error("control command rejected: unknown command")]
    UnknownCommand,
    /// The subject's command token differs from the signed `command`.
    #[error("control command rejected: command does not match subject")]
    CommandMismatch,
    /// The subject's scope differs from the signed `target`, or names another enclave.
    #[error("control command rejected: wrong target")]
    WrongTarget,
    /// The command does not apply to this kind of target (e.g. a fleet-wide vault reset).
    #[error("control command rejected: command not allowed for this target")]
    NotForTarget,
    /// `expires_at` has passed.
    #[error("control command rejected: expired")]
    Expired,
    /// `issued_at` is more than the allowed skew ahead of the enclave's clock.
    #[error("control command rejected: issued in the future")]
    NotYetValid,
    /// `expires_at` is not after `issued_at`, or the window exceeds 5 minutes.
    #[error("control command rejected: validity window empty or longer than 5 minutes")]
    BadWindow,
    /// Issued before this enclave started (it cannot know whether it already ran).
    #[error("control command rejected: issued before this enclave started")]
    BeforeStart,
    /// `params` holds something other than an optional `reason` string.
    #[error("control command rejected: unsupported params")]
    BadParams,
    /// `command_id` already ran within its validity window.
    #[error("control command rejected: replayed")]
    Replayed,
    /// The replay cache is full of live ids; answered as `busy`.
    #[error("control command rejected: replay cache full")]
    ReplayCacheFull,
}

impl From<Rejection> for ClientError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::ReplayCacheFull => ClientError::Busy,
            r => ClientError::ControlRejected(r),
        }
    }
}

/// The enclave's lifecycle as far as control is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking all work.
    Serving,
    /// `drain` received: new vault work is refused; health and control still answer.
    Draining,
}

impl Phase {
    /// Whether new vault work (app, peer and Lambda attestation requests) is accepted.
    pub fn accepts_vault_work(self) -> bool {
        self == Phase::Serving
    }
}

/// Control state held in [`EnclaveState`].
#[derive(Debug)]
pub struct ControlState {
    verifier: Verifier,
    draining: AtomicU8,
}

impl ControlState {
    /// Control with `verifier`, serving.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            draining: AtomicU8::new(0),
        }
    }

    /// No keys: every command is refused as disabled.
    pub fn disabled() -> Self {
        Self::new(Verifier::new(
            VerifyingKeys::none(),
            default_enclave_id(),
            0,
            1,
        ))
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.draining.load(Ordering::Acquire) {
            0 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    /// Enters [`Phase::Draining`] (one way: a drained enclave is restarted, not resumed).
    pub fn begin_drain(&self) {
        if self.draining.swap(1, Ordering::AcqRel) == 0 {
            tracing::warn!("draining: new vault work is refused from now on");
        }
    }
}

/// Verifies and runs one control command received on a subject with `scope` and `command`.
///
/// # Errors
/// [`ClientError::ControlRejected`] naming the reason, or [`ClientError::Busy`].
pub async fn handle(
    state: &EnclaveState,
    scope: &ControlScope,
    command: &str,
    payload: &[u8],
) -> Result<Body, ClientError> {
    let cmd = state
        .control
        .verifier()
        .verify(scope, command, payload, now_ms())
        .inspect_err(|r| tracing::warn!(command, reason = %r, "control command refused"))?;
    tracing::info!(
        command = cmd.kind.as_str(),
        command_id = %cmd.id,
        issued_by = %cmd.issued_by,
        key_id = %cmd.key_id,
        target = ?cmd.target,
        reason = cmd.reason.as_deref().unwrap_or(""),
        "control command accepted"
    );
    // Without a sealer no vault can exist here: only the attestation keys are the user's.
    if state.sealer.is_some() {
        commands::execute(
            state,
            &crate::vault::VaultAdminImpl::new(state.vault_services()),
            &cmd,
        )
        .await
    } else {
        commands::execute(state, &InEnclaveAdmin::new(&state.keys), &cmd).await
    }
}

/// Wall-clock milliseconds since the Unix epoch (the enclave's clock, from the hypervisor).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `dev-{hostname}`, the same default the parent uses when no `enclave_id` is configured (one
/// rule, owned by [`vettid_link::host::dev_enclave_id`]).
pub fn default_enclave_id() -> String {
    vettid_link::host::dev_enclave_id()
}

#[cfg(test)]
mod tests;
