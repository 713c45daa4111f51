//! The enclave's NATS-side parsers on arbitrary input: subject routing, the JSON object parser
//! with its size bound, the request-id extraction and the attestation nonce checks. Input is
//! split at the first 0xff byte into (subject, payload). Never panics; every failure is typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_enclave::error::ClientError;
use vettid_enclave::handlers::attestation::nonce;
use vettid_enclave::reply::{self, ReplyCtx};
use vettid_enclave::router::route;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let _ = route(&String::from_utf8_lossy(subject));
    if let Ok(obj) = reply::parse_object(payload) {
        let ctx = ReplyCtx::from_request(Some(&obj), Some("attestation"));
        if let Ok(n) = nonce(&obj) {
            assert!(!n.is_empty() && n.len() <= 512);
        }
        let _ = reply::error(ClientError::InvalidJson, &ctx);
    }
});
