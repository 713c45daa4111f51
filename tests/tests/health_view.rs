//! `vettid health`, the operators' one view, against the real system (nats-server, dev enclave
//! with the vault and the local KMS, parent with its tunnel and fs object store): OK when all is
//! well; DEGRADED with exit 1 when the object store breaks, and OK again once it is repaired;
//! the attestation verified against a signed manifest; bad flags refused before any network.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vettid_nsm::MockPcrs;
use vettid_tests::kms::KmsOptions;
use vettid_tests::{bin_path, free_port, System, SystemOptions};

/// Bound of one `vettid health` run (it bounds itself by `--timeout-ms` too).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long a change may take to show: the parent caches its storage probe for 3 s.
const SETTLE: Duration = Duration::from_secs(20);

async fn vettid(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(bin_path("vettid"));
    cmd.args(args).kill_on_drop(true);
    tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .expect("vettid health finished in time")
        .expect("run vettid")
}

/// `vettid health` against `sys`, trusting the dev mock root, plus `extra`.
async fn health(sys: &System, extra: &[&str]) -> Output {
    let parent = format!("http://127.0.0.1:{}", sys.http_port);
    let root = sys.mock_root_pem().display().to_string();
    let nats = sys.nats.url();
    let mut args = vec![
        "health",
        "--nats",
        &nats,
        "--timeout-ms",
        "5000",
        "--parent-url",
        &parent,
        "--dev-root",
        &root,
    ];
    args.extend_from_slice(extra);
    vettid(&args).await
}

