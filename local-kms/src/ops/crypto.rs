//! Cryptographic operations: Encrypt, Decrypt, GenerateDataKey, GenerateRandom.
//!
//! Order of checks, as KMS: parameters, key existence, key state, then the key policy (attestation and PCR0),
//! and only then any cryptography. A plaintext leaves only through [`Kms::deliver`], which picks
//! `CiphertextForRecipient` whenever a verified `Recipient` was given, so no response carries both.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::{check_symmetric, refuse_dry_run};
use crate::blob;
use crate::error::KmsError;
use crate::kms::{decode_b64, Caller, Kms, Recipient};

/// KMS's bounds: Encrypt takes at most 4096 bytes; data keys and random strings are 1 to 1024 bytes.
const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
const MAX_GENERATED: u32 = 1024;

type Context = Option<BTreeMap<String, String>>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Encrypt {
    key_id: String,
    plaintext: String,
    encryption_context: Context,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Decrypt {
    ciphertext_blob: String,
    encryption_context: Context,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<Recipient>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GenerateDataKey {
    key_id: String,
    encryption_context: Context,
    number_of_bytes: Option<u32>,
    key_spec: Option<String>,
    recipient: Option<Recipient>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GenerateRandom {
    number_of_bytes: Option<u32>,
    recipient: Option<Recipient>,
}

pub(crate) fn encrypt(kms: &Kms, caller: &Caller, req: Encrypt) -> Result<Value, KmsError> {
    refuse_dry_run(req.dry_run)?;
    check_symmetric(req.encryption_algorithm.as_deref())?;
    let plaintext = decode_b64(&req.plaintext, "Plaintext")?;
    if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
        return Err(KmsError::Validation(format!(
            "Plaintext must be 1 to {MAX_ENCRYPT_PLAINTEXT} bytes"
        )));
    }
    let key = kms.key(&req.key_id, caller)?;
    kms.check_usable(&key)?;
    // Encrypt takes no Recipient, so the policy sees no attestation.
    kms.authorize(&key, "kms:Encrypt", caller)?;
    let id = &key.record.key_id;
    let sealed = blob::seal(
        &key.material,
        id,
        &req.encryption_context.unwrap_or_default(),
        &plaintext,
    )?;
    Ok(json!({
        "CiphertextBlob": b64(&sealed),
        "KeyId": kms.answered_key_id(&key),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(crate) fn decrypt(kms: &Kms, caller: &Caller, req: Decrypt) -> Result<Value, KmsError> {
    refuse_dry_run(req.dry_run)?;
    check_symmetric(req.encryption_algorithm.as_deref())?;
    let raw = decode_b64(&req.ciphertext_blob, "CiphertextBlob")?;
    let parsed = blob::parse(&raw)?;
    // The blob names its key by id; it is found in whatever account holds it (cross-account decrypt is
    // then up to that key's policy).
    let key = kms.store().get(parsed.key_id).ok_or_else(|| {
        // A blob naming a key we do not hold is not ours.
        KmsError::InvalidCiphertext("The ciphertext names an unknown key".into())
    })?;
    if let Some(given) = req.key_id.as_deref() {
        if kms.key(given, caller)?.record.key_id != key.record.key_id {
            return Err(KmsError::IncorrectKey(
                "The key ID in the request does not identify the key that encrypted the ciphertext"
                    .into(),
            ));
        }
    }
    kms.check_usable(&key)?;
    let delivery = kms.delivery(req.recipient.as_ref(), Some((&key, "kms:Decrypt", caller)))?;
    let plaintext = blob::open(
        &parsed,
        &key.material,
        &req.encryption_context.unwrap_or_default(),
    )?;
    let (field, value) = kms.deliver(&delivery, &plaintext)?;
    let mut out = Map::new();
    out.insert("KeyId".into(), json!(kms.answered_key_id(&key)));
    out.insert("EncryptionAlgorithm".into(), json!("SYMMETRIC_DEFAULT"));
    out.insert(field.into(), json!(value));
    Ok(Value::Object(out))
}

pub(crate) fn generate_data_key(
    kms: &Kms,
    caller: &Caller,
    req: GenerateDataKey,
) -> Result<Value, KmsError> {
    refuse_dry_run(req.dry_run)?;
    let len = match (req.key_spec.as_deref(), req.number_of_bytes) {
        (Some("AES_256"), None) => 32,
        (Some("AES_128"), None) => 16,
        (None, Some(n)) if (1..=MAX_GENERATED).contains(&n) => n as usize,
        (Some(_), Some(_)) => {
            return Err(KmsError::Validation(
                "Specify either KeySpec or NumberOfBytes, not both".into(),
            ))
        }
        (Some(spec), None) => {
            return Err(KmsError::Validation(format!(
                "KeySpec {spec} is not AES_256 or AES_128"
            )))
        }
        (None, Some(_)) => {
            return Err(KmsError::Validation(format!(
                "NumberOfBytes must be 1 to {MAX_GENERATED}"
            )))
        }
        (None, None) => {
            return Err(KmsError::Validation(
                "Specify either KeySpec or NumberOfBytes".into(),
            ))
        }
    };
    let key = kms.key(&req.key_id, caller)?;
    kms.check_usable(&key)?;
    let delivery = kms.delivery(
        req.recipient.as_ref(),
        Some((&key, "kms:GenerateDataKey", caller)),
    )?;
    let data_key = random(len)?;
    let id = &key.record.key_id;
    let sealed = blob::seal(
        &key.material,
        id,
        &req.encryption_context.unwrap_or_default(),
        &data_key,
    )?;
    let (field, value) = kms.deliver(&delivery, &data_key)?;
    let mut out = Map::new();
    out.insert("KeyId".into(), json!(kms.answered_key_id(&key)));
    out.insert("CiphertextBlob".into(), json!(b64(&sealed)));
    out.insert(field.into(), json!(value));
    Ok(Value::Object(out))
}

/// Without a key there is no key policy: the server's `--allow-pcr0` list applies to a `Recipient`.
pub(crate) fn generate_random(kms: &Kms, req: GenerateRandom) -> Result<Value, KmsError> {
    let len = req
        .number_of_bytes
        .filter(|n| (1..=MAX_GENERATED).contains(n))
        .ok_or_else(|| {
            KmsError::Validation(format!("NumberOfBytes must be 1 to {MAX_GENERATED}"))
        })?;
    let delivery = kms.delivery(req.recipient.as_ref(), None)?;
    let bytes = random(len as usize)?;
    let (field, value) = kms.deliver(&delivery, &bytes)?;
    let mut out = Map::new();
    out.insert(field.into(), json!(value));
    Ok(Value::Object(out))
}

fn random(len: usize) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| KmsError::Internal("random generation failed".into()))?;
    Ok(bytes)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
