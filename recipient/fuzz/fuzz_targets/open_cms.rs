//! Fuzzes the whole opener: BER walk, schema checks and, for inputs addressed to the sample key (mutants of
//! the real KMS sample keep its SKI), RSA-OAEP and AES-CBC. Seed the corpus with `../tests/data/*.ber` and
//! `*.der` so mutations start from KMS's real shape.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use vettid_recipient::{open_ciphertext_for_recipient, RecipientKey};

/// The private key of the real KMS sample, loaded once (PKCS#1 PEM wrapped into PKCS#8).
fn key() -> &'static RecipientKey {
    static KEY: OnceLock<RecipientKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem = include_str!("../../tests/data/kms-sample-key.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let pkcs1 = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("sample key base64");
        RecipientKey::from_pkcs8(&pkcs1_to_pkcs8(&pkcs1)).expect("sample key")
    })
}

/// PKCS#8 = SEQUENCE { INTEGER 0, AlgorithmIdentifier rsaEncryption, OCTET STRING pkcs1 } (RFC 5208).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const HEAD: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let der = |tag: u8, body: &[u8]| {
        let len = body.len();
        let mut out = vec![tag, 0x82, (len >> 8) as u8, len as u8];
        out.extend_from_slice(body);
        out
    };
    der(0x30, &[HEAD, &der(0x04, pkcs1)].concat())
}

fuzz_target!(|data: &[u8]| {
    let _ = open_ciphertext_for_recipient(key(), data);
});
