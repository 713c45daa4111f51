//! Known-answer vectors: computed here from fixed inputs and compared byte for byte with the JSON files
//! committed in `tests/vectors/`, which `tests/independent.py` recomputes with Python's `cryptography`
//! (and Argon2 from `cryptography` or `argon2-cffi`). So a change to any app-facing format fails twice:
//! against the committed bytes, and against an implementation that shares no code with this one.
//!
//! Regenerate after a deliberate change with `VETTID_REGENERATE_VECTORS=1 cargo test -p
//! vettid-vault-crypto vectors`, then run the independent check and review the diff.
//!
//! These tests live inside the crate because they need the deterministic `seal_with*` functions, which
//! are deliberately not public (a fixed ephemeral key or nonce must never reach production code).

use std::path::PathBuf;

use aws_lc_rs::agreement::{PrivateKey, X25519};
use aws_lc_rs::digest;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::dek::{self, KdfParams, Pin};
use crate::domain::{self, Domain};
use crate::secret::{Dek, Material};
use crate::{dek_aead, legacy_ecies, pin_verifier::PinVerifier, sealed, x25519};

/// Fixed, reproducible input bytes: SHA-256 of a label.
fn fixed(label: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, label.as_bytes()).as_ref());
    out
}

fn private(bytes: &[u8; 32]) -> PrivateKey {
    PrivateKey::from_private_key(&X25519, bytes).unwrap()
}

fn public(bytes: &[u8; 32]) -> [u8; 32] {
    x25519::public_key_bytes(&private(bytes)).unwrap()
}

fn h(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Compare `value` with the committed file, or rewrite it when regenerating.
fn check_or_write(file: &str, value: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("VETTID_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with VETTID_REGENERATE_VECTORS=1",
            path.display()
        )
    });
    assert!(
        committed == text,
        "{file} differs from what this code computes; a wire format changed"
    );
}

#[test]
fn legacy_ecies_vectors_match() {
    let plaintexts: [&[u8]; 3] = [
        br#"{"pin":"123456"}"#,
        br#"{"pin":"0000","profile":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com"}}"#,
        br#"{"old_pin":"1234","new_pin":"87654321"}"#,
    ];
    let mut vectors = Vec::new();
    for (i, plaintext) in plaintexts.iter().enumerate() {
        let recipient = fixed(&format!("legacy-ecies recipient {i}"));
        let ephemeral = fixed(&format!("legacy-ecies ephemeral {i}"));
        let nonce: [u8; 12] = fixed(&format!("legacy-ecies nonce {i}"))[..12]
            .try_into()
            .unwrap();
        let envelope =
            legacy_ecies::seal_with(&private(&ephemeral), nonce, &public(&recipient), plaintext)
                .unwrap();
        assert_eq!(
            legacy_ecies::open(&private(&recipient), &envelope)
                .unwrap()
                .as_slice(),
            *plaintext
        );
        let key = x25519::agree_and_derive(
            &private(&recipient),
            &public(&ephemeral),
            legacy_ecies::HKDF_SALT,
            legacy_ecies::HKDF_INFO,
        )
        .unwrap();
        vectors.push(json!({
            "recipient_private": h(&recipient),
            "recipient_public": h(&public(&recipient)),
            "ephemeral_private": h(&ephemeral),
            "ephemeral_public": h(&public(&ephemeral)),
            "nonce": h(&nonce),
            "plaintext": h(plaintext),
            "key": h(key.as_ref()),
            "envelope": h(&envelope),
            "pin_setup_fields": {
                "ephemeral_public_key": STANDARD.encode(&envelope[..32]),
                "nonce": STANDARD.encode(&envelope[32..44]),
                "encrypted_pin": STANDARD.encode(&envelope[44..]),
            },
        }));
    }
    check_or_write(
        "legacy_ecies.json",
        &json!({
            "scheme": "VettID v1 legacy ECIES: X25519 -> HKDF-SHA256(salt, info) -> ChaCha20-Poly1305, no AAD",
            "hkdf_salt": "VettID-HKDF-Salt-v1",
            "hkdf_info": "enclave-encryption-v1",
            "layout": "ephemeral_public(32) || nonce(12) || ciphertext || tag(16)",
            "vectors": vectors,
        }),
    );
}

