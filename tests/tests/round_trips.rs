//! Health and attestation through NATS → parent → Unix socket → enclave, for the Lambda and app
//! subjects, under concurrency.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use vettid_attestation::Policy;
use vettid_tests::{request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Verifies a document with the apps' verifier, trusting the dev mock root.
fn verify(sys: &System, doc: &[u8], nonce: &[u8]) -> vettid_attestation::Verified {
    let pem = std::fs::read_to_string(sys.mock_root_pem()).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let root = B64.decode(body).unwrap();
    let policy = Policy::skip_pcr_check_unsafe()
        .with_extra_root(root)
        .unwrap()
        .expect_nonce(nonce.to_vec());
    vettid_attestation::verify(doc, &policy, now_ms())
        .expect("document verifies against the mock root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_on_both_subjects_with_real_values() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    for subject in ["enclave.health", "enclave.health.check"] {
        let v = request_json(&c, subject, json!({}), LIMIT).await.unwrap();
        assert_eq!(v["healthy"], true, "{v}");
        for key in [
            "active_vaults",
            "total_vaults",
            "memory_used_mb",
            "memory_total_mb",
            "uptime_seconds",
        ] {
            assert!(v[key].is_u64(), "{key} in {v}");
        }
        assert!(v["memory_total_mb"].as_u64().unwrap() > 0);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["mock_nsm"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_attestation_returns_a_fresh_verifiable_document() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let nonce = [7u8; 32];
    let v = request_json(
        &c,
        "enclave.attestation.request",
        json!({"nonce": B64.encode(nonce)}),
        LIMIT,
    )
    .await
    .unwrap();
    let doc = B64
        .decode(v["attestation_document"].as_str().unwrap())
        .unwrap();
    let key = B64
        .decode(v["enclave_public_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        v["attestation"], v["attestation_document"],
        "legacy v1 name carries the same document"
    );
    assert_eq!(v["public_key"], v["enclave_public_key"]);
    assert_eq!(v["nonce"], B64.encode(nonce));
    assert!(v["timestamp"].is_string());
    // untagged COSE_Sign1 as the NSM emits it
    assert_eq!(&doc[..4], &[0x84, 0x44, 0xa1, 0x01]);
    let parsed = vettid_attestation::parse(&doc).unwrap();
    assert_eq!(parsed.nonce.as_deref(), Some(&nonce[..]));
    assert_eq!(parsed.public_key.as_deref(), Some(&key[..]));
    assert_eq!(key.len(), 32, "X25519 public key");
    let verified = verify(&sys, &doc, &nonce);
    assert!(verified.module_id.starts_with("mock-nsm-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_attestation_replies_and_publishes_for_the_app() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let guid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let mut app_inbox = c
        .subscribe(format!("OwnerSpace.{guid}.forApp.attestation.response"))
        .await
        .unwrap();
    c.flush().await.unwrap();
    let nonce = [9u8; 32];
    let req = json!({
        "id": "evt-123",
        "type": "attestation.request",
        "payload": {"nonce": B64.encode(nonce)},
        "timestamp": "2026-11-24T10:00:00Z",
    });
    let v = request_json(
        &c,
        &format!("OwnerSpace.{guid}.forVault.attestation"),
        req,
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(v["event_id"], "evt-123");
    assert_eq!(v["request_type"], "attestation");
    let doc = B64.decode(v["attestation"].as_str().unwrap()).unwrap();
    verify(&sys, &doc, &nonce);
    let published = tokio::time::timeout(LIMIT, app_inbox.next())
        .await
        .expect("publication")
        .unwrap();
    let p: Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(p, v, "the app subject gets the same reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attestations_never_share_a_key() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let mut keys = HashSet::new();
    for i in 0..20u8 {
        let v = request_json(
            &c,
            "enclave.attestation.request",
            json!({"nonce": B64.encode([i; 16])}),
            LIMIT,
        )
        .await
        .unwrap();
        assert!(
            keys.insert(v["public_key"].as_str().unwrap().to_string()),
            "key reused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_are_all_answered() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let mut calls = futures::stream::FuturesUnordered::new();
    for i in 0..500u32 {
        let c = c.clone();
        calls.push(async move {
            if i % 2 == 0 {
                request_json(&c, "enclave.health", json!({}), Duration::from_secs(30))
                    .await
                    .map(|v| v["healthy"] == true)
            } else {
                let nonce = B64.encode(i.to_be_bytes());
                request_json(
                    &c,
                    "enclave.attestation.request",
                    json!({"nonce": nonce.clone()}),
                    Duration::from_secs(30),
                )
                .await
                .map(|v| v["nonce"] == nonce)
            }
        });
    }
    let mut ok = 0;
    while let Some(r) = calls.next().await {
        assert_eq!(r, Ok(true));
        ok += 1;
    }
    assert_eq!(ok, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_overlap_inside_the_enclave() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                request_json(&c, "enclave.dev.sleep", json!({"ms": 500}), LIMIT).await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap()["slept_ms"], 500);
    }
    // 40 × 500 ms one at a time would take 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let health = request_json(&c, "enclave.health", json!({}), LIMIT)
        .await
        .unwrap();
    assert!(
        health["peak_requests_in_flight"].as_u64().unwrap() >= 20,
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cli_reports_health_and_attests() {
    let sys = System::start(SystemOptions::default());
    let cli = vettid_tests::bin_path("vettid");
    let out = std::process::Command::new(&cli)
        .args(["health", "--json", "--nats", &sys.nats.url()])
        .args([
            "--parent-url",
            &format!("http://127.0.0.1:{}", sys.http_port),
        ])
        .output()
        .unwrap();
    // This system has no KMS: the enclave is healthy, the overall verdict is DEGRADED (exit 1).
    let view: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(view["enclave"]["healthy"], true, "{view}");
    assert_eq!(view["verdict"], "DEGRADED", "{view}");
    assert_eq!(out.status.code(), Some(1));

    let doc_path = sys.dir.path().join("doc.cbor");
    let out = std::process::Command::new(&cli)
        .args([
            "attest",
            "--nats",
            &sys.nats.url(),
            "--nonce",
            "00112233",
            "--verify",
            "--any-pcrs",
            "--json",
        ])
        .arg("--root")
        .arg(sys.mock_root_pem())
        .arg("--out")
        .arg(&doc_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["nonce"], "00112233");

    // The saved document verifies offline with the enclave's own PCRs, and fails with others.
    let pcr = |i: &str| v["pcrs"][i].as_str().unwrap().to_string();
    let verify = |pcr0: &str| {
        std::process::Command::new(&cli)
            .arg("verify")
            .arg("--doc")
            .arg(&doc_path)
            .arg("--root")
            .arg(sys.mock_root_pem())
            .args([
                "--nonce",
                "00112233",
                "--expect-pcr0",
                pcr0,
                "--expect-pcr1",
                &pcr("1"),
                "--expect-pcr2",
                &pcr("2"),
            ])
            .output()
            .unwrap()
    };
    assert!(verify(&pcr("0")).status.success());
    let wrong = verify(&"ab".repeat(48));
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("verification failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_log_events_reach_the_parents_log_with_allow_listed_fields_only() {
    let sys = System::start(SystemOptions::default());
    let deadline = Instant::now() + LIMIT;
    let line = loop {
        let log = sys.parent.as_ref().unwrap().log();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("link up") && l.contains("enclave=true"))
        {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no forwarded enclave event in the parent log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("vettid_enclave::server"), "{line}");
    assert!(line.contains("peer="), "allow-listed field kept: {line}");
}
