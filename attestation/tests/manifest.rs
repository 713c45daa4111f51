//! Signed PCR manifests: signing, verification, rules, validity windows and conversion to a verifier policy.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use serde_json::{json, Value};
use vettid_attestation::manifest::{sign_manifest, Manifest, ManifestError, MAX_MANIFEST_BYTES};
use vettid_attestation::{verify, Error};

const DAY_MS: u64 = 86_400_000;

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[7; 32]).unwrap()
}

fn spki() -> Vec<u8> {
    signing_key()
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// A manifest listing sample-1 (open-ended from 2025-09-01) and sample-2 (2025-04-01 .. 2025-10-01).
fn unsigned() -> Value {
    let (_, _, a0, a1, a2) = common::SAMPLES[0];
    let (_, _, b0, b1, b2) = common::SAMPLES[1];
    json!({
        "version": 5,
        "timestamp": "2025-09-01T00:00:00Z",
        "pcr_sets": [
            {"id": "new", "pcr0": a0, "pcr1": a1, "pcr2": a2, "valid_from": "2025-09-01T00:00:00Z",
             "valid_until": null, "is_current": true, "description": "current"},
            {"id": "old", "pcr0": b0, "pcr1": b1, "pcr2": b2, "valid_from": "2025-04-01T00:00:00Z",
             "valid_until": "2025-10-01T00:00:00Z", "is_current": false}
        ]
    })
}

fn sign(value: &Value) -> Result<Vec<u8>, ManifestError> {
    sign_manifest(value.to_string().as_bytes(), &signing_key())
}

fn parse_and_verify(
    bytes: &[u8],
) -> Result<vettid_attestation::manifest::VerifiedManifest, ManifestError> {
    Manifest::parse(bytes)?.verify(&spki())
}

fn with(mutate: impl Fn(&mut Value)) -> Value {
    let mut value = unsigned();
    mutate(&mut value);
    value
}

#[test]
fn signed_manifest_verifies_with_spki_and_sec1_keys() {
    let signed = sign(&unsigned()).unwrap();
    let manifest = Manifest::parse(&signed).unwrap();
    let vk = *signing_key().verifying_key();
    for key in [
        spki(),
        vk.to_encoded_point(false).as_bytes().to_vec(),
        vk.to_encoded_point(true).as_bytes().to_vec(),
    ] {
        let verified = manifest.verify(&key).unwrap();
        assert_eq!(verified.version(), 5);
        assert_eq!(verified.pcr_sets().len(), 2);
    }
    assert_eq!(
        manifest.verify(&[4, 1, 2]).unwrap_err(),
        ManifestError::PublicKey
    );
    let other = SigningKey::from_slice(&[8; 32]).unwrap();
    let other_spki = other.verifying_key().to_public_key_der().unwrap();
    assert_eq!(
        manifest.verify(other_spki.as_bytes()).unwrap_err(),
        ManifestError::BadSignature
    );
}

#[test]
fn signing_is_deterministic_and_reformatting_keeps_the_signature_valid() {
    let signed = sign(&unsigned()).unwrap();
    assert_eq!(signed, sign(&unsigned()).unwrap());
    // Whitespace and member order are not signed: a pretty-printed copy still verifies.
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&signed).unwrap()).unwrap();
    assert!(parse_and_verify(&pretty).is_ok());
}

#[test]
fn any_signed_change_breaks_the_signature() {
    let signed: Value = serde_json::from_slice(&sign(&unsigned()).unwrap()).unwrap();
    let tamper = |f: &dyn Fn(&mut Value)| {
        let mut v = signed.clone();
        f(&mut v);
        parse_and_verify(v.to_string().as_bytes()).unwrap_err()
    };
    assert_eq!(
        tamper(&|v| v["version"] = json!(6)),
        ManifestError::BadSignature
    );
    assert_eq!(
        tamper(&|v| v["pcr_sets"][1]["valid_until"] = Value::Null),
        ManifestError::BadSignature
    );
    assert_eq!(
        tamper(&|v| v["extra"] = json!("added")),
        ManifestError::BadSignature
    );
    let (_, _, p0, ..) = common::SAMPLES[2];
    assert_eq!(
        tamper(&|v| v["pcr_sets"][0]["pcr0"] = json!(p0)),
        ManifestError::BadSignature
    );
}

#[test]
fn sets_valid_at_follow_the_windows() {
    let verified = parse_and_verify(&sign(&unsigned()).unwrap()).unwrap();
    let ids = |t: u64| {
        verified
            .sets_valid_at(t)
            .iter()
            .map(|s| s.id().to_owned())
            .collect::<Vec<_>>()
    };
    let sep_1 = 1_756_684_800_000; // 2025-09-01T00:00:00Z
    let oct_1 = 1_759_276_800_000; // 2025-10-01T00:00:00Z
    assert_eq!(ids(sep_1 - 1), ["old"]);
    assert_eq!(ids(sep_1), ["new", "old"]);
    assert_eq!(ids(oct_1 - 1), ["new", "old"]);
    assert_eq!(ids(oct_1), ["new"]);
    assert!(ids(1_743_465_600_000 - 1).is_empty()); // before 2025-04-01
}

