//! The three real AWS documents: they verify at their own time, and every policy or tampering failure is typed.

mod common;

use common::*;
use vettid_attestation::{
    parse, verify, Error, Malformed, PcrSet, Policy, AWS_NITRO_ROOT_SHA256_HEX,
};

#[test]
fn every_sample_verifies_at_its_own_timestamp() {
    for (i, (doc, ts, p0, _, p2)) in SAMPLES.into_iter().enumerate() {
        let verified =
            verify(doc, &sample_policy(i), ts).unwrap_or_else(|e| panic!("sample-{}: {e}", i + 1));
        assert_eq!(verified.timestamp_ms, ts);
        assert_eq!(verified.digest, "SHA384");
        assert_eq!(verified.matched_pcr_set, Some(format!("sample-{}", i + 1)));
        assert_eq!(hex::encode(&verified.pcrs[&0]), p0);
        assert_eq!(hex::encode(&verified.pcrs[&2]), p2);
        // leaf, instance, zonal, regional, AWS root
        assert_eq!(verified.chain.len(), 5);
        let root = verified.chain.last().unwrap();
        assert_eq!(hex::encode(root.sha256), AWS_NITRO_ROOT_SHA256_HEX);
        assert!(
            root.subject.contains("CN=aws.nitro-enclaves"),
            "{}",
            root.subject
        );
        assert!(verified.chain[0].not_before_ms <= ts && ts <= verified.chain[0].not_after_ms);
        assert!(verified.module_id.starts_with("i-"));
    }
}

#[test]
fn sample_quirks_are_reported_as_they_are() {
    let one = verify(SAMPLES[0].0, &sample_policy(0), SAMPLES[0].1).unwrap();
    assert_eq!(
        (
            one.pcrs.len(),
            one.public_key.map(|k| k.len()),
            one.user_data.map(|u| u.len()),
            one.nonce
        ),
        (16, Some(130), Some(32), None)
    );
    let two = verify(SAMPLES[1].0, &sample_policy(1), SAMPLES[1].1).unwrap();
    assert_eq!(
        (
            two.pcrs.len(),
            two.public_key.map(|k| k.len()),
            two.user_data.map(|u| u.len())
        ),
        (17, Some(32), Some(0))
    );
    let three = verify(SAMPLES[2].0, &sample_policy(2), SAMPLES[2].1).unwrap();
    assert_eq!(
        (
            three.public_key,
            three.user_data,
            three.nonce.map(|n| n.len())
        ),
        (None, None, Some(256))
    );
}

#[test]
fn every_sample_is_stale_today_but_its_chain_is_judged_at_document_time() {
    for (i, (doc, ..)) in SAMPLES.into_iter().enumerate() {
        assert!(matches!(
            verify(doc, &sample_policy(i), TODAY_MS),
            Err(Error::Stale { .. })
        ));
        // An unbounded age shows the chain itself is fine: it is checked at the document's timestamp.
        let archival = sample_policy(i).with_max_age_ms(u64::MAX);
        assert!(verify(doc, &archival, TODAY_MS).is_ok());
    }
}

#[test]
fn freshness_window_is_measured_against_the_callers_clock() {
    let (doc, ts, ..) = SAMPLES[0];
    let policy = sample_policy(0);
    assert!(verify(doc, &policy, ts + Policy::DEFAULT_MAX_AGE_MS).is_ok());
    assert!(matches!(
        verify(doc, &policy, ts + Policy::DEFAULT_MAX_AGE_MS + 1),
        Err(Error::Stale { .. })
    ));
    assert!(verify(doc, &policy, ts - Policy::DEFAULT_MAX_FUTURE_SKEW_MS).is_ok());
    assert!(matches!(
        verify(doc, &policy, ts - 3_600_000),
        Err(Error::FromTheFuture { .. })
    ));
}

#[test]
fn wrong_pcr_set_is_a_mismatch_for_every_sample() {
    for (i, (doc, ts, ..)) in SAMPLES.into_iter().enumerate() {
        let other = sample_set((i + 1) % 3);
        assert_eq!(
            verify(doc, &Policy::new([other]), ts),
            Err(Error::PcrMismatch)
        );
    }
}

#[test]
fn empty_pcr_list_is_an_error_for_every_sample() {
    for (doc, ts, ..) in SAMPLES {
        assert_eq!(
            verify(doc, &Policy::new([]), ts),
            Err(Error::EmptyPcrPolicy)
        );
    }
}

#[test]
fn second_matching_set_is_reported_and_extra_pcrs_must_match() {
    let (doc, ts, ..) = SAMPLES[2];
    let with_pcr8 = sample_set(2)
        .with_pcr(8, hex::decode(SAMPLE3_PCR8).unwrap())
        .unwrap();
    let verified = verify(doc, &Policy::new([sample_set(0), with_pcr8]), ts).unwrap();
    assert_eq!(verified.matched_pcr_set.as_deref(), Some("sample-3"));
    let wrong_pcr8 = sample_set(2).with_pcr(8, vec![0x42; 48]).unwrap();
    assert_eq!(
        verify(doc, &Policy::new([wrong_pcr8]), ts),
        Err(Error::PcrMismatch)
    );
    // PCR16 is only in sample-2; a set requiring it cannot match sample-1.
    let needs_pcr16 = sample_set(0).with_pcr(16, vec![1; 48]).unwrap();
    assert_eq!(
        verify(SAMPLES[0].0, &Policy::new([needs_pcr16]), SAMPLES[0].1),
        Err(Error::PcrMismatch)
    );
}

