//! Key policies, grants and aliases: GetKeyPolicy, PutKeyPolicy, ListGrants, CreateAlias.
//!
//! GetKeyPolicy returns the document that is evaluated for the key (stored, or the default one), as the
//! JSON string KMS returns; PutKeyPolicy replaces it, if the current policy allows `kms:PutKeyPolicy`.
//! There are no grants, so ListGrants is always empty and complete, which is exactly what is enforced.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::KmsError;
use crate::kms::{Caller, Kms};

/// The only policy name KMS has.
const DEFAULT: &str = "default";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GetKeyPolicy {
    key_id: String,
    policy_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PutKeyPolicy {
    key_id: String,
    policy_name: Option<String>,
    policy: String,
    bypass_policy_lockout_safety_check: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListGrants {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateAlias {
    alias_name: String,
    target_key_id: String,
}

fn check_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(DEFAULT) => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "No such policy: {other} (the only policy name is default)"
        ))),
    }
}

pub(super) fn get(kms: &Kms, caller: &Caller, req: GetKeyPolicy) -> Result<Value, KmsError> {
    check_name(req.policy_name.as_deref())?;
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:GetKeyPolicy", caller)?;
    Ok(json!({ "Policy": kms.policy_of(&key), "PolicyName": DEFAULT }))
}

pub(super) fn put(kms: &Kms, caller: &Caller, req: PutKeyPolicy) -> Result<Value, KmsError> {
    check_name(req.policy_name.as_deref())?;
    // The lockout check is not modelled: whatever is stored is what is evaluated.
    let _ = req.bypass_policy_lockout_safety_check;
    crate::policy::validate(&req.policy).map_err(KmsError::MalformedPolicy)?;
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:PutKeyPolicy", caller)?;
    let arn = kms.arn(&key);
    kms.store().update(&key.record.key_id, &arn, |record| {
        record.policy = Some(req.policy);
        Ok(())
    })?;
    Ok(json!({}))
}

pub(super) fn list_grants(kms: &Kms, caller: &Caller, req: ListGrants) -> Result<Value, KmsError> {
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:ListGrants", caller)?;
    Ok(json!({ "Grants": [], "Truncated": false }))
}

/// An alias in the caller's account for a key of the caller's account.
pub(super) fn create_alias(
    kms: &Kms,
    caller: &Caller,
    req: CreateAlias,
) -> Result<Value, KmsError> {
    let name = req.alias_name.strip_prefix("alias/").unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 250
        && !name.starts_with("aws/")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
    if !ok {
        return Err(KmsError::Validation(format!(
            "AliasName {:?} must be alias/ and 1-250 of A-Za-z0-9/_- (not alias/aws/)",
            req.alias_name
        )));
    }
    let key = kms.key(&req.target_key_id, caller)?;
    if kms.key_account(&key) != caller.account {
        return Err(KmsError::Validation(
            "TargetKeyId must be a key in the caller's account".into(),
        ));
    }
    kms.authorize(&key, "kms:CreateAlias", caller)?;
    if kms.key(&req.alias_name, caller).is_ok() {
        return Err(KmsError::AlreadyExists(format!(
            "An alias with the name {} already exists",
            req.alias_name
        )));
    }
    let arn = kms.arn(&key);
    kms.store().update(&key.record.key_id, &arn, |record| {
        record.aliases.push(req.alias_name.clone());
        Ok(())
    })?;
    Ok(json!({}))
}
