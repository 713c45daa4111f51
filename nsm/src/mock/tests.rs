//! Mock NSM tests: documents are decoded and verified with independent code (coset for COSE,
//! x509-cert for certificates, aws-lc-rs for signatures), not with the mock's own encoder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED};
use ciborium::Value;
use coset::CborSerializable;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use super::*;
use crate::{MAX_NONCE_LEN, MAX_PUBLIC_KEY_LEN, MAX_USER_DATA_LEN};

/// 2025-09-16T21:25:49.422Z, the timestamp of sample-1 in shared/attestation-samples.
const PINNED_MS: u64 = 1_758_057_949_422;

const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

fn pinned_clock() -> (Arc<AtomicU64>, impl Clock) {
    let now = Arc::new(AtomicU64::new(PINNED_MS));
    let reader = Arc::clone(&now);
    (now, move || reader.load(Ordering::SeqCst))
}

fn mock() -> MockNsm {
    MockNsm::ephemeral(MockPcrs::from_measurement(b"test image")).unwrap()
}

/// A decoded document: the COSE parts and the payload fields in wire order.
struct Decoded {
    payload: Vec<(String, Value)>,
}

impl Decoded {
    fn field(&self, name: &str) -> &Value {
        &self.payload.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        match self.field(name) {
            Value::Bytes(b) => Some(b.clone()),
            Value::Null => None,
            other => panic!("{name} is {other:?}"),
        }
    }

    fn timestamp(&self) -> u64 {
        u64::try_from(self.field("timestamp").as_integer().unwrap()).unwrap()
    }

    fn cabundle(&self) -> Vec<Vec<u8>> {
        let bundle = self.field("cabundle").as_array().unwrap();
        bundle
            .iter()
            .map(|c| c.as_bytes().unwrap().clone())
            .collect()
    }
}

/// Decode with ciborium, check the envelope shape, and verify the COSE signature (via coset's
/// Sig_structure) with the leaf certificate's key.
fn decode_and_verify(doc: &[u8]) -> Decoded {
    let Value::Array(parts) = ciborium::from_reader::<Value, _>(doc).unwrap() else {
        panic!("envelope is not an array");
    };
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], Value::Bytes(vec![0xa1, 0x01, 0x38, 0x22]));
    assert_eq!(parts[1], Value::Map(vec![]));
    assert_eq!(parts[3].as_bytes().unwrap().len(), 96);
    let payload_bytes = parts[2].as_bytes().unwrap();
    let Value::Map(map) = ciborium::from_reader::<Value, _>(&payload_bytes[..]).unwrap() else {
        panic!("payload is not a map");
    };
    let payload: Vec<(String, Value)> = map
        .into_iter()
        .map(|(k, v)| (k.into_text().unwrap(), v))
        .collect();
    let keys: Vec<&str> = payload.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, FIELDS);
    let decoded = Decoded { payload };

    let leaf = Certificate::from_der(&decoded.bytes("certificate").unwrap()).unwrap();
    let point = leaf
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let sign1 = coset::CoseSign1::from_slice(doc).unwrap();
    assert_eq!(
        sign1.protected.header.alg,
        Some(coset::Algorithm::Assigned(coset::iana::Algorithm::ES384))
    );
    sign1
        .verify_signature(b"", |sig, data| {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point).verify(data, sig)
        })
        .expect("COSE signature verifies with the leaf key");
    decoded
}

fn verify_cert_signature(cert: &Certificate, issuer: &Certificate) {
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, key)
        .verify(&tbs, cert.signature.raw_bytes())
        .expect("certificate signature verifies with the issuer key");
    assert_eq!(cert.tbs_certificate.issuer, issuer.tbs_certificate.subject);
}

fn extension<T: AssociatedOid + for<'a> Decode<'a>>(cert: &Certificate) -> Option<T> {
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    let ext = exts.iter().find(|e| e.extn_id == T::OID)?;
    Some(T::from_der(ext.extn_value.as_bytes()).unwrap())
}

fn lifetime_ms(cert: &Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    let ms = |t: x509_cert::time::Time| u64::try_from(t.to_unix_duration().as_millis()).unwrap();
    (ms(v.not_before), ms(v.not_after))
}

