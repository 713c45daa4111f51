//! Cross-implementation check: a manifest produced by this crate is verified by `independent_verify.py`, a
//! separate Python implementation of the v1 app procedure (canonicalise, verify P-256, select sets).
//!
//! Skipped (with a message) only when `python3` cannot be started at all.

use std::path::PathBuf;
use std::process::{Command, Output};

use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use vettid_attestation::manifest::sign_manifest;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent_verify.py")
}

fn run(manifest: &[u8], key_hex: &str, extra: &[&str]) -> Option<Output> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, manifest).unwrap();
    match Command::new("python3")
        .arg(script())
        .arg(&path)
        .arg(key_hex)
        .args(extra)
        .output()
    {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("python3: {e}"),
    }
}

fn manifest() -> Vec<u8> {
    let unsigned = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/manifest-unsigned.json"),
    )
    .unwrap();
    sign_manifest(&unsigned, &key()).unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 32]).unwrap()
}

#[test]
fn python_verifies_what_rust_signs_and_refuses_tampering() {
    let signed = manifest();
    let spki_hex = hex::encode(
        key()
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    let sec1_hex = hex::encode(key().verifying_key().to_encoded_point(false).as_bytes());
    // No flag: the `cryptography` backend when importable; `--pure`: the script's own P-256 arithmetic.
    let default: &[&str] = &[];
    let pure: &[&str] = &["--pure"];
    for (key_hex, mode) in [(&spki_hex, default), (&sec1_hex, pure), (&spki_hex, pure)] {
        let at: Vec<&str> = mode
            .iter()
            .copied()
            .chain(["--at", "2026-01-20T00:00:00Z"])
            .collect();
        let Some(out) = run(&signed, key_hex, &at) else {
            eprintln!("python3 not found: skipping the independent verification");
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(r#""valid_sets": ["2026-01-18-v1", "2025-12-01-v0"]"#),
            "{stdout}"
        );

        let tampered = String::from_utf8(signed.clone()).unwrap().replacen(
            "\"version\":3",
            "\"version\":4",
            1,
        );
        let out = run(tampered.as_bytes(), key_hex, mode).unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode:?}: tampered manifest accepted"
        );
    }
    // The same selection in Rust, at a time where only the open-ended set remains.
    let verified = vettid_attestation::manifest::Manifest::parse(&signed)
        .unwrap()
        .verify(&hex::decode(&spki_hex).unwrap())
        .unwrap();
    let out = run(
        &signed,
        &spki_hex,
        &["--pure", "--at", "2026-03-01T00:00:00Z"],
    )
    .unwrap();
    let march_1 = 1_772_323_200_000;
    let rust_ids: Vec<_> = verified
        .sets_valid_at(march_1)
        .iter()
        .map(|s| s.id().to_owned())
        .collect();
    assert_eq!(rust_ids, ["2026-01-18-v1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""valid_sets": ["2026-01-18-v1"]"#));
    // A wrong key is refused.
    let other = SigningKey::from_slice(&[0x43; 32]).unwrap();
    let other_hex = hex::encode(other.verifying_key().to_encoded_point(false).as_bytes());
    assert_eq!(
        run(&signed, &other_hex, &["--pure"]).unwrap().status.code(),
        Some(1)
    );
}
