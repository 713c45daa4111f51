//! Hostile input: every truncation, seeded random mutations, the size bound, structural edits.

mod common;

use common::{data, sample_key, SplitMix};
use vettid_recipient::{open_ciphertext_for_recipient, RecipientError, MAX_INPUT_LEN};

#[test]
fn every_truncation_of_the_sample_is_a_clean_error() {
    let key = sample_key();
    for name in ["kms-sample.ber", "kms-sample-as.der"] {
        let sample = data(name);
        for len in 0..sample.len() {
            let result = open_ciphertext_for_recipient(&key, &sample[..len]);
            assert!(
                matches!(result, Err(RecipientError::Malformed(_))),
                "{name} truncated to {len}: {result:?}"
            );
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let key = sample_key();
    let sample = data("kms-sample.ber");
    let mut rng = SplitMix(0x5EED_CAFE);
    let mut opened = 0;
    for _ in 0..2000 {
        let mut input = sample.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(input.len());
                    input[i] = rng.next() as u8;
                }
                1 => {
                    let i = rng.below(input.len());
                    input[i] ^= 1 << rng.below(8);
                }
                2 if input.len() > 1 => {
                    let i = rng.below(input.len());
                    input.remove(i);
                }
                _ => {
                    let i = rng.below(input.len() + 1);
                    input.insert(i, rng.next() as u8);
                }
            }
        }
        // Only a no-op edit (a byte replaced by itself) may still open, and then to the same plaintext.
        if let Ok(plaintext) = open_ciphertext_for_recipient(&key, &input) {
            opened += 1;
            assert_eq!(plaintext.len(), 32);
        }
    }
    assert!(opened < 200, "{opened} mutants opened");
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let key = sample_key();
    let mut big = data("kms-sample.ber");
    big.resize(MAX_INPUT_LEN + 1, 0);
    assert_eq!(
        open_ciphertext_for_recipient(&key, &big),
        Err(RecipientError::TooLarge {
            len: MAX_INPUT_LEN + 1,
            max: MAX_INPUT_LEN
        })
    );
}

#[test]
fn trailing_bytes_after_the_envelope_are_refused() {
    let mut sample = data("kms-sample.ber");
    sample.extend([0x05, 0x00]);
    assert_eq!(
        open_ciphertext_for_recipient(&sample_key(), &sample),
        Err(RecipientError::Malformed("data after the ContentInfo"))
    );
}

#[test]
fn deeply_nested_indefinite_input_is_bounded() {
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend([0x30, 0x80]);
    }
    for _ in 0..10_000 {
        deep.extend([0x00, 0x00]);
    }
    assert!(matches!(
        open_ciphertext_for_recipient(&sample_key(), &deep),
        Err(RecipientError::Malformed(_))
    ));
}

#[test]
fn tampered_wrapped_key_fails_to_decrypt() {
    // The 256-byte encryptedKey starts at offset 131 (after `04 82 01 00` at 127).
    let mut sample = data("kms-sample.ber");
    assert_eq!(&sample[127..131], &[0x04, 0x82, 0x01, 0x00]);
    sample[200] ^= 0x01;
    assert_eq!(
        open_ciphertext_for_recipient(&sample_key(), &sample),
        Err(RecipientError::Decrypt)
    );
}

#[test]
fn wrong_content_type_and_version_are_refused() {
    let key = sample_key();
    let mut sample = data("kms-sample.ber");
    sample[12] = 0x01; // pkcs7-envelopedData → pkcs7-data
    assert!(matches!(
        open_ciphertext_for_recipient(&key, &sample),
        Err(RecipientError::UnsupportedAlgorithm(_))
    ));
    let mut sample = data("kms-sample.ber");
    sample[19] = 0x00; // EnvelopedData version 2 → 0
    assert!(matches!(
        open_ciphertext_for_recipient(&key, &sample),
        Err(RecipientError::UnsupportedAlgorithm(_))
    ));
}