#[test]
fn manifest_policy_drives_the_document_verifier() {
    let verified = parse_and_verify(&sign(&unsigned()).unwrap()).unwrap();
    for (i, (doc, ts, ..)) in common::SAMPLES.into_iter().enumerate() {
        let result = verify(doc, &verified.policy_at(ts), ts);
        match i {
            0 => assert_eq!(result.unwrap().matched_pcr_set.as_deref(), Some("new")),
            1 => assert_eq!(result.unwrap().matched_pcr_set.as_deref(), Some("old")),
            _ => assert_eq!(
                result.unwrap_err(),
                Error::EmptyPcrPolicy,
                "2022: no set valid yet"
            ),
        }
    }
    // sample-2 (April 2025) after "old" expired: not accepted any more.
    let (doc, ts, ..) = common::SAMPLES[1];
    let policy = verified
        .policy_at(ts + 200 * DAY_MS)
        .with_max_age_ms(u64::MAX);
    assert_eq!(
        verify(doc, &policy, ts + 200 * DAY_MS).unwrap_err(),
        Error::PcrMismatch
    );
}

#[test]
fn rollback_is_refused() {
    let verified = parse_and_verify(&sign(&unsigned()).unwrap()).unwrap();
    assert!(verified.ensure_version_at_least(5).is_ok());
    assert_eq!(
        verified.ensure_version_at_least(6),
        Err(ManifestError::Rollback {
            version: 5,
            minimum: 6
        })
    );
}

#[test]
fn manifest_rules_are_enforced_before_signing_and_after_parsing() {
    let invalid = |v: Value| matches!(sign(&v), Err(ManifestError::InvalidField { .. }));
    assert_eq!(
        sign(&with(|v| v["pcr_sets"] = json!([]))),
        Err(ManifestError::NoPcrSets)
    );
    assert_eq!(
        sign(&with(|v| v["pcr_sets"][1]["id"] = json!("new"))),
        Err(ManifestError::DuplicateSetId("new".into()))
    );
    assert!(invalid(with(|v| v["version"] = json!("5"))));
    assert!(invalid(with(|v| v["version"] = json!(-1))));
    assert!(invalid(with(|v| v["timestamp"] = json!("yesterday"))));
    assert!(invalid(with(|v| v["pcr_sets"][0]["pcr0"] = json!("zz"))));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["pcr0"] = json!("00".repeat(48))
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["pcr1"] = json!("11".repeat(47))
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["pcr03"] = json!("11".repeat(48))
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["pcr32"] = json!("11".repeat(48))
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["pcrx"] = json!("11".repeat(48))
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][0]["is_current"] = json!("yes")
    )));
    assert!(invalid(with(
        |v| v["pcr_sets"][1]["valid_until"] = json!("2025-04-01T00:00:00Z")
    )));
    assert!(
        matches!(sign(&with(|v| v["pcr_sets"][0].as_object_mut().unwrap().remove("pcr2").map(drop).unwrap())), Err(ManifestError::MissingField(f)) if f == "pcr_sets[0].pcr2")
    );
    assert!(matches!(sign(&json!([1])), Err(ManifestError::NotAnObject)));
    let signed = sign(&unsigned()).unwrap();
    assert_eq!(
        sign_manifest(&signed, &signing_key()),
        Err(ManifestError::AlreadySigned)
    );
}

#[test]
fn extra_pcr_constraints_are_carried_into_the_policy() {
    let verified = parse_and_verify(
        &sign(&with(|v| v["pcr_sets"][0]["pcr8"] = json!("ab".repeat(48)))).unwrap(),
    )
    .unwrap();
    let set = &verified.pcr_sets()[0].pcr_set;
    assert_eq!(set.pcrs()[&8], vec![0xab; 48]);
    let (doc, ts, ..) = common::SAMPLES[0];
    assert_eq!(
        verify(doc, &verified.policy_at(ts), ts).unwrap_err(),
        Error::PcrMismatch
    );
}

#[test]
fn strict_json_and_signature_encoding() {
    let signed = String::from_utf8(sign(&unsigned()).unwrap()).unwrap();
    // Duplicate member: the signed `version` and a second one after it.
    let dup = signed.replacen("\"version\":5", "\"version\":5,\"version\":9", 1);
    assert!(matches!(
        Manifest::parse(dup.as_bytes()),
        Err(ManifestError::Json(_))
    ));
    let float = signed.replacen("\"version\":5", "\"version\":5.0", 1);
    assert!(matches!(
        Manifest::parse(float.as_bytes()),
        Err(ManifestError::Json(_))
    ));
    let mut value: Value = serde_json::from_str(&signed).unwrap();
    // Raw r||s (64 bytes) is refused: one encoding only.
    let der = STANDARD
        .decode(value["signature"].as_str().unwrap())
        .unwrap();
    let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
    value["signature"] = json!(STANDARD.encode(raw));
    assert_eq!(
        Manifest::parse(value.to_string().as_bytes()).unwrap_err(),
        ManifestError::SignatureEncoding
    );
    value["signature"] = json!("not base64!");
    assert_eq!(
        Manifest::parse(value.to_string().as_bytes()).unwrap_err(),
        ManifestError::SignatureEncoding
    );
    value.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        Manifest::parse(value.to_string().as_bytes()).unwrap_err(),
        ManifestError::MissingField("signature".into())
    );
    let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert_eq!(
        Manifest::parse(&big).unwrap_err(),
        ManifestError::TooLarge(big.len())
    );
}

#[test]
fn random_mutations_of_a_signed_manifest_never_panic_or_verify() {
    let signed = sign(&unsigned()).unwrap();
    let mut state = 0x1234_5678_9abc_def1u64;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = signed.clone();
        let i = (state % bytes.len() as u64) as usize;
        bytes[i] = (state >> 32) as u8;
        if bytes == signed {
            continue;
        }
        if let Ok(verified) = parse_and_verify(&bytes) {
            // Only unsigned formatting may change (e.g. a byte inside the base64 that decodes the same is
            // impossible, so this should not happen); the content must then be identical.
            assert_eq!(verified, parse_and_verify(&signed).unwrap());
        }
    }
}