#[test]
fn skipping_the_pcr_check_needs_the_named_constructor() {
    let (doc, ts, ..) = SAMPLES[1];
    let verified = verify(doc, &Policy::skip_pcr_check_unsafe(), ts).unwrap();
    assert_eq!(verified.matched_pcr_set, None);
}

#[test]
fn expected_binding_values_are_compared() {
    let (doc, ts, ..) = SAMPLES[2];
    let nonce = parse(doc).unwrap().nonce.unwrap();
    assert!(verify(doc, &sample_policy(2).expect_nonce(nonce.clone()), ts).is_ok());
    let mut other = nonce;
    other[0] ^= 1;
    assert_eq!(
        verify(doc, &sample_policy(2).expect_nonce(other), ts),
        Err(Error::NonceMismatch)
    );
    assert_eq!(
        verify(doc, &sample_policy(2).expect_user_data(vec![]), ts),
        Err(Error::UserDataMismatch)
    );

    let (doc, ts, ..) = SAMPLES[1];
    let pk = parse(doc).unwrap().public_key.unwrap();
    assert!(verify(
        doc,
        &sample_policy(1)
            .expect_user_data(vec![])
            .expect_public_key(pk),
        ts
    )
    .is_ok());
    assert_eq!(
        verify(doc, &sample_policy(1).expect_public_key(vec![0; 32]), ts),
        Err(Error::PublicKeyMismatch)
    );
}

#[test]
fn tampered_payload_byte_is_a_bad_signature() {
    let (doc, ts, ..) = SAMPLES[0];
    let text = b"i-02447a481344e9ec0";
    let at = doc.windows(text.len()).position(|w| w == text).unwrap();
    let mut tampered = doc.to_vec();
    tampered[at + 2] = b'1';
    assert_eq!(
        verify(&tampered, &sample_policy(0), ts),
        Err(Error::BadSignature)
    );
    // A PCR byte too: the last payload bytes before the signature are PCR/nonce content in every sample.
    let mut tampered = doc.to_vec();
    let sig_start = doc.len() - 96;
    tampered[sig_start - 200] ^= 0x01;
    assert!(matches!(
        verify(&tampered, &sample_policy(0), ts),
        Err(Error::BadSignature | Error::Malformed(_))
    ));
}

#[test]
fn tampered_signature_is_a_bad_signature() {
    for (i, (doc, ts, ..)) in SAMPLES.into_iter().enumerate() {
        let mut tampered = doc.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x80;
        assert_eq!(
            verify(&tampered, &sample_policy(i), ts),
            Err(Error::BadSignature)
        );
    }
}

#[test]
fn trailing_bytes_after_the_cose_structure_are_malformed() {
    let (doc, ts, ..) = SAMPLES[0];
    let mut padded = doc.to_vec();
    padded.push(0x00);
    assert_eq!(
        verify(&padded, &sample_policy(0), ts),
        Err(Error::Malformed(Malformed::TrailingBytes("COSE_Sign1")))
    );
    assert!(parse(&padded).is_err());
}

#[test]
fn tag_18_is_accepted_and_other_tags_refused() {
    for (i, (doc, ts, ..)) in SAMPLES.into_iter().enumerate() {
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(doc);
        assert!(verify(&tagged, &sample_policy(i), ts).is_ok());
        tagged[0] = 0xd8; // tag 98 (COSE_Sign) written with a one-byte argument
        tagged.insert(1, 98);
        assert_eq!(
            verify(&tagged, &sample_policy(i), ts),
            Err(Error::UnexpectedTag(98))
        );
    }
    let mut twice = vec![0xd2, 0xd2];
    twice.extend_from_slice(SAMPLES[0].0);
    assert!(verify(&twice, &sample_policy(0), SAMPLES[0].1).is_err());
}

#[test]
fn truncated_samples_never_verify() {
    let (doc, ts, ..) = SAMPLES[1];
    for len in [0, 1, 4, 100, doc.len() / 2, doc.len() - 1] {
        assert!(
            matches!(
                verify(&doc[..len], &sample_policy(1), ts),
                Err(Error::Malformed(_))
            ),
            "len {len}"
        );
    }
}

#[test]
fn parse_reports_fields_without_crypto() {
    let doc = parse(SAMPLES[0].0).unwrap();
    assert_eq!(doc.module_id, "i-02447a481344e9ec0-enc0199546b533fd5d0");
    assert_eq!(doc.timestamp_ms, SAMPLES[0].1);
    assert_eq!(doc.cabundle.len(), 4);
    assert_eq!(doc.digest, "SHA384");
    let three = parse(SAMPLES[2].0).unwrap();
    assert_eq!(hex::encode(&three.pcrs[&8]), SAMPLE3_PCR8);
}

#[test]
fn pcr_set_helpers_validate_input() {
    assert!(PcrSet::from_hex("x", "zz", "00", "00").is_err());
}
