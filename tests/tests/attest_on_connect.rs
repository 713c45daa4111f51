//! The parent checks the enclave's attestation on every connect and serves nothing until it
//! passes: wrong PCRs, or an untrusted (mock) root without dev mode, keep the enclave out; the
//! right signed manifest lets it in, and reaches apps as `expected_pcrs`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_nsm::MockPcrs;
use vettid_tests::{bin_path, request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(10);

/// PCR0/1/2 (hex) a dev enclave binary reports: the mock derives them from the binary itself.
fn dev_pcrs() -> [String; 3] {
    let pcrs = MockPcrs::from_measurement(&std::fs::read(bin_path("vettid-enclave")).unwrap());
    [0, 1, 2].map(|i| hex::encode(pcrs.get(i).unwrap()))
}

/// Writes a manifest listing `pcrs`, signed with a fixed test key; returns (manifest path, key
/// path, manifest JSON).
fn signed_manifest(dir: &std::path::Path, pcrs: &[String; 3]) -> (String, String, Value) {
    let unsigned = json!({
        "version": 7,
        "timestamp": "2026-11-01T00:00:00Z",
        "pcr_sets": [{
            "id": "test-release",
            "pcr0": pcrs[0], "pcr1": pcrs[1], "pcr2": pcrs[2],
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": null,
            "is_current": true,
            "description": "the enclave under test"
        }]
    });
    let key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let signed =
        vettid_attestation::manifest::sign_manifest(unsigned.to_string().as_bytes(), &key).unwrap();
    let manifest = dir.join("manifest.json");
    let public = dir.join("manifest-key.sec1");
    std::fs::write(&manifest, &signed).unwrap();
    std::fs::write(
        &public,
        key.verifying_key().to_encoded_point(false).as_bytes(),
    )
    .unwrap();
    (
        manifest.display().to_string(),
        public.display().to_string(),
        serde_json::from_slice(&signed).unwrap(),
    )
}

fn start(attestation_toml: String) -> System {
    System::start(SystemOptions {
        attestation_toml: Some(attestation_toml),
        allow_unhealthy: true,
        ..Default::default()
    })
}

/// Waits for `/health` to settle on a refusal and returns its reasons.
fn refusal_reasons(sys: &System) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some((503, h)) = sys.health() {
            let reasons = h["reasons"].to_string();
            if (reasons.contains("attestation") && h["subscribed"] == true)
                || Instant::now() > deadline
            {
                assert_eq!(h["enclave_connected"], false, "{h}");
                assert!(h["enclave_attested"].is_null(), "{h}");
                return reasons;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no refusal reported: {:?}",
            sys.health()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_signed_manifest_lets_the_enclave_in_and_reaches_apps() {
    let files = tempfile::tempdir().unwrap();
    let pcrs = dev_pcrs();
    let (manifest, key, manifest_json) = signed_manifest(files.path(), &pcrs);
    let sys = start(format!(
        "[attestation]\ndev_mode = true\ndev_trust_root = \"{{MOCK_ROOT}}\"\nmanifest = \"{manifest}\"\nmanifest_public_key = \"{key}\"\n"
    ));
    assert!(sys.wait_healthy(LIMIT), "{:?}", sys.health());
    let (_, health) = sys.health().unwrap();
    assert_eq!(health["enclave_attested"]["pcr_set"], "test-release");
    assert_eq!(health["enclave_attested"]["pcr0"], pcrs[0].as_str());
    let c = sys.client().await;
    let v = request_json(
        &c,
        "enclave.attestation.request",
        json!({"nonce": B64.encode([1u8; 32])}),
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(
        v["expected_pcrs"], manifest_json,
        "apps get the manifest the parent was configured with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_without_the_enclaves_pcrs_keeps_it_out() {
    let files = tempfile::tempdir().unwrap();
    let other = ["ab".repeat(48), "cd".repeat(48), "ef".repeat(48)];
    let (manifest, key, _) = signed_manifest(files.path(), &other);
    let sys = start(format!(
        "[attestation]\ndev_mode = true\ndev_trust_root = \"{{MOCK_ROOT}}\"\nmanifest = \"{manifest}\"\nmanifest_public_key = \"{key}\"\n"
    ));
    let reasons = refusal_reasons(&sys);
    assert!(reasons.contains("PCR"), "{reasons}");
    let c = sys.client().await;
    let mut answer = Err(String::new());
    for _ in 0..50 {
        answer = request_json(&c, "enclave.health", json!({}), LIMIT).await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = answer.unwrap();
    assert_eq!(
        v["code"], "enclave_unavailable",
        "nothing is forwarded to an unverified enclave: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dev_mode_the_mock_root_is_not_trusted() {
    let pcrs = dev_pcrs();
    let sys = start(format!(
        "[[attestation.pcr_sets]]\nid = \"exact\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
        pcrs[0], pcrs[1], pcrs[2]
    ));
    let reasons = refusal_reasons(&sys);
    assert!(reasons.to_lowercase().contains("root"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_pcr_sets_let_the_matching_enclave_in() {
    let pcrs = dev_pcrs();
    let sys = start(format!(
        "[attestation]\ndev_mode = true\ndev_trust_root = \"{{MOCK_ROOT}}\"\n[[attestation.pcr_sets]]\nid = \"exact\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
        pcrs[0], pcrs[1], pcrs[2]
    ));
    assert!(sys.wait_healthy(LIMIT), "{:?}", sys.health());
    assert_eq!(
        sys.health().unwrap().1["enclave_attested"]["pcr_set"],
        "exact"
    );
}

#[test]
fn a_tampered_manifest_stops_the_parent_at_start_up() {
    let files = tempfile::tempdir().unwrap();
    let (manifest, key, _) = signed_manifest(files.path(), &dev_pcrs());
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"version\":7", "\"version\":8");
    std::fs::write(&manifest, text).unwrap();
    let config = files.path().join("parent.toml");
    std::fs::write(
        &config,
        format!("[nats]\nurl = \"nats://127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:0\"\n[attestation]\nmanifest = \"{manifest}\"\nmanifest_public_key = \"{key}\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(bin_path("vettid-parent"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
