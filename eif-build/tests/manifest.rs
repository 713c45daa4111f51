//! `manifest add|sign|verify` and `dev-pcrs`, end to end through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const P0: &str = "0101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101aa";
const P1: &str = "0202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202bb";
const P2: &str = "0303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303cc";

/// A P-256 key pair as PKCS#8 PEM (private) and SPKI PEM (public) files.
fn p256_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    use openssl::{ec, nid::Nid, pkey::PKey};
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let (private, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    std::fs::write(&private, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&public, key.public_key_to_pem().unwrap()).unwrap();
    (private, public)
}

fn add(manifest: &Path, id: &str, from: &str, current: bool, pcr2: &str) -> std::process::Command {
    let mut c = bin();
    c.args(["manifest", "add", "--manifest"])
        .arg(manifest)
        .args(["--id", id, "--pcr0", P0, "--pcr1", P1, "--pcr2", pcr2])
        .args(["--valid-from", from, "--description", "test build"]);
    if current {
        c.arg("--current");
    }
    c
}

fn ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sign(manifest: &Path, key: &Path) -> std::process::Command {
    let mut c = bin();
    c.args(["manifest", "sign", "--manifest"])
        .arg(manifest)
        .arg("--key")
        .arg(key);
    c
}

fn verify(manifest: &Path, public: &Path, at: &str) -> std::process::Command {
    let mut c = bin();
    c.args(["manifest", "verify", "--manifest"])
        .arg(manifest)
        .arg("--pubkey")
        .arg(public)
        .args(["--at", at]);
    c
}

fn valid_ids(v: &Value) -> Vec<String> {
    v["valid_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn add_sign_verify_round_trip_with_a_superseded_set() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("pcrs.json");
    let (key, public) = p256_keys(dir.path(), "signer");

    ok(&mut add(
        &m,
        "2026-01-01-v1",
        "2026-01-01T00:00:00Z",
        true,
        P2,
    ));
    ok(&mut sign(&m, &key));
    let v = run_ok(&mut verify(&m, &public, "2026-01-05T00:00:00Z"));
    assert_eq!(v["version"], 1);
    assert_eq!(valid_ids(&v), ["2026-01-01-v1"]);
    assert_eq!(v["valid_sets"][0]["pcrs"]["pcr0"], P0);

    // A new current build supersedes v1 from its own valid_from on; the old signature is dropped.
    let p2b = P2.replace("cc", "dd");
    ok(&mut add(
        &m,
        "2026-01-10-v2",
        "2026-01-10T00:00:00Z",
        true,
        &p2b,
    ));
    let unsigned: Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    assert!(unsigned.get("signature").is_none());
    assert_eq!(unsigned["version"], 2, "version bumped");
    assert_eq!(
        unsigned["pcr_sets"][0]["valid_until"],
        "2026-01-10T00:00:00Z"
    );
    assert_eq!(unsigned["pcr_sets"][0]["is_current"], false);
    let e = run_err(&mut verify(&m, &public, "2026-01-05T00:00:00Z"));
    assert!(stderr(&e).contains("signature"), "{}", stderr(&e));

    let signed_out = dir.path().join("signed.json");
    ok(sign(&m, &key).arg("--out").arg(&signed_out));
    assert_eq!(
        valid_ids(&run_ok(&mut verify(
            &signed_out,
            &public,
            "2026-01-09T23:59:59Z"
        ))),
        ["2026-01-01-v1"]
    );
    assert_eq!(
        valid_ids(&run_ok(&mut verify(
            &signed_out,
            &public,
            "2026-01-10T00:00:00Z"
        ))),
        ["2026-01-10-v2"]
    );
    let e = run_err(&mut verify(&signed_out, &public, "2025-12-31T00:00:00Z"));
    assert!(stderr(&e).contains("no PCR set is valid"), "{}", stderr(&e));

    // A non-current set can overlap the current one (rolling update): both valid.
    ok(&mut add(
        &m,
        "canary",
        "2026-01-12T00:00:00Z",
        false,
        &P2.replace("cc", "ee"),
    ));
    ok(&mut sign(&m, &key));
    let v = run_ok(&mut verify(&m, &public, "2026-01-13T00:00:00Z"));
    assert_eq!(v["version"], 3);
    assert_eq!(valid_ids(&v), ["2026-01-10-v2", "canary"]);

    // The library's own verifier agrees with the CLI (same canonical bytes).
    let bytes = std::fs::read(&m).unwrap();
    let pem = std::fs::read_to_string(&public).unwrap();
    let der = openssl::pkey::PKey::public_key_from_pem(pem.as_bytes())
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let verified = vettid_attestation::manifest::Manifest::parse(&bytes)
        .unwrap()
        .verify(&der)
        .unwrap();
    assert_eq!(verified.version(), 3);

    // Rollback protection.
    let e = run_err(verify(&m, &public, "2026-01-13T00:00:00Z").args(["--min-version", "4"]));
    assert!(stderr(&e).contains("below the minimum"), "{}", stderr(&e));
}

#[test]
fn a_tampered_manifest_or_wrong_key_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("pcrs.json");
    let (key, public) = p256_keys(dir.path(), "signer");
    let (_, other_public) = p256_keys(dir.path(), "other");
    ok(&mut add(&m, "v1", "2026-01-01T00:00:00Z", true, P2));
    ok(&mut sign(&m, &key));
    run_ok(&mut verify(&m, &public, "2026-02-01T00:00:00Z"));

    let e = run_err(&mut verify(&m, &other_public, "2026-02-01T00:00:00Z"));
    assert!(stderr(&e).contains("does not verify"), "{}", stderr(&e));

    let text = std::fs::read_to_string(&m).unwrap();
    for (from, to) in [
        ("cc\"", "cd\""),
        ("\"version\":1", "\"version\":9"),
        ("\"is_current\":true", "\"is_current\":false"),
    ] {
        assert!(text.contains(from), "{from} in {text}");
        std::fs::write(&m, text.replacen(from, to, 1)).unwrap();
        let e = run_err(&mut verify(&m, &public, "2026-02-01T00:00:00Z"));
        assert!(
            stderr(&e).contains("does not verify"),
            "{from}: {}",
            stderr(&e)
        );
    }
}

