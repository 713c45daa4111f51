//! Golden vectors for the manifest signature, so an independent implementation can reproduce the signed bytes.
//!
//! Set `VETTID_REGENERATE_VECTORS=1` to rewrite the derived files from `manifest-unsigned.json` (then review
//! the diff: any change to them is a wire change).

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use vettid_attestation::jcs;
use vettid_attestation::manifest::{sign_manifest, Manifest};

/// RFC 6979 appendix A.2.5's P-256 private key: public knowledge, for tests only.
pub const TEST_KEY_HEX: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn derived() -> Vec<(&'static str, Vec<u8>)> {
    let key = SigningKey::from_slice(&hex::decode(TEST_KEY_HEX).unwrap()).unwrap();
    let unsigned = read("manifest-unsigned.json");
    let canonical = jcs::canonicalize(&jcs::parse_strict(&unsigned).unwrap()).unwrap();
    let signed = sign_manifest(&unsigned, &key).unwrap();
    let signed_value = jcs::parse_strict(&signed).unwrap();
    let signature = signed_value["signature"].as_str().unwrap().to_owned();
    let vk = key.verifying_key();
    let key_json = format!(
        "{{\n  \"comment\": \"RFC 6979 A.2.5 P-256 test key; public knowledge, never use outside tests\",\n  \"private_scalar_hex\": \"{}\",\n  \"public_sec1_uncompressed_hex\": \"{}\",\n  \"public_spki_der_hex\": \"{}\"\n}}\n",
        TEST_KEY_HEX,
        hex::encode(vk.to_encoded_point(false).as_bytes()),
        hex::encode(vk.to_public_key_der().unwrap().as_bytes()),
    );
    vec![
        ("manifest-canonical.json", canonical.into_bytes()),
        ("manifest-signature.b64", signature.into_bytes()),
        ("manifest-signed.json", signed),
        ("test-key.json", key_json.into_bytes()),
    ]
}

#[test]
fn vectors_are_reproduced_exactly() {
    let regenerate = std::env::var_os("VETTID_REGENERATE_VECTORS").is_some();
    for (name, bytes) in derived() {
        if regenerate {
            std::fs::write(dir().join(name), &bytes).unwrap();
        }
        assert_eq!(
            read(name),
            bytes,
            "{name} differs from what the crate produces"
        );
    }
}

#[test]
fn signed_vector_verifies_and_covers_the_canonical_bytes() {
    let manifest = Manifest::parse(&read("manifest-signed.json")).unwrap();
    assert_eq!(manifest.signed_bytes(), read("manifest-canonical.json"));
    let key = SigningKey::from_slice(&hex::decode(TEST_KEY_HEX).unwrap()).unwrap();
    let spki = key.verifying_key().to_public_key_der().unwrap();
    let verified = manifest.verify(spki.as_bytes()).unwrap();
    assert_eq!(verified.version(), 3);
    // The signature is DER (it starts with a SEQUENCE tag) and is standard base64.
    let der = STANDARD.decode(read("manifest-signature.b64")).unwrap();
    assert_eq!(der[0], 0x30);
}