#[test]
fn document_has_the_aws_envelope_and_nine_fields_in_order() {
    let nsm = mock();
    let doc = nsm.attest(&AttestationRequest::default()).unwrap();
    assert_eq!(&doc[..8], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59]);
    let d = decode_and_verify(&doc);
    let module_id = d.field("module_id").as_text().unwrap();
    assert!(module_id.starts_with("mock-nsm-"), "{module_id}");
    assert_eq!(module_id, nsm.module_id());
    assert_eq!(d.field("digest").as_text(), Some("SHA384"));

    let pcrs = d.field("pcrs").as_map().unwrap();
    let indices: Vec<u64> = pcrs
        .iter()
        .map(|(k, _)| u64::try_from(k.as_integer().unwrap()).unwrap())
        .collect();
    assert_eq!(indices, (0..16).collect::<Vec<_>>());
    for (index, (_, value)) in pcrs.iter().enumerate() {
        let value = value.as_bytes().unwrap();
        assert_eq!(value.len(), 48);
        assert_eq!(value[..], nsm.pcrs().get(index as u16).unwrap()[..]);
    }
}

#[test]
fn chain_is_root_first_and_every_signature_verifies() {
    let nsm = mock();
    let d = decode_and_verify(&nsm.attest(&AttestationRequest::default()).unwrap());
    let bundle = d.cabundle();
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], nsm.root_der(), "cabundle[0] is the root");
    let root = Certificate::from_der(&bundle[0]).unwrap();
    let intermediate = Certificate::from_der(&bundle[1]).unwrap();
    let leaf = Certificate::from_der(&d.bytes("certificate").unwrap()).unwrap();

    verify_cert_signature(&root, &root);
    verify_cert_signature(&intermediate, &root);
    verify_cert_signature(&leaf, &intermediate);

    for cert in [&root, &intermediate, &leaf] {
        let subject = cert.tbs_certificate.subject.to_string();
        assert!(
            subject.contains("CN=VettID MOCK NSM (dev only)"),
            "{subject}"
        );
    }

    let bc = |c: &Certificate| extension::<BasicConstraints>(c).unwrap();
    let ku = |c: &Certificate| extension::<KeyUsage>(c).unwrap();
    assert!(bc(&root).ca && bc(&root).path_len_constraint.is_none());
    assert!(ku(&root).key_cert_sign());
    assert!(bc(&intermediate).ca);
    assert_eq!(bc(&intermediate).path_len_constraint, Some(0));
    assert!(ku(&intermediate).key_cert_sign());
    assert!(!bc(&leaf).ca);
    assert!(ku(&leaf).digital_signature() && !ku(&leaf).key_cert_sign());
    // Like AWS leaves: no Authority Key Identifier.
    assert!(extension::<AuthorityKeyIdentifier>(&leaf).is_none());
}

#[test]
fn validity_periods_match_aws_shapes() {
    let (_, clock) = pinned_clock();
    let nsm = mock().with_clock(clock);
    let d = decode_and_verify(&nsm.attest(&AttestationRequest::default()).unwrap());
    assert_eq!(d.timestamp(), PINNED_MS);
    let bundle = d.cabundle();
    let (root_from, root_to) = lifetime_ms(&Certificate::from_der(&bundle[0]).unwrap());
    let (int_from, int_to) = lifetime_ms(&Certificate::from_der(&bundle[1]).unwrap());
    let (leaf_from, leaf_to) =
        lifetime_ms(&Certificate::from_der(&d.bytes("certificate").unwrap()).unwrap());
    let hour = 3_600_000;
    // Everything is valid at the document's own (pinned, past) timestamp.
    for (from, to) in [
        (root_from, root_to),
        (int_from, int_to),
        (leaf_from, leaf_to),
    ] {
        assert!(from <= PINNED_MS && PINNED_MS < to);
    }
    assert!(root_to - root_from >= 3650 * 24 * hour);
    assert!((int_to - PINNED_MS).abs_diff(365 * 24 * hour) < 2000);
    assert!((leaf_to - PINNED_MS).abs_diff(3 * hour) < 2000);
    assert!(PINNED_MS - leaf_from <= 61_000);
}

