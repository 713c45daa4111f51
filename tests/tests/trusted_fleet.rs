//! Three hosts (parent + enclave each) sharing one nats-server, one bucket, one KMS and one
//! trusted-store table (issue 12's fleet): each enclave opens the sealed credentials from the
//! shared bucket with its attested Recipient and reads the table through its own parent's tunnel,
//! and health says so. A host without the flags reports single-host mode. The stand-in never sees
//! the host's credentials: the parent lends `test`, the table accepts only the sealed principal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vettid_tests::kms::KmsOptions;
use vettid_tests::{request_json, System, SystemOptions};

/// `enclave.health` answers by module id until every one of `n` enclaves has answered `ready`.
async fn healths_until(
    c: &async_nats::Client,
    n: usize,
    ready: impl Fn(&Value) -> bool,
    limit: Duration,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + limit;
    let mut seen: HashMap<String, Value> = HashMap::new();
    while Instant::now() < deadline {
        if let Ok(v) = request_json(c, "enclave.health", json!({}), Duration::from_secs(3)).await {
            let id = v["module_id"].as_str().unwrap_or_default().to_owned();
            seen.insert(id, v);
        }
        if seen.len() == n && seen.values().all(&ready) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not every enclave became ready: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_one_table_through_their_own_tunnels() {
    let started = Instant::now();
    let fleet = System::start_fleet(
        3,
        SystemOptions {
            kms: Some(KmsOptions::default()),
            trusted_store: true,
            ..Default::default()
        },
    );
    eprintln!("3 hosts up in {:?}", started.elapsed());
    let table = fleet[0].trusted.as_ref().unwrap().table_arn.clone();
    assert!(fleet
        .iter()
        .all(|h| h.trusted.as_ref().unwrap().table_arn == table));
    let c = fleet[0].client().await;
    let healths = healths_until(
        &c,
        3,
        |v| {
            v["trusted_store"]["credentials_loaded"] == true
                && v["trusted_store"]["outcomes"]["ok"].as_u64().unwrap_or(0) >= 1
        },
        Duration::from_secs(30),
    )
    .await;
    for (id, v) in &healths {
        let t = &v["trusted_store"];
        assert_eq!(t["mode"], "trusted-store", "{id}: {t}");
        assert_eq!(t["table"], table.as_str(), "{id}: {t}");
        assert_eq!(t["forwarder_running"], true, "{id}: {t}");
    }
    // Each parent relayed the table's TLS: its tunnel allow-list names the endpoint.
    for host in &fleet {
        let toml = std::fs::read_to_string(host.dir.path().join("parent.toml")).unwrap();
        assert!(
            toml.contains(&host.trusted.as_ref().unwrap().authority),
            "{toml}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flags_health_says_single_host_and_bad_flags_refuse_to_start() {
    let host = System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        ..Default::default()
    });
    let c = host.client().await;
    let v = request_json(&c, "enclave.health", json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["trusted_store"]["mode"], "single-host", "{v}");

    // A bare table name: usage error (64) before anything binds, naming the flag.
    let out = std::process::Command::new(vettid_tests::bin_path("vettid-enclave"))
        .args(["--listen", "unix:///nonexistent/e.sock"])
        .args([
            "--kms-endpoint",
            "https://kms.vettid.test:1",
            "--kms-region",
            "us-east-1",
        ])
        .args([
            "--kms-key-id",
            &vettid_tests::kms::key_arn(),
            "--kms-tunnel",
            "unix:///nonexistent/t.sock",
        ])
        .args(["--trusted-store-endpoint", "https://dynamodb.vettid.test:1"])
        .args([
            "--trusted-store-region",
            "us-east-1",
            "--trusted-store-table",
            "vettid-trusted",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--trusted-store-table") && err.contains("bare table name"),
        "{err}"
    );
}
