//! Shared test fixtures: the real samples, and a small P-384 test PKI that signs synthetic Nitro documents.
//!
//! The PKI is deterministic (fixed keys, fixed validity) so failures reproduce. Each certificate is built with
//! the `Manual` profile, so a test can omit or corrupt exactly one extension (CA flag, pathLen, keyUsage).
#![allow(dead_code)]

use std::str::FromStr;
use std::time::Duration;

use ciborium::Value;
use der::asn1::UtcTime;
use der::Encode;
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{DerSignature, Signature, SigningKey};
use vettid_attestation::{PcrSet, Policy};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// The three real documents: (bytes, timestamp ms, PCR0, PCR1, PCR2 hex).
pub const SAMPLES: [(&[u8], u64, &str, &str, &str); 3] = [
    (
        include_bytes!("../data/sample-1.cbor"),
        1_758_057_949_422,
        "f67076a8f9796b90d7f0eb148ec6926f66fe04c80861151916961f7dec715b3c8a36e5908e9551c20048719da134b207",
        "f67076a8f9796b90d7f0eb148ec6926f66fe04c80861151916961f7dec715b3c8a36e5908e9551c20048719da134b207",
        "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a",
    ),
    (
        include_bytes!("../data/sample-2.cbor"),
        1_745_922_759_691,
        "2984ab215649c40ffe8f8b80cfadee47f1b06760f7d9257981f64b2758c347fafa6c733591b25e75ae7e9d1cb86ad5df",
        "ed7759aa996a2e94c6086f24f61f354f75f9ea7f93a74f55d65c2cb5590d1af3930c9adbc57bb543764fa1f5c444f495",
        "27216d3fbedb900be4bdbdb2d5be27b9e8254989e123aaa97f24d1b0fd1016d001323eb9d09a9d25e8e1e1298d68e9c6",
    ),
    (
        include_bytes!("../data/sample-3.cbor"),
        1_665_651_482_136,
        "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b",
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f",
        "d8f114da658de5481f8d9ec73907feb553560787522f705c92d7d96beed8e15e2aa611984e098c576832c292e8dc469a",
    ),
];

/// PCR8 of sample-3 (signed EIF).
pub const SAMPLE3_PCR8: &str =
    "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb";

/// A fixed "today" after every sample's certificates expired (2026-11-24T00:00:00Z).
pub const TODAY_MS: u64 = 1_795_996_800_000;

/// The accepted set for sample `i`.
pub fn sample_set(i: usize) -> PcrSet {
    let (_, _, p0, p1, p2) = SAMPLES[i];
    PcrSet::from_hex(format!("sample-{}", i + 1), p0, p1, p2).unwrap()
}

/// A policy accepting sample `i`.
pub fn sample_policy(i: usize) -> Policy {
    Policy::new([sample_set(i)])
}

/// Time of synthetic documents: 2025-06-01T12:00:00Z.
pub const SYNTH_TS_MS: u64 = 1_748_779_200_000;
const HOUR: u64 = 3_600;

/// A deterministic P-384 key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 48]).unwrap()
}

/// Validity as (start, end) offsets in seconds around the synthetic document time.
pub fn validity(from: i64, to: i64) -> Validity {
    let at = |offset: i64| {
        let secs = (SYNTH_TS_MS / 1000).checked_add_signed(offset).unwrap();
        Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
    };
    Validity {
        not_before: at(from),
        not_after: at(to),
    }
}

/// What to put in one certificate.
#[derive(Clone)]
pub struct CertSpec {
    pub subject: &'static str,
    pub ca: Option<bool>,
    pub path_len: Option<u8>,
    pub key_usage: Option<KeyUsage>,
    pub validity: Validity,
}

impl CertSpec {
    pub fn ca(subject: &'static str, path_len: Option<u8>) -> Self {
        Self {
            subject,
            ca: Some(true),
            path_len,
            key_usage: Some(KeyUsage(
                KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
            )),
            validity: validity(-24 * 3600, 24 * 3600),
        }
    }

    pub fn leaf(subject: &'static str) -> Self {
        Self {
            subject,
            ca: Some(false),
            path_len: None,
            key_usage: Some(KeyUsage(
                KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
            )),
            validity: validity(-5, 3 * HOUR as i64),
        }
    }
}

/// Issues a certificate for `subject_key` signed by `issuer` (or self-signed when `issuer` is None).
pub fn issue(
    spec: &CertSpec,
    spki: SubjectPublicKeyInfoOwned,
    issuer: Option<(&str, &SigningKey)>,
    self_key: &SigningKey,
    serial: u32,
) -> Vec<u8> {
    let (issuer_name, signer) = match issuer {
        Some((name, key)) => (Some(Name::from_str(name).unwrap()), key),
        None => (None, self_key),
    };
    let mut builder = CertificateBuilder::new(
        Profile::Manual {
            issuer: issuer_name,
        },
        SerialNumber::from(serial),
        spec.validity,
        Name::from_str(spec.subject).unwrap(),
        spki,
        signer,
    )
    .unwrap();
    if let Some(ca) = spec.ca {
        builder
            .add_extension(&BasicConstraints {
                ca,
                path_len_constraint: spec.path_len,
            })
            .unwrap();
    }
    if let Some(ku) = spec.key_usage {
        builder.add_extension(&ku).unwrap();
    }
    builder.build::<DerSignature>().unwrap().to_der().unwrap()
}

