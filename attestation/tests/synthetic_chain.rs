//! Chain rules on synthetic PKIs: trust anchor, bundle tampering, CA flag, pathLen, keyUsage and validity.

mod common;

use ciborium::Value;
use common::*;
use vettid_attestation::{verify, Error, Policy};
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

/// Verifies a document from `pki` whose cabundle is `bundle`, trusting only `trusted` as extra root.
fn run(
    pki: &Pki,
    bundle: Vec<Vec<u8>>,
    trusted: &[u8],
) -> Result<vettid_attestation::Verified, Error> {
    let mut fields = payload_fields(pki);
    set_field(
        &mut fields,
        "cabundle",
        Value::Array(bundle.into_iter().map(Value::Bytes).collect()),
    );
    let policy = Policy::new([synth_set()])
        .with_extra_root(trusted.to_vec())
        .unwrap();
    verify(&document(pki, fields), &policy, SYNTH_TS_MS)
}

fn tweaked(tweak: impl Fn(usize, &mut CertSpec)) -> Result<vettid_attestation::Verified, Error> {
    let pki = Pki::build(tweak);
    run(&pki, pki.cabundle(), &pki.root)
}

#[test]
fn bundle_missing_an_intermediate_is_a_bad_chain() {
    let pki = Pki::default_chain();
    let mut bundle = pki.cabundle();
    bundle.remove(2);
    assert!(matches!(
        run(&pki, bundle, &pki.root),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn chain_ending_at_a_self_signed_root_in_cabundle_0_is_untrusted() {
    // The attacker's PKI is complete and correct, and its own root is cabundle[0]; we trust another root.
    let attacker = Pki::default_chain();
    let ours = Pki::build(|i, spec| {
        if i == 0 {
            spec.subject = "CN=other root,O=Elsewhere";
        }
    });
    assert_eq!(
        run(&attacker, attacker.cabundle(), &ours.root),
        Err(Error::UntrustedRoot)
    );
}

#[test]
fn fake_root_with_the_trusted_roots_name_is_untrusted() {
    // Same subject names as the trusted PKI, different keys: name matching alone must not be enough.
    let trusted = Pki::default_chain();
    let fake = {
        let keys: Vec<_> = (11..=15).map(key).collect();
        let specs = [
            CertSpec::ca(ROOT, None),
            CertSpec::ca(CA_NAMES[0], Some(2)),
            CertSpec::ca(CA_NAMES[1], Some(1)),
            CertSpec::ca(CA_NAMES[2], Some(0)),
            CertSpec::leaf(LEAF),
        ];
        let root = issue(&specs[0], spki(&keys[0]), None, &keys[0], 1);
        let cas: Vec<_> = (1..=3)
            .map(|i| {
                issue(
                    &specs[i],
                    spki(&keys[i]),
                    Some((specs[i - 1].subject, &keys[i - 1])),
                    &keys[i],
                    2,
                )
            })
            .collect();
        let leaf = issue(
            &specs[4],
            spki(&keys[4]),
            Some((specs[3].subject, &keys[3])),
            &keys[4],
            3,
        );
        Pki {
            root,
            cas,
            leaf,
            leaf_key: keys[4].clone(),
        }
    };
    assert_eq!(
        run(&fake, fake.cabundle(), &trusted.root),
        Err(Error::UntrustedRoot)
    );
    // Even with the genuine root placed in cabundle[0], the fake intermediates do not chain to it.
    let mut bundle = fake.cabundle();
    bundle[0] = trusted.root.clone();
    assert!(matches!(
        run(&fake, bundle, &trusted.root),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn foreign_cabundle_0_is_ignored_when_the_path_reaches_a_trusted_root() {
    let pki = Pki::default_chain();
    let other = Pki::build(|i, spec| {
        if i == 0 {
            spec.subject = "CN=other root,O=Elsewhere";
        }
    });
    let mut bundle = pki.cabundle();
    bundle[0] = other.root.clone();
    let verified = run(&pki, bundle, &pki.root).unwrap();
    assert!(verified
        .chain
        .last()
        .unwrap()
        .subject
        .contains("test.nitro-enclaves"));
}

#[test]
fn bundle_order_does_not_matter() {
    let pki = Pki::default_chain();
    let mut bundle = pki.cabundle();
    bundle[1..].reverse();
    assert!(run(&pki, bundle, &pki.root).is_ok());
}

#[test]
fn intermediate_without_ca_flag_is_a_bad_chain() {
    assert!(matches!(
        tweaked(|i, s| if i == 2 {
            s.ca = Some(false)
        }),
        Err(Error::BadChain(_))
    ));
    assert!(matches!(
        tweaked(|i, s| if i == 2 {
            s.ca = None
        }),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn path_length_violation_is_a_bad_chain() {
    // The regional CA allows no sub-CA below it, yet two follow.
    assert!(matches!(
        tweaked(|i, s| if i == 1 {
            s.path_len = Some(0)
        }),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn intermediate_without_key_cert_sign_is_a_bad_chain() {
    let no_cert_sign = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::CRLSign);
    assert!(matches!(
        tweaked(|i, s| if i == 3 {
            s.key_usage = Some(no_cert_sign)
        }),
        Err(Error::BadChain(_))
    ));
    assert!(matches!(
        tweaked(|i, s| if i == 3 {
            s.key_usage = None
        }),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn leaf_without_digital_signature_or_used_as_ca_is_a_bad_chain() {
    let only_cert_sign = KeyUsage(KeyUsages::KeyCertSign.into());
    assert!(matches!(
        tweaked(|i, s| if i == 4 {
            s.key_usage = Some(only_cert_sign)
        }),
        Err(Error::BadChain(_))
    ));
    assert!(matches!(
        tweaked(|i, s| if i == 4 {
            s.ca = Some(true)
        }),
        Err(Error::BadChain(_))
    ));
}

#[test]
fn certificates_outside_validity_at_document_time_are_refused() {
    let expired_intermediate = tweaked(|i, s| {
        if i == 2 {
            s.validity = validity(-7200, -1)
        }
    });
    assert!(matches!(
        expired_intermediate,
        Err(Error::CertificateTime(_))
    ));
    let future_leaf = tweaked(|i, s| {
        if i == 4 {
            s.validity = validity(60, 3600)
        }
    });
    assert!(matches!(future_leaf, Err(Error::CertificateTime(_))));
    let expired_root = tweaked(|i, s| {
        if i == 0 {
            s.validity = validity(-7200, -1)
        }
    });
    assert!(matches!(expired_root, Err(Error::CertificateTime(_))));
}

#[test]
fn leaf_issued_by_the_root_directly_is_accepted() {
    let keys: Vec<_> = (1..=5).map(key).collect();
    let pki = Pki::default_chain();
    let leaf = issue(
        &CertSpec::leaf(LEAF),
        spki(&keys[4]),
        Some((ROOT, &keys[0])),
        &keys[4],
        7,
    );
    let short = Pki {
        root: pki.root.clone(),
        cas: vec![],
        leaf,
        leaf_key: keys[4].clone(),
    };
    assert!(run(&short, short.cabundle(), &short.root).is_ok());
}
