//! The control-command test vectors (`tests/vectors/control/*.json`), checked byte for byte by the
//! enclave's implementation and by an independent one (`control_independent.py`), so the signer
//! and the verifier can never drift apart again (VettID G4).

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_enclave::control::{wire, Verifier, VerifyingKeys};
use vettid_enclave::router::{self, Route};

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/control")
}

fn vectors() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(vector_dir())
        .expect("vector dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "vectors missing");
    out
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k}"))
}

#[test]
fn canonical_bytes_and_signatures_match_the_vectors_byte_for_byte() {
    for (name, v) in vectors() {
        assert_eq!(s(&v, "domain").as_bytes(), wire::DOMAIN, "{name}");
        let bytes = wire::signing_bytes(&v["unsigned"]).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            s(&v, "canonical_hex"),
            "{name}: canonical bytes"
        );
        let key =
            Ed25519KeyPair::from_seed_unchecked(&hex::decode(s(&v, "seed_hex")).unwrap()).unwrap();
        let sig = key.sign(&bytes);
        assert_eq!(
            B64.encode(sig.as_ref()),
            s(&v, "signature_b64"),
            "{name}: signature"
        );
    }
}

#[test]
fn the_enclave_verifier_accepts_each_signed_vector_on_its_subject() {
    for (name, v) in vectors() {
        let keys = json!([{"key_id": s(&v, "key_id"), "public_key_b64": s(&v, "public_key_b64")}]);
        let keys = VerifyingKeys::from_json(keys.to_string().as_bytes()).unwrap();
        let issued = v["unsigned"]["issued_at"].as_u64().unwrap();
        let Route::Control { scope, command } = router::route(s(&v, "subject")) else {
            panic!("{name}: subject is not a control subject");
        };
        let enclave_id = v["unsigned"]["target"]["id"].as_str().unwrap_or("any");
        let verifier = Verifier::new(keys, enclave_id.into(), issued, 10);
        let payload = serde_json::to_vec(&v["signed"]).unwrap();
        let cmd = verifier
            .verify(&scope, &command, &payload, issued + 1_000)
            .unwrap_or_else(|r| panic!("{name}: {r}"));
        assert_eq!(cmd.id, s(&v["unsigned"], "command_id"), "{name}");
        // The same bytes, re-serialised with another key order and spacing, verify too.
        let pretty = serde_json::to_vec_pretty(&v["signed"]).unwrap();
        let fresh = Verifier::new(verifier.keys().clone(), enclave_id.into(), issued, 10);
        fresh
            .verify(&scope, &command, &pretty, issued + 1_000)
            .unwrap_or_else(|r| panic!("{name} (pretty): {r}"));
    }
}

/// Runs the independent Python implementation over the same vectors. Missing python3 or its
/// `cryptography` package is a failure, not a skip: this is the check that matters.
#[test]
fn an_independent_implementation_reproduces_every_vector() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control_independent.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(vector_dir())
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for the independent vector check: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "independent check failed:\n{text}");
    assert!(
        text.contains("control vectors checked independently"),
        "{text}"
    );
}
