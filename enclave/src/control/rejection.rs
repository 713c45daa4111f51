//! Why a signed control command was refused: a leaf, so the client-facing error
//! ([`crate::error::ClientError::ControlRejected`]) can carry the reason without the error type
//! depending on the control machinery that produces it.

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