#[test]
fn domain_vectors_match() {
    let cases: [(Domain, &str, &[u8]); 5] = [
        (Domain::Utk, "utk", br#"{"password_hash":"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}"#),
        (Domain::Utk, "utk-empty", b""),
        (Domain::Cek, "cek", br#"{"identity_public_key":"AAAA","version":1}"#),
        (Domain::Pin, "pin", b"reserved domain"),
        (Domain::Reply, "reply", br#"{"name":"api-token","value":"s3cr3t-v4lue"}"#),
    ];
    let mut vectors = Vec::new();
    for (domain, label, plaintext) in cases {
        let recipient = fixed(&format!("domain recipient {label}"));
        let ephemeral = fixed(&format!("domain ephemeral {label}"));
        let nonce: [u8; 24] = fixed(&format!("domain nonce {label}"))[..24]
            .try_into()
            .unwrap();
        let envelope = domain::seal_with(
            domain,
            &private(&ephemeral),
            nonce,
            &public(&recipient),
            plaintext,
        )
        .unwrap();
        assert_eq!(
            domain::open(domain, &private(&recipient), &envelope)
                .unwrap()
                .as_slice(),
            plaintext
        );
        let key = x25519::agree_and_derive(
            &private(&recipient),
            &public(&ephemeral),
            domain.salt(),
            &[],
        )
        .unwrap();
        vectors.push(json!({
            "domain": std::str::from_utf8(domain.salt()).unwrap(),
            "recipient_private": h(&recipient),
            "recipient_public": h(&public(&recipient)),
            "ephemeral_private": h(&ephemeral),
            "ephemeral_public": h(&public(&ephemeral)),
            "nonce": h(&nonce),
            "plaintext": h(plaintext),
            "key": h(key.as_ref()),
            "envelope": h(&envelope),
        }));
    }
    check_or_write(
        "domain.json",
        &json!({
            "scheme": "VettID v1 domain envelope: X25519 -> HKDF-SHA256(salt = domain, no info) -> XChaCha20-Poly1305, no AAD",
            "layout": "ephemeral_public(32) || nonce(24) || ciphertext || tag(16)",
            "vectors": vectors,
        }),
    );
}

/// The inputs of the first small DEK vector; the DEK-AEAD vectors chain one blob to its DEK.
const SMALL_A: (&str, &str, &str) = ("small-a", "1234", "0f8e2b6c-1d2a-4c3b-9e8f-123456789abc");

fn small_a_params() -> KdfParams {
    KdfParams::for_tests(256, 3, 4)
}

/// One DEK vector (with the verifier of the resulting DEK, so the two chain).
fn dek_vector(label: &str, pin: &str, owner: &str, params: &KdfParams) -> Value {
    let material = Material::from_bytes(fixed(&format!("dek material {label}")));
    let pin_value = Pin::parse(pin).unwrap();
    let (stretched, dek) =
        dek::derive_with_intermediate(&pin_value, &material, owner, params).unwrap();
    json!({
        "pin": pin,
        "owner_id": owner,
        "material": h(material.expose()),
        "m_kib": params.memory_kib(),
        "t": params.iterations(),
        "p": params.parallelism(),
        "salt": h(&dek::salt(owner, &material)),
        "argon2_output": h(stretched.as_ref()),
        "dek": h(dek.expose()),
        "pin_verifier": h(PinVerifier::derive(&dek).as_bytes()),
    })
}

const DEK_SCHEME: &str = "VettID v1 DEK: salt = SHA-256(owner_id || material); S = Argon2id v0x13(pin, salt, m, t, p, 32); \
     DEK = HMAC-SHA256(key = material, msg = S); pin_verifier = HMAC-SHA256(key = DEK, msg = \"vettid-pin-verifier-v1\")";

#[test]
fn dek_vectors_with_small_parameters_match() {
    let vectors = vec![
        dek_vector(SMALL_A.0, SMALL_A.1, SMALL_A.2, &small_a_params()),
        dek_vector(
            "small-b",
            "00000000",
            "owner-b",
            &KdfParams::for_tests(64, 1, 1),
        ),
        dek_vector(
            "small-c",
            "987654",
            "8d3c1e0a-7777-4a4a-b0b0-000000000001",
            &KdfParams::for_tests(1024, 2, 2),
        ),
    ];
    check_or_write(
        "dek_small.json",
        &json!({ "scheme": DEK_SCHEME, "vectors": vectors }),
    );
}

/// The one test at v1's real parameters (256 MiB, t = 3, p = 4). It also reports time and the process's
/// peak resident memory; run it optimised with
/// `cargo test --release -p vettid-vault-crypto production -- --nocapture`.
#[test]
fn production_dek_vector_matches() {
    let started = std::time::Instant::now();
    let vector = dek_vector(
        "production",
        "135790",
        "0f8e2b6c-1d2a-4c3b-9e8f-123456789abc",
        &KdfParams::PRODUCTION,
    );
    let elapsed = started.elapsed();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    eprintln!("production Argon2id (m=256 MiB, t=3, p=4), one derivation: {elapsed:?}; process peak {peak}");
    check_or_write(
        "dek_production.json",
        &json!({ "scheme": DEK_SCHEME, "vectors": [vector] }),
    );
}

#[test]
fn dek_aead_vectors_match() {
    // The last case uses the DEK of dek_small.json vector 0, so PIN → DEK → encrypted_credential chains.
    let (label, pin, owner) = SMALL_A;
    let chained = dek::derive_dek(
        &Pin::parse(pin).unwrap(),
        &Material::from_bytes(fixed(&format!("dek material {label}"))),
        owner,
        &small_a_params(),
    )
    .unwrap();
    let cases: [(Dek, Option<&str>, &[u8]); 3] = [
        (
            Dek::from_bytes(fixed("dek-aead dek 0")),
            None,
            br#"{"guid":"cred-0001","password_hash":"$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}"#,
        ),
        (Dek::from_bytes(fixed("dek-aead dek 1")), None, b""),
        (chained, Some("dek_small.json vectors[0]"), br#"{"utks":[],"credential":null}"#),
    ];
    let mut vectors = Vec::new();
    for (i, (dek, dek_from, plaintext)) in cases.into_iter().enumerate() {
        let nonce: [u8; 12] = fixed(&format!("dek-aead nonce {i}"))[..12]
            .try_into()
            .unwrap();
        let blob = dek_aead::seal_with_nonce(&dek, nonce, plaintext).unwrap();
        assert_eq!(dek_aead::open(&dek, &blob).unwrap().as_slice(), plaintext);
        let mut vector = json!({
            "dek": h(dek.expose()),
            "nonce": h(&nonce),
            "plaintext": h(plaintext),
            "blob": h(&blob),
            "blob_b64": STANDARD.encode(&blob),
        });
        if let Some(from) = dek_from {
            vector["dek_from"] = json!(from);
        }
        vectors.push(vector);
    }
    check_or_write(
        "dek_aead.json",
        &json!({
            "scheme": "VettID v1 DEK AEAD (encrypted_credential, v1 vault_state.enc): AES-256-GCM(key = DEK), no AAD",
            "layout": "nonce(12) || ciphertext || tag(16)",
            "vectors": vectors,
        }),
    );
}

#[test]
fn pin_verifier_vectors_match() {
    let vectors: Vec<Value> = ["pin-verifier 0", "pin-verifier 1"]
        .iter()
        .map(|label| {
            let dek = Dek::from_bytes(fixed(label));
            json!({ "dek": h(dek.expose()), "verifier": h(PinVerifier::derive(&dek).as_bytes()) })
        })
        .collect();
    check_or_write(
        "pin_verifier.json",
        &json!({ "scheme": "HMAC-SHA256(key = DEK, msg = \"vettid-pin-verifier-v1\")", "vectors": vectors }),
    );
}

#[test]
fn sealed_vectors_match() {
    let cases: [(&str, &str, u64, &[u8]); 3] = [
        (
            "0f8e2b6c-1d2a-4c3b-9e8f-123456789abc",
            "state",
            1,
            br#"{"utks":[],"credential":null}"#,
        ),
        (
            "0f8e2b6c-1d2a-4c3b-9e8f-123456789abc",
            "material",
            u64::MAX,
            &[0x5a; 32],
        ),
        ("a", "b", 0, b""),
    ];
    let mut vectors = Vec::new();
    for (i, (vault, name, version, plaintext)) in cases.into_iter().enumerate() {
        let key = fixed(&format!("sealed key {i}"));
        let nonce: [u8; 12] = fixed(&format!("sealed nonce {i}"))[..12]
            .try_into()
            .unwrap();
        let id = sealed::ObjectId {
            vault,
            name,
            version,
        };
        let bytes = sealed::seal_with_nonce(&key, &id, nonce, plaintext).unwrap();
        assert_eq!(
            sealed::open(&key, &id, &bytes).unwrap().as_slice(),
            plaintext
        );
        vectors.push(json!({
            "key": h(&key),
            "vault": vault,
            "name": name,
            "version": version.to_string(),
            "nonce": h(&nonce),
            "plaintext": h(plaintext),
            "aad": h(&sealed::aad(&id, sealed::FORMAT_V1).unwrap()),
            "sealed": h(&bytes),
        }));
    }
    check_or_write(
        "sealed.json",
        &json!({
            "scheme": "sealed object v1: AES-256-GCM; aad = u32be(20) || \"vettid-sealed-object\" || u8(1) || u32be(len vault) || vault || u32be(len name) || name || u64be(version)",
            "layout": "format_version(1) = 0x01 || nonce(12) || ciphertext || tag(16)",
            "note": "version is a decimal string because JSON numbers lose precision above 2^53",
            "vectors": vectors,
        }),
    );
}
