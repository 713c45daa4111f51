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
pub mod rejection;
pub mod replay;
pub mod verify;
pub mod wire;

use std::sync::atomic::{AtomicU8, Ordering};

pub use commands::{AdminError, Command, CommandKind, InEnclaveAdmin, VaultAdmin};
pub use keys::{KeyFileError, VerifyingKeys};
pub use rejection::Rejection;
pub use verify::Verifier;
pub use wire::Target;

use crate::clock::now_ms;
use crate::error::ClientError;
use crate::reply::Body;
use crate::router::ControlScope;

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

/// Control state held in [`crate::EnclaveState`].
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
/// What a command acts on comes from the caller: `admin` for users' vaults, `health` for the
/// health reply (built only for `health.request`). Control then depends on neither the vault
/// nor the enclave's state, and the processor, which knows whether a vault can exist here,
/// chooses the admin.
///
/// # Errors
/// [`ClientError::ControlRejected`] naming the reason, or [`ClientError::Busy`].
pub async fn handle<A: VaultAdmin>(
    control: &ControlState,
    admin: &A,
    health: impl FnOnce() -> Body,
    scope: &ControlScope,
    command: &str,
    payload: &[u8],
) -> Result<Body, ClientError> {
    let cmd = control
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
    commands::execute(control, admin, health, &cmd).await
}

/// `dev-{hostname}`, the same default the parent uses when no `enclave_id` is configured (one
/// rule, owned by [`vettid_link::host::dev_enclave_id`]).
pub fn default_enclave_id() -> String {
    vettid_link::host::dev_enclave_id()
}

#[cfg(test)]
mod tests;
