//! The builder (feature `builder`) against the opener: shape, round trips, wrong keys.

mod common;

use common::{data, sample_key};
use vettid_recipient::{
    build_ciphertext_for_recipient, open_ciphertext_for_recipient, RecipientError, RecipientKey,
};

/// Replaces the first run of `from` in `input` by `to` (same length).
fn patch(input: &mut [u8], from: &[u8], to: &[u8]) {
    let at = input
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    input[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn built_envelope_has_kms_shape_and_opens() {
    let key = RecipientKey::generate().unwrap();
    assert_eq!(key.public_key_der().len(), 294);
    let built = build_ciphertext_for_recipient(key.public_key_der(), &[7u8; 32]).unwrap();
    let sample = data("kms-sample.ber");
    // Same length and the same bytes everywhere except the SKI, the wrapped key, the IV and the ciphertext.
    assert_eq!(built.len(), sample.len());
    let fixed = [0..33, 65..131, 387..415, 431..435, 483..493];
    for range in fixed {
        assert_eq!(
            built[range.clone()],
            sample[range.clone()],
            "bytes {range:?}"
        );
    }
    let plaintext = open_ciphertext_for_recipient(&key, &built).unwrap();
    assert_eq!(plaintext.as_slice(), &[7u8; 32]);
}

#[test]
fn round_trips_for_all_plaintext_sizes_kms_returns() {
    let key = sample_key();
    for len in [0, 1, 15, 16, 17, 32, 64, 1023, 1024, 1025, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let built = build_ciphertext_for_recipient(key.public_key_der(), &plaintext).unwrap();
        let opened = open_ciphertext_for_recipient(&key, &built).unwrap();
        assert_eq!(opened.as_slice(), plaintext.as_slice(), "len {len}");
    }
    assert!(build_ciphertext_for_recipient(key.public_key_der(), &[0; 4097]).is_err());
}

#[test]
fn every_envelope_uses_a_fresh_content_key_and_iv() {
    let key = sample_key();
    let a = build_ciphertext_for_recipient(key.public_key_der(), b"same").unwrap();
    let b = build_ciphertext_for_recipient(key.public_key_der(), b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn envelope_for_another_key_is_a_recipient_mismatch() {
    let ours = sample_key();
    let theirs = RecipientKey::generate().unwrap();
    let built = build_ciphertext_for_recipient(theirs.public_key_der(), b"secret").unwrap();
    assert_eq!(
        open_ciphertext_for_recipient(&ours, &built),
        Err(RecipientError::RecipientMismatch)
    );
}

#[test]
fn envelope_relabelled_with_our_ski_fails_to_decrypt() {
    let ours = sample_key();
    let theirs = RecipientKey::generate().unwrap();
    let mut built = build_ciphertext_for_recipient(theirs.public_key_der(), b"secret").unwrap();
    patch(
        &mut built,
        theirs.subject_key_identifier(),
        ours.subject_key_identifier(),
    );
    assert_eq!(
        open_ciphertext_for_recipient(&ours, &built),
        Err(RecipientError::Decrypt)
    );
}

#[test]
fn builder_refuses_non_rsa_or_small_keys() {
    assert!(matches!(
        build_ciphertext_for_recipient(b"not a key", b"x"),
        Err(RecipientError::Key(_))
    ));
}