async fn health_json(sys: &System, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = health(sys, &args).await;
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// Polls until the verdict is `want`; returns the exit code and report.
async fn wait_for_verdict(sys: &System, want: &str) -> (Option<i32>, Value) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (code, v) = health_json(sys, &[]).await;
        if v["verdict"] == want || Instant::now() > deadline {
            assert_eq!(v["verdict"], want, "{v:#}");
            return (code, v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn vault_system() -> System {
    System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        ..SystemOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_view_is_ok_then_degraded_while_the_object_store_is_broken_then_ok_again() {
    let sys = vault_system();

    let (code, v) = wait_for_verdict(&sys, "OK").await;
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["reasons"], json!([]));
    let p = &v["parent"];
    assert_eq!(p["status"], "ok", "{p:#}");
    assert_eq!(p["enclave_connected"], true);
    assert_eq!(p["attestation_verified"], true);
    assert_eq!(p["attestation_policy"]["against"], "dev_any_pcrs");
    assert_eq!(p["attestation_policy"]["dev_trust_root"], true);
    assert_eq!(
        (&p["subscribed"], &p["draining"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(p["last_error"], Value::Null);
    let e = &v["enclave"];
    assert_eq!(e["status"], "ok", "{e:#}");
    assert_eq!(e["phase"], "serving");
    assert_eq!(e["kms_configured"], true);
    assert!(e["kms_outcomes"].is_object());
    assert!(e["total_vaults"].as_u64().unwrap() > 0);
    for field in [
        "version",
        "uptime_seconds",
        "active_vaults",
        "unlocked_vaults",
    ] {
        assert!(!e[field].is_null(), "enclave.{field} missing: {e:#}");
    }
    let a = &v["attestation"];
    assert_eq!(a["status"], "ok", "{a:#}");
    assert_eq!((&a["mode"], &a["dev"]), (&json!("dev"), &json!(true)));
    assert_eq!(
        a["nonce"].as_str().unwrap().len(),
        64,
        "a fresh 32-byte nonce"
    );
    assert!(a["summary"].as_str().unwrap().contains("PCRs NOT checked"));
    assert_eq!(
        a["pcr0"], p["attested"]["pcr0"],
        "the parent saw the same image"
    );
    let s = &v["storage"];
    assert_eq!(
        (&s["status"], &s["backend"], &s["reachable"]),
        (&json!("ok"), &json!("fs"), &json!(true)),
        "{s:#}"
    );
    let k = &v["kms"];
    assert_eq!(k["status"], "ok", "{k:#}");
    assert_eq!(k["enclave_configured"], true);
    assert_eq!(k["parent"]["configured"], true);
    assert_eq!(k["parent"]["allow_entries"], 1);
    assert!(k["parent"]["tunnels"].is_object());

    // The human table: one line per check, DEV labelled, the verdict last.
    let out = health(&sys, &[]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("--- vettid health, all well ---\n{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for (line, name) in lines.iter().zip([
        "parent",
        "enclave",
        "attestation",
        "storage",
        "kms",
        "verdict",
    ]) {
        assert!(line.starts_with(name), "{line}");
    }
    assert!(lines[2].contains("OK DEV"), "{}", lines[2]);
    assert_eq!(lines[5], "verdict      OK");

    // Break the object store: a file where its root directory was.
    let root = sys.storage_root();
    let aside = root.with_extension("aside");
    std::fs::rename(&root, &aside).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let (code, v) = wait_for_verdict(&sys, "DEGRADED").await;
    assert_eq!(code, Some(1), "{v:#}");
    let s = &v["storage"];
    assert_eq!(
        (&s["status"], &s["reachable"]),
        (&json!("degraded"), &json!(false))
    );
    assert!(
        s["error"].as_str().unwrap().ends_with("not a directory"),
        "{s:#}"
    );
    assert!(v["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("storage: fs unreachable"));
    assert_eq!(v["reasons"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(
        v["parent"]["status"], "ok",
        "liveness does not depend on storage"
    );
    let out = health(&sys, &[]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("--- vettid health, object store broken ---\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.ends_with("verdict      DEGRADED\n"), "{stdout}");
    assert!(
        stderr.contains("health DEGRADED: storage: fs unreachable"),
        "{stderr}"
    );

    // Repair it: OK again.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&aside, &root).unwrap();
    let (code, _) = wait_for_verdict(&sys, "OK").await;
    assert_eq!(code, Some(0));

    // Without the parent: parent and storage not checked, KMS from the enclave alone.
    let (code, v) = health_json(&sys, &["--no-parent"]).await;
    assert_eq!((code, &v["verdict"]), (Some(0), &json!("OK")), "{v:#}");
    assert_eq!(v["parent"]["status"], "not_checked");
    assert_eq!(v["storage"]["status"], "not_checked");
    assert_eq!(v["kms"]["parent"], Value::Null);

    // A parent URL nobody answers on: DOWN, exit 1.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let nats = sys.nats.url();
    let out = vettid(&["health", "--json", "--nats", &nats, "--parent-url", &nobody]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (out.status.code(), &v["verdict"]),
        (Some(1), &json!("DOWN")),
        "{v:#}"
    );
    assert_eq!(v["parent"]["status"], "down");
    assert!(v["parent"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
}

/// PCR0/1/2 (hex) the dev enclave binary reports: the mock derives them from the binary.
fn dev_pcrs() -> [String; 3] {
    let pcrs = MockPcrs::from_measurement(&std::fs::read(bin_path("vettid-enclave")).unwrap());
    [0, 1, 2].map(|i| hex::encode(pcrs.get(i).unwrap()))
}

/// A manifest listing `pcrs` under `id`, signed with a fixed test key; returns the manifest
/// path and the key path (hex SEC1, one of the forms `--manifest-key` takes).
fn signed_manifest(dir: &Path, id: &str, pcrs: &[String; 3]) -> (String, String) {
    let unsigned = json!({
        "version": 3,
        "timestamp": "2026-01-01T00:00:00Z",
        "pcr_sets": [{
            "id": id, "pcr0": pcrs[0], "pcr1": pcrs[1], "pcr2": pcrs[2],
            "valid_from": "2025-01-01T00:00:00Z", "valid_until": null,
            "is_current": true, "description": "health view test"
        }]
    });
    let key = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
    let signed =
        vettid_attestation::manifest::sign_manifest(unsigned.to_string().as_bytes(), &key).unwrap();
    let manifest = dir.join(format!("{id}.json"));
    let public = dir.join("manifest-key.hex");
    std::fs::write(&manifest, signed).unwrap();
    std::fs::write(
        &public,
        hex::encode(key.verifying_key().to_encoded_point(false).as_bytes()),
    )
    .unwrap();
    (manifest.display().to_string(), public.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_is_checked_against_the_manifest_and_a_wrong_image_is_down() {
    let sys = vault_system();
    let dir = sys.dir.path();
    // The enclave's first KMS key check runs at start; until it answers the report is DEGRADED
    // for KMS, whatever the attestation says (it raced this test on a busy machine).
    wait_for_verdict(&sys, "OK").await;

    let (manifest, key) = signed_manifest(dir, "this-build", &dev_pcrs());
    let (code, v) = health_json(&sys, &["--manifest", &manifest, "--manifest-key", &key]).await;
    let a = &v["attestation"];
    assert_eq!((code, &a["status"]), (Some(0), &json!("ok")), "{v:#}");
    assert_eq!(a["mode"], "manifest");
    assert_eq!(a["matched_pcr_set"], "this-build");
    assert_eq!(a["manifest_version"], 3);
    assert_eq!(a["dev"], true, "the mock root is still a dev root");

    let other = ["aa".repeat(48), "bb".repeat(48), "cc".repeat(48)];
    let (manifest, key) = signed_manifest(dir, "other-build", &other);
    let (code, v) = health_json(&sys, &["--manifest", &manifest, "--manifest-key", &key]).await;
    assert_eq!((code, &v["verdict"]), (Some(1), &json!("DOWN")), "{v:#}");
    let a = &v["attestation"];
    assert_eq!(a["status"], "down");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .starts_with("verification failed"),
        "{a:#}"
    );

    // Without --manifest or --dev-root the attestation is skipped, and says so.
    let nats = sys.nats.url();
    let parent = format!("http://127.0.0.1:{}", sys.http_port);
    let out = vettid(&["health", "--nats", &nats, "--parent-url", &parent]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("attestation  -         not checked (no --manifest)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn bad_health_flags_are_usage_errors_before_any_network() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{not a manifest").unwrap();
    let key = dir.path().join("key.hex");
    std::fs::write(&key, "04").unwrap();
    let (junk, key) = (junk.display().to_string(), key.display().to_string());
    // Nothing listens on port 1: had any of these reached the network it would exit 6.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--parent-url", "127.0.0.1:8080"], "no http:// scheme"),
        (
            vec!["--parent-url", "https://127.0.0.1:8080"],
            "plain http://",
        ),
        (
            vec!["--parent-url", "http://127.0.0.1:8080/health"],
            "base URL only",
        ),
        (vec!["--parent-url", "http://127.0.0.1:70000"], "bad port"),
        (
            vec!["--dev-root", "/nonexistent/mock-root.pem"],
            "cannot read /nonexistent/mock-root.pem",
        ),
        (
            vec!["--manifest", "/nonexistent/m.json", "--manifest-key", &key],
            "cannot read /nonexistent/m.json",
        ),
        (
            vec!["--manifest", &junk, "--manifest-key", &key],
            "manifest",
        ),
        (vec!["--manifest", &junk], "--manifest-key"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["health", "--nats", "nats://127.0.0.1:1"];
        args.extend_from_slice(&extra);
        let out = vettid(&args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {stdout}{stderr}");
        assert!(stderr.contains(expect), "{extra:?}: {stderr}");
        assert!(stdout.is_empty(), "{extra:?}: no half report: {stdout}");
    }
}