pub fn spki(key: &SigningKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap()
}

/// A Nitro-shaped PKI: root → regional (pathLen 2) → zonal (1) → instance (0) → leaf.
pub struct Pki {
    pub root: Vec<u8>,
    pub cas: Vec<Vec<u8>>,
    pub leaf: Vec<u8>,
    pub leaf_key: SigningKey,
}

pub const ROOT: &str = "CN=test.nitro-enclaves,O=VettID Test";
pub const CA_NAMES: [&str; 3] = [
    "CN=regional,O=VettID Test",
    "CN=zonal,O=VettID Test",
    "CN=instance,O=VettID Test",
];
pub const LEAF: &str = "CN=i-0123-enc0456,O=VettID Test";

impl Pki {
    /// The default chain; `tweak(i, spec)` may change spec `i` (0 root, 1..=3 CAs, 4 leaf) first.
    pub fn build(tweak: impl Fn(usize, &mut CertSpec)) -> Self {
        let mut specs = [
            CertSpec::ca(ROOT, None),
            CertSpec::ca(CA_NAMES[0], Some(2)),
            CertSpec::ca(CA_NAMES[1], Some(1)),
            CertSpec::ca(CA_NAMES[2], Some(0)),
            CertSpec::leaf(LEAF),
        ];
        for (i, spec) in specs.iter_mut().enumerate() {
            tweak(i, spec);
        }
        let keys: Vec<SigningKey> = (1..=5).map(key).collect();
        let root = issue(&specs[0], spki(&keys[0]), None, &keys[0], 1);
        let mut cas = Vec::new();
        for i in 1..=3 {
            let issuer = (specs[i - 1].subject, &keys[i - 1]);
            cas.push(issue(
                &specs[i],
                spki(&keys[i]),
                Some(issuer),
                &keys[i],
                i as u32 + 1,
            ));
        }
        let leaf = issue(
            &specs[4],
            spki(&keys[4]),
            Some((specs[3].subject, &keys[3])),
            &keys[4],
            5,
        );
        Self {
            root,
            cas,
            leaf,
            leaf_key: keys[4].clone(),
        }
    }

    pub fn default_chain() -> Self {
        Self::build(|_, _| {})
    }

    /// `cabundle` as the NSM sends it: root first.
    pub fn cabundle(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.root.clone())
            .chain(self.cas.iter().cloned())
            .collect()
    }

    pub fn policy(&self) -> Policy {
        Policy::new([synth_set()])
            .with_extra_root(self.root.clone())
            .unwrap()
    }
}

pub fn synth_pcrs() -> Vec<(Value, Value)> {
    (0..16u8)
        .map(|i| {
            (
                Value::Integer(i.into()),
                Value::Bytes(vec![if i < 3 { 0x10 + i } else { 0 }; 48]),
            )
        })
        .collect()
}

pub fn synth_set() -> PcrSet {
    PcrSet::new("synthetic", vec![0x10; 48], vec![0x11; 48], vec![0x12; 48]).unwrap()
}

/// The nine payload fields of a synthetic document, in NSM order.
pub fn payload_fields(pki: &Pki) -> Vec<(Value, Value)> {
    let t = |s: &str| Value::Text(s.into());
    vec![
        (t("module_id"), t("i-0123-enc0456")),
        (t("digest"), t("SHA384")),
        (t("timestamp"), Value::Integer(SYNTH_TS_MS.into())),
        (t("pcrs"), Value::Map(synth_pcrs())),
        (t("certificate"), Value::Bytes(pki.leaf.clone())),
        (
            t("cabundle"),
            Value::Array(pki.cabundle().into_iter().map(Value::Bytes).collect()),
        ),
        (t("public_key"), Value::Null),
        (t("user_data"), Value::Bytes(Vec::new())),
        (t("nonce"), Value::Null),
    ]
}

/// Replaces (or appends) a payload field.
pub fn set_field(fields: &mut Vec<(Value, Value)>, name: &str, value: Value) {
    let key = Value::Text(name.into());
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

pub fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

/// The ES384 protected header `{1: -35}`.
pub fn es384_header() -> Vec<u8> {
    vec![0xa1, 0x01, 0x38, 0x22]
}

/// Signs `payload` as a COSE_Sign1 with `protected`, optionally wrapped in `tag`.
pub fn cose_sign1(protected: &[u8], payload: &[u8], key: &SigningKey, tag: Option<u64>) -> Vec<u8> {
    let sig_structure = cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]));
    let signature: Signature = key.sign(&sig_structure);
    let array = Value::Array(vec![
        Value::Bytes(protected.to_vec()),
        Value::Map(Vec::new()),
        Value::Bytes(payload.to_vec()),
        Value::Bytes(signature.to_bytes().to_vec()),
    ]);
    cbor(&match tag {
        Some(tag) => Value::Tag(tag, Box::new(array)),
        None => array,
    })
}

/// A complete, valid synthetic document for `pki` with the given payload fields.
pub fn document(pki: &Pki, fields: Vec<(Value, Value)>) -> Vec<u8> {
    cose_sign1(
        &es384_header(),
        &cbor(&Value::Map(fields)),
        &pki.leaf_key,
        None,
    )
}
