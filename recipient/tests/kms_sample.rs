//! The real AWS KMS `CiphertextForRecipient` and independent OpenSSL-made envelopes for the same key.

mod common;

use common::{data, sample_key};
use vettid_recipient::{open_ciphertext_for_recipient, subject_key_identifier, RecipientError};

#[test]
fn real_kms_sample_opens_to_the_data_key() {
    let key = sample_key();
    let plaintext = open_ciphertext_for_recipient(&key, &data("kms-sample.ber")).unwrap();
    assert_eq!(
        plaintext.as_slice(),
        data("kms-sample-plaintext.bin").as_slice()
    );
}

#[test]
fn kms_addresses_the_recipient_by_sha256_of_the_spki() {
    let key = sample_key();
    assert_eq!(key.public_key_der().len(), 294);
    // The rid of the sample sits at offset 33 (after `80 20`), see tests/data/README.md.
    let sample = data("kms-sample.ber");
    assert_eq!(&sample[31..33], &[0x80, 0x20]);
    assert_eq!(
        &sample[33..65],
        subject_key_identifier(key.public_key_der()).as_slice()
    );
    assert_eq!(&sample[33..65], key.subject_key_identifier().as_slice());
}

#[test]
fn definite_length_der_form_of_the_sample_opens_too() {
    // `openssl cms -cmsout -outform DER` re-encoded the sample with definite lengths.
    let der = data("kms-sample-as.der");
    assert_eq!(der[1], 0x82, "fixture is definite-length");
    let plaintext = open_ciphertext_for_recipient(&sample_key(), &der).unwrap();
    assert_eq!(
        plaintext.as_slice(),
        data("kms-sample-plaintext.bin").as_slice()
    );
}

#[test]
fn openssl_envelopes_open_in_both_encodings() {
    let key = sample_key();
    // Streaming BER whose 3000-byte content is split into two OCTET STRING segments.
    let streamed = open_ciphertext_for_recipient(&key, &data("openssl-oaep-stream.ber")).unwrap();
    assert_eq!(
        streamed.as_slice(),
        data("openssl-plaintext-3000.bin").as_slice()
    );
    let der = open_ciphertext_for_recipient(&key, &data("openssl-oaep.der")).unwrap();
    assert_eq!(der.as_slice(), data("openssl-plaintext-100.bin").as_slice());
}

#[test]
fn pkcs1_v15_key_transport_is_refused_not_tried() {
    let err =
        open_ciphertext_for_recipient(&sample_key(), &data("openssl-pkcs1v15.der")).unwrap_err();
    assert_eq!(
        err,
        RecipientError::UnsupportedAlgorithm(
            "PKCS#1 v1.5 key transport (rsaEncryption) is refused"
        )
    );
}

#[test]
fn oaep_with_sha1_defaults_is_refused() {
    let err =
        open_ciphertext_for_recipient(&sample_key(), &data("openssl-oaep-sha1.der")).unwrap_err();
    assert!(
        matches!(err, RecipientError::UnsupportedAlgorithm(_)),
        "{err:?}"
    );
}

#[test]
fn aes_128_content_is_refused() {
    let err =
        open_ciphertext_for_recipient(&sample_key(), &data("openssl-aes128.der")).unwrap_err();
    assert_eq!(
        err,
        RecipientError::UnsupportedAlgorithm("content encryption is not AES-256-CBC")
    );
}

#[test]
fn a_fresh_key_is_not_the_recipient_of_the_sample() {
    let other = vettid_recipient::RecipientKey::generate().unwrap();
    assert_eq!(
        open_ciphertext_for_recipient(&other, &data("kms-sample.ber")),
        Err(RecipientError::RecipientMismatch)
    );
}

#[test]
fn errors_and_debug_never_show_key_or_plaintext_bytes() {
    let key = sample_key();
    let shown = format!("{key:?}");
    assert!(shown.contains("bits: 2048"), "{shown}");
    assert!(shown.len() < 200, "{shown}");
    let err = open_ciphertext_for_recipient(&key, &data("kms-sample.ber")[..100]).unwrap_err();
    assert!(!err.to_string().contains("179a"), "{err}");
}
