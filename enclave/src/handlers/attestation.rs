//! `enclave.attestation.request` (Lambda) and `OwnerSpace.{guid}.forVault.attestation` (app).
//!
//! Each request gets a fresh NSM document whose `nonce` is the caller's nonce and whose
//! `public_key` is a fresh X25519 key; for an app the private half stays in
//! [`crate::keys::KeyStore`] for the vault (at most the TTL, single use). The document's
//! `user_data` names the owner space and the protocol version ([`user_data`]), so an app can tell
//! that the key it is about to encrypt its PIN to was minted for its own vault and not for a GUID
//! the host redirected it to. The reply carries both the names the operations runbook
//! expects (`attestation_document`, `enclave_public_key`, `nonce`) and the VettID v1 names apps
//! and Lambdas read today (`attestation`, `public_key`; `timestamp`/`event_id` are added by
//! [`crate::reply`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use vettid_nsm::{AttestationRequest, MAX_NONCE_LEN};

use crate::error::ClientError;
use crate::fleet::FleetKeys;
use crate::keys::{KeyError, KeyStore};
use crate::router::OwnerSpace;
use crate::sealing::Sealer;

/// What attestation uses of the enclave: the NSM, where the key goes, and what the reply quotes.
pub struct Attester<'a> {
    /// Signs the document.
    pub nsm: std::sync::Arc<dyn vettid_nsm::Nsm>,
    /// The NSM's module id, quoted in the reply.
    pub module_id: &'a str,
    /// Where an app's attestation key waits for its `pin.setup`.
    pub keys: &'a KeyStore,
    /// With a trusted store, where it also waits for any other host (needs the sealer).
    pub fleet: Option<(&'a FleetKeys, &'a dyn Sealer)>,
    /// The signed PCR manifest handed to apps as `expected_pcrs` (untrusted; apps check it).
    pub manifest: Option<std::sync::Arc<Value>>,
}

/// Extracts and checks the nonce: top-level `nonce` (Lambda and app) or `payload.nonce` (app
/// envelope), standard base64, 1..=512 bytes once decoded.
///
/// # Errors
/// [`ClientError::MissingNonce`], [`ClientError::BadNonce`], [`ClientError::NonceTooLarge`].
pub fn nonce(request: &Map<String, Value>) -> Result<Vec<u8>, ClientError> {
    let field = request
        .get("nonce")
        .or_else(|| request.get("payload").and_then(|p| p.get("nonce")))
        .ok_or(ClientError::MissingNonce)?;
    let text = field.as_str().ok_or(ClientError::BadNonce)?;
    // Refuse before decoding anything huge: base64 of 512 bytes is 684 characters.
    if text.len() > MAX_NONCE_LEN.div_ceil(3) * 4 {
        return Err(ClientError::NonceTooLarge);
    }
    let bytes = B64.decode(text).map_err(|_| ClientError::BadNonce)?;
    match bytes.len() {
        0 => Err(ClientError::BadNonce),
        n if n > MAX_NONCE_LEN => Err(ClientError::NonceTooLarge),
        _ => Ok(bytes),
    }
}

/// Prefix of every document's `user_data`: the protocol version this enclave speaks.
pub const USER_DATA_PREFIX: &[u8] = b"vettid.attest.v2:";

/// The `user_data` bound into the document: [`USER_DATA_PREFIX`] followed by the owner-space GUID
/// (UTF-8), or by nothing for the Lambda path. An app compares it byte for byte.
pub fn user_data(owner: Option<&str>) -> Vec<u8> {
    let mut out = USER_DATA_PREFIX.to_vec();
    out.extend_from_slice(owner.unwrap_or("").as_bytes());
    out
}

/// Produces the attestation reply object.
///
/// # Errors
/// Nonce errors as in [`nonce`]; [`ClientError::Busy`] when the key store is full;
/// [`ClientError::AttestationFailed`] when the NSM fails.
pub async fn handle(
    attester: Attester<'_>,
    owner: Option<&OwnerSpace>,
    request: &Map<String, Value>,
) -> Result<Map<String, Value>, ClientError> {
    let nonce = nonce(request)?;
    let owner = owner.map(OwnerSpace::as_str);
    let key_error = |e| match e {
        KeyError::Full => ClientError::Busy,
        KeyError::Generate => ClientError::AttestationFailed,
    };
    let keys = attester.keys;
    let public_key = match (owner, attester.fleet) {
        // The fleet layout: wrapped into the trusted store, so any host can finish the exchange.
        (Some(owner), Some((fleet, sealer))) => fleet.generate(sealer, keys, owner).await?,
        (Some(owner), None) => keys.generate(owner).map_err(key_error)?,
        (None, _) => keys.throwaway_public().map_err(key_error)?,
    };
    let req = AttestationRequest {
        nonce: Some(nonce.clone()),
        public_key: Some(public_key.to_vec()),
        user_data: Some(user_data(owner)),
    };
    let nsm = attester.nsm;
    let document = tokio::task::spawn_blocking(move || nsm.attest(&req))
        .await
        .map_err(|_| ClientError::AttestationFailed)?
        .map_err(|e| {
            tracing::error!(error = %e, "NSM attestation failed");
            ClientError::AttestationFailed
        })?;

    let doc_b64 = B64.encode(&document);
    let key_b64 = B64.encode(public_key);
    let mut body = Map::new();
    body.insert("attestation_document".into(), doc_b64.clone().into());
    body.insert("enclave_public_key".into(), key_b64.clone().into());
    body.insert("nonce".into(), B64.encode(&nonce).into());
    body.insert("attestation".into(), doc_b64.into());
    body.insert("public_key".into(), key_b64.into());
    body.insert("module_id".into(), attester.module_id.into());
    if let Some(manifest) = attester.manifest {
        body.insert("expected_pcrs".into(), (*manifest).clone());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn nonce_from_top_level_or_payload() {
        assert_eq!(nonce(&obj(json!({"nonce": "AQID"}))), Ok(vec![1, 2, 3]));
        assert_eq!(
            nonce(&obj(json!({"id": "x", "payload": {"nonce": "AQID"}}))),
            Ok(vec![1, 2, 3])
        );
    }

    #[test]
    fn bad_nonces_are_typed_errors() {
        assert_eq!(nonce(&obj(json!({}))), Err(ClientError::MissingNonce));
        assert_eq!(nonce(&obj(json!({"nonce": 5}))), Err(ClientError::BadNonce));
        assert_eq!(
            nonce(&obj(json!({"nonce": "!!"}))),
            Err(ClientError::BadNonce)
        );
        assert_eq!(
            nonce(&obj(json!({"nonce": ""}))),
            Err(ClientError::BadNonce)
        );
        let big = B64.encode(vec![0u8; MAX_NONCE_LEN + 1]);
        assert_eq!(
            nonce(&obj(json!({"nonce": big}))),
            Err(ClientError::NonceTooLarge)
        );
        let max = B64.encode(vec![0u8; MAX_NONCE_LEN]);
        assert_eq!(
            nonce(&obj(json!({"nonce": max}))).map(|n| n.len()),
            Ok(MAX_NONCE_LEN)
        );
        let huge = "A".repeat(10_000_000);
        assert_eq!(
            nonce(&obj(json!({"nonce": huge}))),
            Err(ClientError::NonceTooLarge)
        );
    }
}
