//! Synthetic documents under a test PKI: the happy path and the quirks real documents show.

mod common;

use common::*;
use vettid_attestation::{verify, Error};

#[test]
fn synthetic_document_verifies_under_explicit_extra_root() {
    let pki = Pki::default_chain();
    let doc = document(&pki, payload_fields(&pki));
    let verified = verify(&doc, &pki.policy(), SYNTH_TS_MS + 1_000).unwrap();
    assert_eq!(verified.matched_pcr_set.as_deref(), Some("synthetic"));
    assert_eq!(verified.chain.len(), 5);
    assert_eq!(verified.user_data, Some(Vec::new()));
    assert_eq!(verified.public_key, None);
}

#[test]
fn test_root_is_not_trusted_without_with_extra_root() {
    let pki = Pki::default_chain();
    let doc = document(&pki, payload_fields(&pki));
    let policy = vettid_attestation::Policy::new([synth_set()]);
    assert_eq!(
        verify(&doc, &policy, SYNTH_TS_MS),
        Err(Error::UntrustedRoot)
    );
}