#[test]
fn bad_manifest_inputs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("pcrs.json");
    let e = run_err(&mut add(&m, "v1", "2026-01-01T00:00:00Z", true, "not-hex"));
    assert!(stderr(&e).contains("PCR"), "{}", stderr(&e));
    assert!(!m.exists(), "nothing written on error");
    let e = run_err(&mut add(&m, "v1", "last tuesday", true, P2));
    assert!(stderr(&e).contains("RFC 3339"), "{}", stderr(&e));

    ok(&mut add(&m, "v1", "2026-01-01T00:00:00Z", true, P2));
    let e = run_err(&mut add(&m, "v1", "2026-01-02T00:00:00Z", false, P2));
    assert!(stderr(&e).contains("already exists"), "{}", stderr(&e));

    let bad_key = dir.path().join("bad.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = run_err(&mut sign(&m, &bad_key));
    assert!(
        stderr(&e).contains("not a P-256 private key"),
        "{}",
        stderr(&e)
    );
    let e = run_err(&mut sign(&m, &dir.path().join("missing.pem")));
    assert!(
        stderr(&e).contains("cannot read key file"),
        "{}",
        stderr(&e)
    );

    let (_, public) = p256_keys(dir.path(), "k");
    let e = run_err(&mut verify(&m, &bad_key, "2026-02-01T00:00:00Z"));
    assert!(stderr(&e).contains("public key"), "{}", stderr(&e));
    let e = run_err(&mut verify(&m, &public, "2026-02-01T00:00:00Z"));
    assert!(
        stderr(&e).contains("signature"),
        "unsigned manifest: {}",
        stderr(&e)
    );
}

#[test]
fn dev_pcrs_are_the_mock_nsm_values_for_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("vettid-enclave");
    std::fs::write(&binary, fixed_bytes(7, 10_000)).unwrap();
    let out = run_ok(bin().arg("dev-pcrs").arg("--binary").arg(&binary));
    let mock = vettid_nsm::MockPcrs::from_measurement(&std::fs::read(&binary).unwrap());
    for i in 0..3u16 {
        assert_eq!(
            out["Measurements"][format!("PCR{i}")],
            hex::encode(mock.get(i).unwrap())
        );
    }
    assert_eq!(out["Source"], "mock-nsm");

    std::fs::write(&binary, fixed_bytes(8, 10_000)).unwrap();
    let rebuilt = run_ok(bin().arg("dev-pcrs").arg("--binary").arg(&binary));
    assert_ne!(out["Measurements"]["PCR0"], rebuilt["Measurements"]["PCR0"]);

    let e = run_err(
        bin()
            .arg("dev-pcrs")
            .arg("--binary")
            .arg(dir.path().join("nope")),
    );
    assert!(
        stderr(&e).contains("cannot open binary file"),
        "{}",
        stderr(&e)
    );
}
