//! Synthetic documents, validly signed by a test PKI, that the AWS procedure forbids: each has its own error.

mod common;

use ciborium::Value;
use common::*;
use p384::ecdsa::Signature;
use vettid_attestation::{verify, Error, Malformed, Policy};
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

fn check(pki: &Pki, fields: Vec<(Value, Value)>) -> Result<vettid_attestation::Verified, Error> {
    verify(&document(pki, fields), &pki.policy(), SYNTH_TS_MS)
}

fn with_field(name: &str, value: Value) -> Result<vettid_attestation::Verified, Error> {
    let pki = Pki::default_chain();
    let mut fields = payload_fields(&pki);
    set_field(&mut fields, name, value);
    check(&pki, fields)
}

#[test]
fn debug_enclave_with_genuine_chain_is_refused() {
    let pki = Pki::default_chain();
    let mut fields = payload_fields(&pki);
    let zero_pcrs = (0..16u8)
        .map(|i| (Value::Integer(i.into()), Value::Bytes(vec![0; 48])))
        .collect();
    set_field(&mut fields, "pcrs", Value::Map(zero_pcrs));
    let doc = document(&pki, fields);
    assert_eq!(
        verify(&doc, &pki.policy(), SYNTH_TS_MS),
        Err(Error::DebugEnclave)
    );
    let skip = Policy::skip_pcr_check_unsafe()
        .with_extra_root(pki.root.clone())
        .unwrap();
    assert_eq!(verify(&doc, &skip, SYNTH_TS_MS), Err(Error::DebugEnclave));
}

#[test]
fn tag_18_accepted_other_tags_refused_when_validly_signed() {
    let pki = Pki::default_chain();
    let payload = cbor(&Value::Map(payload_fields(&pki)));
    let tagged = cose_sign1(&es384_header(), &payload, &pki.leaf_key, Some(18));
    assert!(verify(&tagged, &pki.policy(), SYNTH_TS_MS).is_ok());
    let other = cose_sign1(&es384_header(), &payload, &pki.leaf_key, Some(61));
    assert_eq!(
        verify(&other, &pki.policy(), SYNTH_TS_MS),
        Err(Error::UnexpectedTag(61))
    );
}

#[test]
fn duplicate_payload_key_is_refused() {
    let pki = Pki::default_chain();
    let mut fields = payload_fields(&pki);
    fields.push((Value::Text("nonce".into()), Value::Bytes(vec![1; 8])));
    assert_eq!(
        check(&pki, fields),
        Err(Error::Malformed(Malformed::DuplicateKey("payload")))
    );
}

#[test]
fn duplicate_pcr_index_is_refused() {
    let mut pcrs = synth_pcrs();
    pcrs.push((Value::Integer(0.into()), Value::Bytes(vec![0x10; 48])));
    assert_eq!(
        with_field("pcrs", Value::Map(pcrs)),
        Err(Error::Malformed(Malformed::DuplicateKey("payload")))
    );
}

#[test]
fn wrong_algorithm_in_protected_header_is_refused() {
    let pki = Pki::default_chain();
    let payload = cbor(&Value::Map(payload_fields(&pki)));
    let es256 = cose_sign1(&[0xa1, 0x01, 0x26], &payload, &pki.leaf_key, None);
    assert!(matches!(
        verify(&es256, &pki.policy(), SYNTH_TS_MS),
        Err(Error::UnsupportedAlgorithm(_))
    ));
    let extra = cose_sign1(
        &[0xa2, 0x01, 0x38, 0x22, 0x04, 0x41, 0x01],
        &payload,
        &pki.leaf_key,
        None,
    );
    assert_eq!(
        verify(&extra, &pki.policy(), SYNTH_TS_MS),
        Err(Error::Malformed(Malformed::ProtectedHeader))
    );
}

#[test]
fn digest_other_than_sha384_is_refused() {
    assert_eq!(
        with_field("digest", Value::Text("SHA256".into())),
        Err(Error::UnsupportedDigest("SHA256".into()))
    );
}

#[test]
fn size_limits_are_enforced() {
    let size = |r: Result<_, Error>| match r {
        Err(Error::SizeLimit { field, len }) => (field, len),
        other => panic!("expected SizeLimit, got {other:?}"),
    };
    assert_eq!(
        size(with_field("module_id", Value::Text(String::new()))),
        ("module_id", 0)
    );
    assert_eq!(
        size(with_field("certificate", Value::Bytes(vec![0x30; 1025]))),
        ("certificate", 1025)
    );
    assert_eq!(
        size(with_field("cabundle", Value::Array(vec![]))),
        ("cabundle", 0)
    );
    let nine = Value::Array(vec![Value::Bytes(vec![0x30; 10]); 9]);
    assert_eq!(size(with_field("cabundle", nine)), ("cabundle", 9));
    let empty_entry = Value::Array(vec![Value::Bytes(vec![])]);
    assert_eq!(
        size(with_field("cabundle", empty_entry)),
        ("cabundle entry", 0)
    );
    assert_eq!(
        size(with_field("user_data", Value::Bytes(vec![1; 1025]))),
        ("user_data", 1025)
    );
    assert_eq!(
        size(with_field("public_key", Value::Bytes(vec![1; 1025]))),
        ("public_key", 1025)
    );
    assert_eq!(
        size(with_field("nonce", Value::Bytes(vec![1; 1025]))),
        ("nonce", 1025)
    );
    assert_eq!(size(with_field("pcrs", Value::Map(vec![]))), ("pcrs", 0));
    let mut short = synth_pcrs();
    short[5].1 = Value::Bytes(vec![1; 47]);
    assert_eq!(
        size(with_field("pcrs", Value::Map(short))),
        ("pcrs value", 47)
    );
    let huge = vec![0u8; vettid_attestation::MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        size(verify(&huge, &Policy::skip_pcr_check_unsafe(), 0)),
        ("document", huge.len())
    );
}

