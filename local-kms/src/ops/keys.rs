//! Key management: CreateKey, DescribeKey, EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion.

use serde::Deserialize;
use serde_json::{json, Value};

use super::refuse_dry_run;
use crate::error::KmsError;
use crate::kms::{now_secs, Caller, Kms};
use crate::store::{Key, KeyState};

const DAY_SECS: u64 = 86_400;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateKey {
    description: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    key_usage: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KeyOnly {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ScheduleKeyDeletion {
    key_id: String,
    pending_window_in_days: Option<u64>,
    dry_run: Option<bool>,
}

pub(super) fn create(kms: &Kms, caller: &Caller, req: CreateKey) -> Result<Value, KmsError> {
    for spec in [&req.key_spec, &req.customer_master_key_spec]
        .into_iter()
        .flatten()
    {
        if spec != "SYMMETRIC_DEFAULT" {
            return Err(KmsError::Validation(format!(
                "KeySpec {spec} is not supported (only SYMMETRIC_DEFAULT)"
            )));
        }
    }
    if let Some(usage) = req.key_usage.as_deref().filter(|u| *u != "ENCRYPT_DECRYPT") {
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not supported (only ENCRYPT_DECRYPT)"
        )));
    }
    let description = req.description.unwrap_or_default();
    if description.len() > 8192 {
        return Err(KmsError::Validation(
            "Description is longer than 8192 characters".into(),
        ));
    }
    // The lockout check is not modelled: the stored policy is what is evaluated either way.
    let _ = req.bypass_policy_lockout_safety_check;
    if let Some(policy) = &req.policy {
        crate::policy::validate(policy).map_err(KmsError::MalformedPolicy)?;
    }
    let account = (caller.account != kms.account()).then_some(caller.account.as_str());
    let key = kms.store().create(
        &new_key_id()?,
        &description,
        now_secs(),
        account,
        req.policy,
    )?;
    Ok(json!({ "KeyMetadata": metadata(kms, &key) }))
}

pub(super) fn describe(kms: &Kms, caller: &Caller, req: KeyOnly) -> Result<Value, KmsError> {
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:DescribeKey", caller)?;
    Ok(json!({ "KeyMetadata": metadata(kms, &key) }))
}

pub(super) fn enable(kms: &Kms, caller: &Caller, req: KeyOnly) -> Result<Value, KmsError> {
    set_enabled(kms, caller, &req.key_id, KeyState::Enabled)
}

pub(super) fn disable(kms: &Kms, caller: &Caller, req: KeyOnly) -> Result<Value, KmsError> {
    set_enabled(kms, caller, &req.key_id, KeyState::Disabled)
}

fn set_enabled(
    kms: &Kms,
    caller: &Caller,
    key_id: &str,
    state: KeyState,
) -> Result<Value, KmsError> {
    let key = kms.key(key_id, caller)?;
    let action = if state == KeyState::Enabled {
        "kms:EnableKey"
    } else {
        "kms:DisableKey"
    };
    kms.authorize(&key, action, caller)?;
    let arn = kms.arn(&key);
    let id = key.record.key_id;
    kms.store().update(&id, &arn, |record| {
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            )));
        }
        record.state = state;
        Ok(())
    })?;
    Ok(json!({}))
}

pub(super) fn schedule_deletion(
    kms: &Kms,
    caller: &Caller,
    req: ScheduleKeyDeletion,
) -> Result<Value, KmsError> {
    refuse_dry_run(req.dry_run)?;
    let days = req.pending_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        return Err(KmsError::Validation(
            "PendingWindowInDays must be between 7 and 30".into(),
        ));
    }
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:ScheduleKeyDeletion", caller)?;
    let arn = kms.arn(&key);
    let id = key.record.key_id;
    let key = kms.store().update(&id, &arn, |record| {
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            )));
        }
        record.state = KeyState::PendingDeletion;
        record.deletion_date = Some(now_secs() + days * DAY_SECS);
        Ok(())
    })?;
    Ok(json!({
        "KeyId": arn,
        "DeletionDate": key.record.deletion_date,
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": days,
    }))
}

/// Like KMS, a cancelled deletion leaves the key disabled.
pub(super) fn cancel_deletion(kms: &Kms, caller: &Caller, req: KeyOnly) -> Result<Value, KmsError> {
    let key = kms.key(&req.key_id, caller)?;
    kms.authorize(&key, "kms:CancelKeyDeletion", caller)?;
    let arn = kms.arn(&key);
    let id = key.record.key_id;
    kms.store().update(&id, &arn, |record| {
        if record.state != KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{arn} is not pending deletion."
            )));
        }
        record.state = KeyState::Disabled;
        record.deletion_date = None;
        Ok(())
    })?;
    Ok(json!({ "KeyId": arn }))
}

/// `KeyMetadata` with the fields the SDK and the enclave read.
fn metadata(kms: &Kms, key: &Key) -> Value {
    let r = &key.record;
    let mut meta = json!({
        "AWSAccountId": kms.key_account(key),
        "KeyId": r.key_id,
        "Arn": kms.arn(key),
        "CreationDate": r.creation_date,
        "Enabled": r.state == KeyState::Enabled,
        "Description": r.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": r.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let Some(date) = r.deletion_date {
        meta["DeletionDate"] = json!(date);
    }
    meta
}

/// A random (version 4) UUID, KMS's key id format.
pub(super) fn new_key_id() -> Result<String, KmsError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| KmsError::Internal("random generation failed".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}
