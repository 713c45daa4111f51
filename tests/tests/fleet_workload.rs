//! Three hosts behind ONE nats-server queue group, one bucket, one KMS and one trusted-store
//! table: the fleet workload (`vettid_tests::fleet`) through the v2 app crate. Its own test
//! binary, so it does not share the machine with the other fleet tests' enclaves. Scale with
//! `VETTID_FLEET_USERS` / `VETTID_FLEET_OPS` (the full 200 / 1000 run is `vettid-fleet`,
//! BENCHMARKS.md).

use std::time::Instant;

use vettid_tests::kms::KmsOptions;
use vettid_tests::{System, SystemOptions};

/// Three hosts on ONE nats-server (the queue group routes at random): enrolments and mixed
/// operations through the v2 app crate, every one succeeding, nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_behind_one_queue_group_finish_every_exchange() {
    let users: usize = std::env::var("VETTID_FLEET_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let ops: usize = std::env::var("VETTID_FLEET_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let fleet = System::start_fleet(
        3,
        SystemOptions {
            kms: Some(KmsOptions::default()),
            trusted_store: true,
            ..SystemOptions::default()
        },
    );
    let started = Instant::now();
    let report = vettid_tests::fleet::run(&fleet, users, ops, 2).await;
    eprintln!("{report}");
    assert_eq!(
        report.failures,
        Vec::<String>::new(),
        "every exchange succeeds"
    );
    assert_eq!(report.enrolled, users);
    assert_eq!(report.ops_ok, ops);
    assert_eq!(report.lost, 0, "every acknowledged write is read back");
    assert!(
        report.hosts_used == 3,
        "the queue group spread the work: {report}"
    );
    eprintln!("fleet run took {:?}", started.elapsed());
}