#[test]
fn leaf_is_reissued_within_30_minutes_of_expiry() {
    let (now, clock) = pinned_clock();
    let nsm = mock().with_clock(clock);
    let leaf_at = |nsm: &MockNsm| {
        let d = decode_and_verify(&nsm.attest(&AttestationRequest::default()).unwrap());
        (d.bytes("certificate").unwrap(), d.cabundle()[1].clone())
    };
    let (first, first_int) = leaf_at(&nsm);
    now.store(PINNED_MS + 2 * 3_600_000 + 29 * 60_000, Ordering::SeqCst);
    assert_eq!(leaf_at(&nsm).0, first, "31 minutes left: same leaf");
    now.store(PINNED_MS + 2 * 3_600_000 + 31 * 60_000, Ordering::SeqCst);
    let (second, second_int) = leaf_at(&nsm);
    assert_ne!(second, first, "29 minutes left: new leaf");
    assert_eq!(
        second_int, first_int,
        "the intermediate outlives many leaves"
    );
    // Moving the clock before the leaf's start (a test pinning the past) also reissues.
    now.store(PINNED_MS - 3_600_000, Ordering::SeqCst);
    let (third, third_int) = leaf_at(&nsm);
    assert_ne!(third, second);
    assert_ne!(
        third_int, first_int,
        "the intermediate did not cover that time either"
    );
}

#[test]
fn request_fields_are_echoed_or_null() {
    let nsm = mock();
    let d = decode_and_verify(&nsm.attest(&AttestationRequest::default()).unwrap());
    for field in ["public_key", "user_data", "nonce"] {
        assert_eq!(d.field(field), &Value::Null, "{field}");
    }
    let req = AttestationRequest {
        nonce: Some(vec![1; MAX_NONCE_LEN]),
        public_key: Some(vec![2; MAX_PUBLIC_KEY_LEN]),
        user_data: Some(Vec::new()),
    };
    let d = decode_and_verify(&nsm.attest(&req).unwrap());
    assert_eq!(d.bytes("nonce"), req.nonce);
    assert_eq!(d.bytes("public_key"), req.public_key);
    assert_eq!(d.bytes("user_data"), Some(Vec::new()));
}

