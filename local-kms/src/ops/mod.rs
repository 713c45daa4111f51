//! Dispatch from `X-Amz-Target: TrentService.<Op>` to one operation; one file per family.
//!
//! Operations are synchronous (key file writes, RSA encryption, attestation verification): the server runs
//! them on the blocking pool. Request structs ignore fields we do not use (the SDK sends `GrantTokens` and
//! friends), but every field we do use is validated the way KMS does.

mod crypto;
mod keys;
mod policies;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::KmsError;
use crate::kms::{Caller, Kms};

/// The prefix of every KMS target.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Runs the operation named by `target` on the JSON `body`.
///
/// # Errors
/// [`KmsError::UnknownOperation`] for a target we do not implement; the operation's own errors.
pub fn handle(kms: &Kms, caller: &Caller, target: &str, body: &[u8]) -> Result<Value, KmsError> {
    let op = target.strip_prefix(TARGET_PREFIX).ok_or_else(|| {
        KmsError::UnknownOperation(format!(
            "X-Amz-Target must be {TARGET_PREFIX}<Operation>, got {target:?}"
        ))
    })?;
    match op {
        "CreateKey" => keys::create(kms, caller, parse(body)?),
        "DescribeKey" => keys::describe(kms, caller, parse(body)?),
        "EnableKey" => keys::enable(kms, caller, parse(body)?),
        "DisableKey" => keys::disable(kms, caller, parse(body)?),
        "ScheduleKeyDeletion" => keys::schedule_deletion(kms, caller, parse(body)?),
        "CancelKeyDeletion" => keys::cancel_deletion(kms, caller, parse(body)?),
        "GetKeyPolicy" => policies::get(kms, caller, parse(body)?),
        "PutKeyPolicy" => policies::put(kms, caller, parse(body)?),
        "ListGrants" => policies::list_grants(kms, caller, parse(body)?),
        "CreateAlias" => policies::create_alias(kms, caller, parse(body)?),
        "Encrypt" => crypto::encrypt(kms, caller, parse(body)?),
        "Decrypt" => crypto::decrypt(kms, caller, parse(body)?),
        "GenerateDataKey" => crypto::generate_data_key(kms, caller, parse(body)?),
        "GenerateRandom" => crypto::generate_random(kms, parse(body)?),
        other => Err(KmsError::UnknownOperation(format!(
            "Operation {other} is not supported by the local KMS"
        ))),
    }
}

/// Parses a request body (an empty body is `{}`, as some SDK operations send).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    let body = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| {
        KmsError::Serialization(format!("Request body is not valid for this operation: {e}"))
    })
}

/// Refuses `DryRun`, which we do not model (running the operation instead would surprise the caller).
fn refuse_dry_run(dry_run: Option<bool>) -> Result<(), KmsError> {
    if dry_run == Some(true) {
        return Err(KmsError::Validation(
            "DryRun is not supported by the local KMS".into(),
        ));
    }
    Ok(())
}

/// `EncryptionAlgorithm`, if given, must be the symmetric default.
fn check_symmetric(algorithm: Option<&str>) -> Result<(), KmsError> {
    match algorithm {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::Validation(format!(
            "EncryptionAlgorithm {other} is not valid for a symmetric key"
        ))),
    }
}
