//! The stored vault object is host-controlled bytes: the parent (or whoever can write the
//! bucket) chooses what the enclave parses on every cold load. Parsing and authenticating it must
//! never panic, and nothing that does not authenticate under the vault's material may be accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_enclave::vault::request::{self, VaultOp};
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
    // The same bytes as an app request to every operation (v1 accepted or not), and as every
    // plaintext an envelope may seal: typed errors, never a panic.
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(data) {
        for name in VaultOp::NAMES.iter().chain(&["pin", "pin-unlock"]) {
            for accept_v1 in [true, false] {
                if let Ok(VaultOp::PinUnlock(r) | VaultOp::SecretsAdd(r)) =
                    VaultOp::parse(name, &obj, accept_v1)
                {
                    let _ = r.ciphertext();
                }
            }
        }
        for v2 in [true, false] {
            let _ = request::plaintext::<request::SetupPlain>(&obj, v2);
            let _ = request::plaintext::<request::ChangePlain>(&obj, v2);
            let _ = request::plaintext::<request::CreatePlain>(&obj, v2);
            let _ = request::plaintext::<request::SecretsUpdatePlain>(&obj, v2);
            let _ = request::plaintext::<request::SecretsRetrievePlain>(&obj, v2);
        }
    }
});