#[test]
fn maximal_optional_fields_and_32_pcrs_are_accepted() {
    let pki = Pki::default_chain();
    let mut fields = payload_fields(&pki);
    for name in ["user_data", "public_key", "nonce"] {
        set_field(&mut fields, name, Value::Bytes(vec![7; 1024]));
    }
    let mut pcrs = synth_pcrs();
    pcrs.extend((16..32u8).map(|i| (Value::Integer(i.into()), Value::Bytes(vec![i; 32]))));
    set_field(&mut fields, "pcrs", Value::Map(pcrs));
    fields.push((Value::Text("future_field".into()), Value::Bool(true)));
    let verified = check(&pki, fields).unwrap();
    assert_eq!(verified.pcrs.len(), 32);
}

#[test]
fn field_shape_violations_are_malformed() {
    let bad = |name: &str, value: Value| with_field(name, value).unwrap_err();
    assert_eq!(
        bad("timestamp", Value::Integer(0.into())),
        Error::Malformed(Malformed::InvalidField("timestamp"))
    );
    assert_eq!(
        bad("timestamp", Value::Integer((-5).into())),
        Error::Malformed(Malformed::InvalidField("timestamp"))
    );
    assert_eq!(
        bad("user_data", Value::Text("x".into())),
        Error::Malformed(Malformed::InvalidField("user_data"))
    );
    let mut pcrs = synth_pcrs();
    pcrs.push((Value::Integer(32.into()), Value::Bytes(vec![1; 48])));
    assert_eq!(
        bad("pcrs", Value::Map(pcrs)),
        Error::Malformed(Malformed::InvalidField("pcrs index"))
    );
    let no_pcr1: Vec<_> = synth_pcrs()
        .into_iter()
        .filter(|(k, _)| *k != Value::Integer(1.into()))
        .collect();
    assert_eq!(
        bad("pcrs", Value::Map(no_pcr1)),
        Error::Malformed(Malformed::MissingField("pcrs[1]"))
    );

    let pki = Pki::default_chain();
    let fields: Vec<_> = payload_fields(&pki)
        .into_iter()
        .filter(|(k, _)| *k != Value::Text("digest".into()))
        .collect();
    assert_eq!(
        check(&pki, fields),
        Err(Error::Malformed(Malformed::MissingField("digest")))
    );
}

#[test]
fn high_s_signature_is_accepted() {
    let pki = Pki::default_chain();
    let doc = document(&pki, payload_fields(&pki));
    let (head, sig) = doc.split_at(doc.len() - 96);
    let sig = Signature::from_slice(sig).unwrap();
    let flipped = Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
    assert_ne!(flipped, sig);
    let mut high = head.to_vec();
    high.extend_from_slice(&flipped.to_bytes());
    let low = if sig.normalize_s().is_some() {
        &high[..]
    } else {
        &doc[..]
    };
    let policy = pki.policy();
    assert!(verify(&doc, &policy, SYNTH_TS_MS).is_ok());
    assert!(verify(&high, &policy, SYNTH_TS_MS).is_ok());
    assert!(verify(low, &policy, SYNTH_TS_MS).is_ok());
}

#[test]
fn future_and_stale_documents_are_refused() {
    let pki = Pki::default_chain();
    let doc = document(&pki, payload_fields(&pki));
    let policy = pki.policy().with_max_age_ms(10).with_max_future_skew_ms(5);
    assert!(matches!(
        verify(&doc, &policy, SYNTH_TS_MS + 11),
        Err(Error::Stale {
            age_ms: 11,
            max_age_ms: 10
        })
    ));
    assert!(matches!(
        verify(&doc, &policy, SYNTH_TS_MS - 6),
        Err(Error::FromTheFuture { ahead_ms: 6, .. })
    ));
}

#[test]
fn leaf_with_p256_key_is_unsupported() {
    let keys: Vec<_> = (1..=4).map(key).collect();
    let pki = Pki::default_chain();
    let p256_key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let spki =
        x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*p256_key.verifying_key()).unwrap();
    let leaf = issue(
        &CertSpec::leaf(LEAF),
        spki,
        Some((CA_NAMES[2], &keys[3])),
        &keys[3],
        9,
    );
    let mut fields = payload_fields(&pki);
    set_field(&mut fields, "certificate", Value::Bytes(leaf));
    assert!(matches!(
        check(&pki, fields),
        Err(Error::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn extra_root_must_be_a_ca_certificate() {
    let pki = Pki::default_chain();
    assert!(matches!(
        Policy::new([synth_set()]).with_extra_root(pki.leaf.clone()),
        Err(Error::InvalidPolicy(_))
    ));
    assert!(matches!(
        Policy::new([synth_set()]).with_extra_root(vec![1, 2, 3]),
        Err(Error::InvalidPolicy(_))
    ));
}

#[test]
fn key_usage_constant_is_what_real_cas_carry() {
    // Guard for the fixtures themselves: CAs carry keyCertSign, the leaf digitalSignature (as AWS's do).
    let ku = CertSpec::ca(ROOT, None).key_usage.unwrap();
    assert!(ku.key_cert_sign());
    assert!(KeyUsage(KeyUsages::DigitalSignature.into()).digital_signature());
}
