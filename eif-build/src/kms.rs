//! Manifest signing with an AWS KMS asymmetric key (`ECC_NIST_P256`, `ECDSA_SHA_256`), for production.
//!
//! KMS signs the canonical bytes as a raw message when they fit KMS's 4096-byte limit, and their SHA-256
//! digest (`MessageType::Digest`) when they do not (a manifest may be 64 KiB): with `ECDSA_SHA_256` both give
//! a signature over the same SHA-256, so verifiers cannot tell them apart. KMS returns a DER signature, the
//! encoding the manifest format requires. The result is parsed back and verified
//! with the key's public half (from `GetPublicKey`) before it is written.
//!
//! Credentials, region and endpoint come from the standard AWS configuration chain (environment, profile,
//! instance role; `AWS_ENDPOINT_URL` points it at a local stand-in).

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, MessageType, SigningAlgorithmSpec};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use vettid_attestation::jcs;

use crate::manifest_cmd::{check_signed, parse, unsigned, Edited};

/// Largest message KMS `Sign` accepts with `MessageType::Raw`.
pub const KMS_MAX_RAW_MESSAGE: usize = 4096;

/// Sign `manifest` with KMS key `key_id` (id, ARN or alias).
///
/// # Errors
/// On an invalid manifest, an AWS error, a key that is not P-256, or a signature that does not verify.
pub fn sign_kms(manifest: &[u8], key_id: &str, region: Option<String>) -> Result<Edited> {
    let (unsigned, notes) = unsigned(manifest)?;
    // Validate with the format's own rules before asking KMS for anything.
    crate::manifest_cmd::validate(&unsigned)?;
    let mut value = parse(&unsigned)?;
    let signed_bytes = jcs::canonicalize(&value).map_err(|e| anyhow!("canonicalising: {e}"))?;
    let (message, message_type) = if signed_bytes.len() <= KMS_MAX_RAW_MESSAGE {
        (signed_bytes.as_bytes().to_vec(), MessageType::Raw)
    } else {
        (
            Sha256::digest(signed_bytes.as_bytes()).to_vec(),
            MessageType::Digest,
        )
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (der_sig, spki) = runtime.block_on(async {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let client = aws_sdk_kms::Client::new(&loader.load().await);
        let key = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| anyhow!("KMS GetPublicKey {key_id}: {}", aws_error(&e)))?;
        // Some KMS stand-ins omit KeySpec, so the SPKI is checked too.
        if let Some(spec) = key.key_spec().filter(|s| **s != KeySpec::EccNistP256) {
            bail!("KMS key {key_id} is {spec}, not ECC_NIST_P256");
        }
        let spki = key
            .public_key()
            .context("KMS returned no public key")?
            .as_ref()
            .to_vec();
        p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|_| anyhow!("KMS key {key_id} is not an ECC_NIST_P256 key"))?;
        let out = client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(message_type)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| anyhow!("KMS Sign {key_id}: {}", aws_error(&e)))?;
        let sig = out
            .signature()
            .context("KMS returned no signature")?
            .as_ref()
            .to_vec();
        Ok((sig, spki))
    })?;

    value
        .as_object_mut()
        .context("manifest is not a JSON object")?
        .insert("signature".into(), STANDARD.encode(der_sig).into());
    let signed = jcs::canonicalize(&value)
        .map_err(|e| anyhow!("canonicalising: {e}"))?
        .into_bytes();
    check_signed(&signed, &spki)?;
    Ok(Edited {
        json: signed,
        notes,
    })
}

/// The AWS error with its source chain (the SDK's `Display` alone says only "service error").
fn aws_error(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
