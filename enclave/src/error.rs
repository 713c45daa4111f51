//! Every error a client can see, with its fixed text and stable code.
//!
//! A leaf: it names only the two error types it wraps ([`SealError`], [`Rejection`]), themselves
//! leaves, so every layer (handlers, vault, control, the reply encoder) can return it without
//! importing the others. The JSON shape it is sent in is [`crate::reply`]'s.

use serde_json::{Map, Value};

use crate::control::rejection::Rejection;
use crate::sealing::SealError;

/// Every error a client can see. Each has a fixed code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Payload is not a JSON object.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// Payload over [`MAX_PAYLOAD_LEN`](crate::reply::MAX_PAYLOAD_LEN).
    #[error("payload too large")]
    PayloadTooLarge,
    /// No `nonce` (or `payload.nonce`) string.
    #[error("nonce is required")]
    MissingNonce,
    /// `nonce` is not standard base64, or empty.
    #[error("nonce must be non-empty standard base64")]
    BadNonce,
    /// Decoded nonce longer than the NSM accepts.
    #[error("nonce exceeds 512 bytes")]
    NonceTooLarge,
    /// Subject not served.
    #[error("unknown subject")]
    UnknownSubject,
    /// Owner-space token is not a valid id.
    #[error("invalid owner space")]
    InvalidOwner,
    /// Known subject family, operation not implemented by this build.
    #[error("operation not supported")]
    NotSupported,
    /// A bound was hit (keys, concurrency); retry later.
    #[error("enclave busy, retry later")]
    Busy,
    /// The NSM failed to produce a document.
    #[error("attestation unavailable")]
    AttestationFailed,
    /// A signed control command was refused; the text names the reason.
    #[error("{0}")]
    ControlRejected(Rejection),
    /// A `drain` command was accepted: new vault work goes to another enclave.
    #[error("enclave is draining, retry on another host")]
    Draining,
    /// A required payload field is missing or has the wrong type or encoding.
    #[error("missing or invalid field: {0}")]
    BadField(&'static str),
    /// A v2 request (or the plaintext it seals) has a field its operation does not take.
    #[error("unknown field for this operation")]
    UnknownField,
    /// `pin` with a `type` that is not `pin.setup`, `pin.unlock` or `pin.change`.
    #[error("unknown pin operation")]
    UnknownPinOp,
    /// `pin.setup` without a live attestation key for this user.
    #[error("attestation key required - did attestation complete?")]
    AttestationKeyRequired,
    /// An app envelope did not decrypt (wrong key, tampered, or not for this vault).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The decrypted payload is not the JSON object expected.
    #[error("invalid encrypted payload")]
    BadPlaintext,
    /// PIN is not 4-8 ASCII digits.
    #[error("PIN must be 4-8 digits")]
    InvalidPinFormat,
    /// `pin.setup` on a vault that is already enrolled (G5).
    #[error("vault already enrolled")]
    AlreadyEnrolled,
    /// No vault exists for this user.
    #[error("vault not enrolled")]
    NotEnrolled,
    /// The vault is locked (cold, or idle too long): `pin.unlock` first.
    #[error("vault is locked")]
    VaultLocked,
    /// Wrong PIN; `attempts_remaining` before lockout.
    #[error("invalid PIN")]
    InvalidPin {
        /// Attempts left before lockout.
        attempts_remaining: u32,
    },
    /// Too many recent failures: no PIN is evaluated before `retry_after_seconds`.
    #[error("too many PIN attempts, retry later")]
    PinBackoff {
        /// Seconds until the next attempt is evaluated.
        retry_after_seconds: u64,
    },
    /// The attempt limit was reached: only a signed `vault.reset` clears the vault.
    #[error("vault locked out after too many PIN attempts")]
    LockedOut,
    /// Unknown or already used UTK (single use, G3).
    #[error("unknown or already used UTK")]
    UtkInvalid,
    /// `credential.create` when a credential exists.
    #[error("credential already exists")]
    CredentialExists,
    /// A credential operation without a credential.
    #[error("no credential")]
    NoCredential,
    /// The password hash is not an acceptable Argon2id PHC string.
    #[error("invalid password hash")]
    InvalidPasswordHash,
    /// The presented password hash does not match the stored one.
    #[error("password hash mismatch")]
    PasswordMismatch,
    /// No secret with that id.
    #[error("secret not found")]
    SecretNotFound,
    /// The vault is at its secrets limit.
    #[error("too many secrets")]
    TooManySecrets,
    /// The vault changed on another host since this enclave read it: retry.
    #[error("vault changed on another host, retry")]
    StorageConflict,
    /// Vault storage is unavailable; nothing was changed.
    #[error("vault storage unavailable, nothing was changed")]
    StorageUnavailable,
    /// Storage did not answer in time: the change may or may not have been stored. A retry is
    /// safe (its UTK is single use, so a change cannot apply twice).
    #[error("vault storage did not answer in time; the change may have been stored, retry")]
    StorageTimeout,
    /// The parent's deadline for the request came before the work could start (the vault was
    /// busy, the Argon2 permits taken, KMS or storage slow): nothing was changed, retry.
    #[error("the request ran out of time before anything was changed, retry")]
    DeadlineExceeded,
    /// The stored vault is not the one the trusted store pins (older, a fork, or withheld), or
    /// is older than one this enclave has seen: a replayed object.
    #[error("stored vault is stale (rollback refused)")]
    StaleVault,
    /// The trusted store (the vault's rollback anchor) could not be read or written in time:
    /// nothing the request did was acknowledged and a PIN attempt was not evaluated, but a
    /// change may still take effect (its object was written; the next load may adopt it), so it
    /// is in doubt like `storage_timeout`: a UTK it used may be spent. Retry.
    #[error("the trusted store is unavailable; nothing was acknowledged, retry")]
    TrustedStoreUnavailable,
    /// The stored vault failed authentication or parsing.
    #[error("stored vault is corrupt")]
    CorruptVault,
    /// KMS refused or failed; the code names the KMS condition.
    #[error("{0}")]
    Kms(SealError),
    /// Unsigned `enclave.vault.reset` (G6): only a signed control command may reset a vault.
    #[error("unsigned vault reset refused; use a signed Control.user.{{guid}}.vault.reset")]
    UnsignedReset,
    /// The change would make the stored vault larger than a load accepts: refused before it is
    /// written, so the vault stays loadable (nothing was changed).
    #[error("vault is full: the change would make it too large to store")]
    VaultFull,
    /// A PIN envelope this vault has already accepted (a recorded request replayed).
    #[error("request already used (replay refused)")]
    ReplayedRequest,
    /// A v1 envelope where this enclave accepts only v2 (`--accept-v1-pin-envelopes` is off).
    #[error("v1 envelopes are not accepted here; use the v2 envelope")]
    V1EnvelopeRefused,
    /// `credential.create` without the proof from `pin.setup` or the last `pin.unlock`.
    #[error("credential.create needs the create proof from pin.setup or pin.unlock")]
    CreateProofRequired,
    /// An internal failure (random source, serialisation). Nothing was changed.
    #[error("internal error")]
    Internal,
}

