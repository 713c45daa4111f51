//! `vettid-fleet`: the fleet layout measured (issue 12). The same v2 workload
//! ([`vettid_tests::fleet`]: enrolment, then secrets add/update/retrieve, `credential.get` and
//! unlocks, every acknowledged value read back) in three configurations, in one run so the
//! figures are ratios on any machine:
//!
//! 1. **baseline**: one host, no trusted store (single-host mode, what ran before the fleet);
//! 2. **anchored**: one host with the trusted store (every request reads its vault's mark, every
//!    change swaps it, attestation keys and unlocks are wrapped into the table);
//! 3. **fleet**: `--hosts` anchored hosts behind one nats queue group (random routing).
//!
//! ```text
//! cargo build --release --bins --features vettid-enclave/dev
//! target/release/vettid-fleet                  # --users 200 --ops 1000 --hosts 3 (--help)
//! ```
//!
//! Exits 1 if any exchange of the fleet phase failed or any acknowledged write was lost.

#![allow(clippy::print_stdout)]

use vettid_tests::fleet::{self, FleetReport};
use vettid_tests::kms::KmsOptions;
use vettid_tests::{System, SystemOptions};

/// The fleet layout measured against one host without a trusted store.
#[derive(clap::Parser)]
#[command(name = "vettid-fleet")]
struct Args {
    /// Users enrolled in the fleet phase (attestation, pin.setup, credential.create each).
    #[arg(long, default_value_t = 200, value_parser = range(1, 10_000))]
    users: usize,
    /// Mixed operations in the fleet phase, spread over the users.
    #[arg(long, default_value_t = 1000, value_parser = range(0, 1_000_000))]
    ops: usize,
    /// Hosts in the fleet phase.
    #[arg(long, default_value_t = 3, value_parser = range(1, 5))]
    hosts: usize,
    /// Users in flight at once (each enrolment holds 256 MiB of Argon2id).
    #[arg(long, default_value_t = 6, value_parser = range(1, 64))]
    concurrency: usize,
    /// Users (and ops, scaled) of the two one-host phases.
    #[arg(long, default_value_t = 30, value_parser = range(1, 10_000))]
    compare_users: usize,
}

fn range(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..=max)
}

fn options(trusted_store: bool) -> SystemOptions {
    SystemOptions {
        kms: Some(KmsOptions::default()),
        trusted_store,
        v2_only: true,
        ..SystemOptions::default()
    }
}

fn ratio(report: &FleetReport, base: &FleetReport, op: &str) -> String {
    match (report.percentile(op, 0.5), base.percentile(op, 0.5)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x (+{:.1} ms)", a / b, a - b),
        _ => "-".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let compare_ops = args.compare_users * 5;
    println!(
        "# vettid-fleet: {} users / {} ops on {} hosts; one-host phases {} users / {} ops",
        args.users, args.ops, args.hosts, args.compare_users, compare_ops
    );

    let base = {
        let sys = vec![System::start(options(false))];
        fleet::run(&sys, args.compare_users, compare_ops, args.concurrency).await
    };
    println!("## baseline (one host, single-host mode)\n{base}");
    let anchored = {
        let sys = vec![System::start(options(true))];
        let report = fleet::run(&sys, args.compare_users, compare_ops, args.concurrency).await;
        let health = vettid_tests::request_json(
            &sys[0].client().await,
            "enclave.health",
            serde_json::json!({}),
            std::time::Duration::from_secs(5),
        )
        .await
        .ok();
        if let Some(h) = health {
            println!(
                "trusted store calls by outcome: {}",
                h["trusted_store"]["outcomes"]
            );
        }
        report
    };
    println!("## anchored (one host, trusted store)\n{anchored}");
    println!("## anchored / baseline, p50");
    for op in [
        "attestation",
        "pin.setup",
        "credential.create",
        "pin.unlock",
        "secrets.add",
        "secrets.update",
        "secrets.retrieve",
        "credential.get",
    ] {
        println!("  {op:<18} {}", ratio(&anchored, &base, op));
    }
    let fleet_report = {
        let sys = System::start_fleet(args.hosts, options(true));
        fleet::run(&sys, args.users, args.ops, args.concurrency).await
    };
    println!(
        "## fleet ({} hosts, one queue group)\n{fleet_report}",
        args.hosts
    );
    let ok = fleet_report.failures.is_empty()
        && fleet_report.lost == 0
        && fleet_report.enrolled == args.users
        && fleet_report.ops_ok == args.ops;
    println!(
        "fleet: {} ({} of {} enrolments, {} of {} ops, {} lost)",
        if ok { "100 % success" } else { "FAILURES" },
        fleet_report.enrolled,
        args.users,
        fleet_report.ops_ok,
        args.ops,
        fleet_report.lost
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
