//! Shared test helpers: fixture loading, PKCS#1 → PKCS#8 wrapping, a seeded generator.

#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;
use vettid_recipient::RecipientKey;

/// Bytes of `tests/data/<name>`.
pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The private key of the real KMS sample (a PKCS#1 `RSA PRIVATE KEY` PEM).
pub fn sample_key() -> RecipientKey {
    let pem = String::from_utf8(data("kms-sample-key.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pkcs1 = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    RecipientKey::from_pkcs8(&pkcs1_to_pkcs8(&pkcs1)).unwrap()
}

/// aws-lc-rs loads decrypting keys from PKCS#8 only; PKCS#8 is PKCS#1 in an OCTET STRING with a version and
/// the rsaEncryption AlgorithmIdentifier (RFC 5208).
pub fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // version 0
        0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let key = der(0x04, pkcs1);
    der(0x30, &[VERSION_AND_ALGORITHM, &key].concat())
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(body);
    out
}

/// SplitMix64: a tiny deterministic generator, so mutation tests replay exactly.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