impl ClientError {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ClientError::InvalidJson => "invalid_json",
            ClientError::PayloadTooLarge => "payload_too_large",
            ClientError::MissingNonce => "missing_nonce",
            ClientError::BadNonce => "bad_nonce",
            ClientError::NonceTooLarge => "nonce_too_large",
            ClientError::UnknownSubject => "unknown_subject",
            ClientError::InvalidOwner => "invalid_owner",
            ClientError::NotSupported => "not_supported",
            ClientError::Busy => "busy",
            ClientError::AttestationFailed => "attestation_failed",
            ClientError::ControlRejected(_) => "control_rejected",
            ClientError::Draining => "draining",
            ClientError::BadField(_) => "bad_field",
            ClientError::UnknownField => "unknown_field",
            ClientError::UnknownPinOp => "unknown_pin_op",
            ClientError::AttestationKeyRequired => "attestation_key_required",
            ClientError::DecryptionFailed => "decryption_failed",
            ClientError::BadPlaintext => "bad_plaintext",
            ClientError::InvalidPinFormat => "invalid_pin_format",
            ClientError::AlreadyEnrolled => "already_enrolled",
            ClientError::NotEnrolled => "not_enrolled",
            ClientError::VaultLocked => "vault_locked",
            ClientError::InvalidPin { .. } => "invalid_pin",
            ClientError::PinBackoff { .. } => "pin_backoff",
            ClientError::LockedOut => "locked_out",
            ClientError::UtkInvalid => "utk_invalid",
            ClientError::CredentialExists => "credential_exists",
            ClientError::NoCredential => "no_credential",
            ClientError::InvalidPasswordHash => "invalid_password_hash",
            ClientError::PasswordMismatch => "password_mismatch",
            ClientError::SecretNotFound => "secret_not_found",
            ClientError::TooManySecrets => "too_many_secrets",
            ClientError::StorageConflict => "storage_conflict",
            ClientError::StorageUnavailable => "storage_unavailable",
            ClientError::StorageTimeout => "storage_timeout",
            ClientError::DeadlineExceeded => "deadline_exceeded",
            ClientError::StaleVault => "stale_vault",
            ClientError::TrustedStoreUnavailable => "trusted_store_unavailable",
            ClientError::CorruptVault => "corrupt_vault",
            ClientError::Kms(e) => e.code(),
            ClientError::UnsignedReset => "unsigned_reset_refused",
            ClientError::VaultFull => "vault_full",
            ClientError::ReplayedRequest => "replayed_request",
            ClientError::V1EnvelopeRefused => "v1_envelope_refused",
            ClientError::CreateProofRequired => "create_proof_required",
            ClientError::Internal => "internal",
        }
    }

    /// Extra reply fields some errors carry (added by [`crate::reply::error_body`]).
    pub(crate) fn extras(self, body: &mut Map<String, Value>) {
        match self {
            ClientError::InvalidPin { attempts_remaining } => {
                body.insert("attempts_remaining".into(), attempts_remaining.into());
            }
            ClientError::PinBackoff {
                retry_after_seconds,
            } => {
                body.insert("retry_after_seconds".into(), retry_after_seconds.into());
            }
            _ => {}
        }
    }
}

/// A refused command is answered `control_rejected` with its reason, except a full replay cache:
/// that is load, not a verdict on the command, so the client hears `busy` and may retry.
impl From<Rejection> for ClientError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::ReplayCacheFull => ClientError::Busy,
            r => ClientError::ControlRejected(r),
        }
    }
}