#[test]
fn oversized_fields_are_rejected() {
    let nsm = mock();
    let too_big = |field: &str| {
        let mut req = AttestationRequest::default();
        match field {
            "nonce" => req.nonce = Some(vec![0; MAX_NONCE_LEN + 1]),
            "user_data" => req.user_data = Some(vec![0; MAX_USER_DATA_LEN + 1]),
            _ => req.public_key = Some(vec![0; MAX_PUBLIC_KEY_LEN + 1]),
        }
        req
    };
    for field in ["nonce", "user_data", "public_key"] {
        match nsm.attest(&too_big(field)) {
            Err(NsmError::TooLarge { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn two_documents_differ() {
    let (_, clock) = pinned_clock();
    let nsm = mock().with_clock(clock);
    let req = AttestationRequest {
        nonce: Some(b"same".to_vec()),
        ..Default::default()
    };
    // Same clock, same request: ECDSA's random k still makes the signatures differ.
    assert_ne!(nsm.attest(&req).unwrap(), nsm.attest(&req).unwrap());
}

#[test]
fn debug_mode_pcrs_are_reported_as_zero() {
    let nsm = MockNsm::ephemeral(MockPcrs::debug_mode()).unwrap();
    let d = decode_and_verify(&nsm.attest(&AttestationRequest::default()).unwrap());
    let pcrs = d.field("pcrs").as_map().unwrap();
    for (_, value) in &pcrs[..3] {
        assert_eq!(value.as_bytes().unwrap(), &vec![0u8; 48]);
    }
}

#[test]
fn describe_says_mock() {
    let nsm = mock();
    let desc = nsm.describe().unwrap();
    assert!(desc.is_mock);
    assert_eq!(desc.module_id, nsm.module_id());
    assert_eq!(desc.digest.as_str(), "SHA384");
    assert_eq!(desc.pcrs.len(), 16);
    assert_eq!(desc.pcrs[&0], nsm.pcrs().get(0).unwrap().to_vec());
    assert_eq!(desc.limits, RequestLimits::AWS);
}

#[test]
fn random_returns_the_requested_length() {
    let nsm: Arc<dyn Nsm> = Arc::new(mock());
    let a = nsm.random(1000).unwrap();
    assert_eq!(a.len(), 1000);
    assert_ne!(a, nsm.random(1000).unwrap());
    assert!(nsm.random(0).unwrap().is_empty());
    assert!(matches!(
        nsm.random(crate::MAX_RANDOM_LEN + 1),
        Err(NsmError::TooLarge { .. })
    ));
}

// === persistence ===

#[test]
fn load_or_create_keeps_the_root_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev");
    let first = MockNsm::load_or_create(&path, MockPcrs::debug_mode()).unwrap();
    let second = MockNsm::load_or_create(&path, MockPcrs::debug_mode()).unwrap();
    assert_eq!(first.root_der(), second.root_der());
    assert_ne!(
        first.module_id(),
        second.module_id(),
        "module id is per process"
    );

    // The reloaded root still issues chains that verify against the stored PEM.
    let d = decode_and_verify(&second.attest(&AttestationRequest::default()).unwrap());
    let stored = std::fs::read_to_string(path.join(ROOT_CERT_FILE)).unwrap();
    let root = Certificate::from_der(pem::parse(&stored).unwrap().contents()).unwrap();
    let intermediate = Certificate::from_der(&d.cabundle()[1]).unwrap();
    verify_cert_signature(&intermediate, &root);
}

#[test]
fn root_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    MockNsm::load_or_create(dir.path(), MockPcrs::debug_mode()).unwrap();
    let mode = std::fs::metadata(dir.path().join(ROOT_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn root_pem_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = MockNsm::load_or_create(dir.path(), MockPcrs::debug_mode()).unwrap();
    let parsed = pem::parse(nsm.root_pem()).unwrap();
    assert_eq!(parsed.tag(), "CERTIFICATE");
    assert_eq!(parsed.contents(), nsm.root_der());
    let on_disk = std::fs::read_to_string(dir.path().join(ROOT_CERT_FILE)).unwrap();
    assert_eq!(on_disk, nsm.root_pem());
}

#[test]
fn half_a_root_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    MockNsm::load_or_create(dir.path(), MockPcrs::debug_mode()).unwrap();
    std::fs::remove_file(dir.path().join(ROOT_KEY_FILE)).unwrap();
    let err = MockNsm::load_or_create(dir.path(), MockPcrs::debug_mode()).unwrap_err();
    assert!(matches!(err, NsmError::MockRoot { .. }), "{err}");
    assert!(dir.path().join(ROOT_CERT_FILE).exists());
}

#[test]
fn mismatched_key_and_certificate_are_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    MockNsm::load_or_create(a.path(), MockPcrs::debug_mode()).unwrap();
    MockNsm::load_or_create(b.path(), MockPcrs::debug_mode()).unwrap();
    std::fs::copy(b.path().join(ROOT_KEY_FILE), a.path().join(ROOT_KEY_FILE)).unwrap();
    let err = MockNsm::load_or_create(a.path(), MockPcrs::debug_mode()).unwrap_err();
    assert!(matches!(err, NsmError::MockRoot { .. }), "{err}");
}

#[test]
fn concurrent_callers_all_get_valid_documents() {
    let nsm = Arc::new(mock());
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let nsm = Arc::clone(&nsm);
            std::thread::spawn(move || {
                (0..5u8)
                    .map(|j| {
                        let req = AttestationRequest {
                            nonce: Some(vec![i, j]),
                            ..Default::default()
                        };
                        nsm.attest(&req).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let docs: Vec<Vec<u8>> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let leaves: std::collections::BTreeSet<Vec<u8>> = docs
        .iter()
        .map(|doc| decode_and_verify(doc).bytes("certificate").unwrap())
        .collect();
    assert_eq!(leaves.len(), 1, "one leaf serves every caller");
}
