//! The checks a control command passes before it runs, in order, each with its own refusal.
//!
//! The parent is untrusted (it may forge, replay, delay or re-address anything), so every check
//! is made here: signature by a measured key, subject scope against the signed target, the
//! subject's command token against the signed command, freshness against the enclave's clock,
//! and replay by `command_id`. VettID made these checks in the parent, where they protect nothing
//! against the host, and left `enclave.vault.reset` unauthenticated (G6).
//!
//! The clock is a parameter (`now_ms`), so every time rule is unit-tested without sleeping.

use super::commands::{self, Command, CommandKind};
use super::keys::VerifyingKeys;
use super::replay::ReplayCache;
use super::wire::{self, Target};
use super::Rejection;
use crate::router::ControlScope;

/// Longest validity window (`expires_at - issued_at`) accepted: VettID's 5 minutes. It also bounds
/// how long a replayed command could matter and how long the replay cache must remember it.
pub const MAX_VALIDITY_MS: u64 = 5 * 60 * 1000;

/// How far `issued_at` may be ahead of the enclave's clock (signer clock skew).
pub const MAX_CLOCK_SKEW_MS: u64 = 60 * 1000;

/// Verifies control commands addressed to this enclave.
#[derive(Debug)]
pub struct Verifier {
    keys: VerifyingKeys,
    enclave_id: String,
    not_before_ms: u64,
    replay: ReplayCache,
}

impl Verifier {
    /// A verifier for the enclave named `enclave_id`. Commands issued before `not_before_ms`
    /// (the enclave's start) are refused: the replay cache is empty after a restart, so such a
    /// command could be a replay of one already run.
    pub fn new(
        keys: VerifyingKeys,
        enclave_id: String,
        not_before_ms: u64,
        replay_capacity: usize,
    ) -> Self {
        Self {
            keys,
            enclave_id,
            not_before_ms,
            replay: ReplayCache::new(replay_capacity),
        }
    }

    /// This enclave's id (what `Control.enclave.{id}` must name).
    pub fn enclave_id(&self) -> &str {
        &self.enclave_id
    }

    /// The verifying keys.
    pub fn keys(&self) -> &VerifyingKeys {
        &self.keys
    }

    /// Runs every check on `payload` received on a subject with `scope` and command token
    /// `subject_command`, at `now_ms`. A command that passes is recorded as seen.
    ///
    /// # Errors
    /// The first [`Rejection`] that applies.
    pub fn verify(
        &self,
        scope: &ControlScope,
        subject_command: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Command, Rejection> {
        if self.keys.is_empty() {
            return Err(Rejection::Disabled);
        }
        let env = wire::decode(payload)?;
        self.keys
            .verify(&env.key_id, &env.signed_bytes, &env.signature)?;
        // From here on the content is what a key holder signed.
        let kind = CommandKind::parse(&env.command).ok_or(Rejection::UnknownCommand)?;
        if env.command != subject_command {
            return Err(Rejection::CommandMismatch);
        }
        if !self.scope_matches(scope, &env.target) {
            return Err(Rejection::WrongTarget);
        }
        if !kind.allowed_for(&env.target) {
            return Err(Rejection::NotForTarget);
        }
        check_times(
            env.issued_at_ms,
            env.expires_at_ms,
            now_ms,
            self.not_before_ms,
        )?;
        let reason = commands::check_params(&env.params)?;
        self.replay
            .insert(&env.command_id, env.expires_at_ms, now_ms)?;
        Ok(Command {
            id: env.command_id,
            kind,
            target: env.target,
            reason,
            issued_by: env.issued_by,
            key_id: env.key_id,
            issued_at_ms: env.issued_at_ms,
        })
    }

    /// The subject and the signed target must name the same thing, and an enclave target must
    /// name this enclave.
    fn scope_matches(&self, scope: &ControlScope, target: &Target) -> bool {
        match (scope, target) {
            (ControlScope::Global, Target::Global) => true,
            (ControlScope::Enclave(s), Target::Enclave(t)) => s == t && *t == self.enclave_id,
            (ControlScope::User(s), Target::User(t)) => s == t,
            _ => false,
        }
    }
}

/// Freshness: not expired, not from the future, a window of at most [`MAX_VALIDITY_MS`], not
/// older than this enclave.
///
/// # Errors
/// [`Rejection::Expired`], [`Rejection::NotYetValid`], [`Rejection::BadWindow`] or
/// [`Rejection::BeforeStart`].
pub fn check_times(
    issued_at_ms: u64,
    expires_at_ms: u64,
    now_ms: u64,
    not_before_ms: u64,
) -> Result<(), Rejection> {
    if expires_at_ms <= now_ms {
        return Err(Rejection::Expired);
    }
    if issued_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Rejection::NotYetValid);
    }
    if expires_at_ms <= issued_at_ms || expires_at_ms - issued_at_ms > MAX_VALIDITY_MS {
        return Err(Rejection::BadWindow);
    }
    if issued_at_ms < not_before_ms {
        return Err(Rejection::BeforeStart);
    }
    Ok(())
}
