//! The stored vault object is host-controlled bytes: the parent (or whoever can write the
//! bucket) chooses what the enclave parses on every cold load. Parsing and authenticating it must
//! never panic, and nothing that does not authenticate under the vault's material may be accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_enclave::vault::payload;
use vettid_enclave::vault::record::{open_meta, open_state, StoredVault};
use vettid_vault_crypto::{Dek, Material};

fuzz_target!(|data: &[u8]| {
    if let Ok(stored) = StoredVault::parse("fuzz-vault", data) {
        let material = Material::from_bytes([7; 32]);
        // Random bytes cannot carry a valid GCM tag under this material.
        if let Ok(meta) = open_meta(&material, &stored) {
            let _ = open_state(&Dek::from_bytes([9; 32]), "fuzz-vault", &meta, &stored.state);
            panic!("forged meta accepted");
        }
    }
    // The same bytes as an app payload object.
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(data) {
        let body = payload::body(&obj);
        let _ = payload::string(body, "utk_id");
        let _ = payload::base64(body, "encrypted_payload");
        let _ = payload::key32(body, "reply_key");
        let _ = payload::opt_string(body, "name", 256);
    }
});
