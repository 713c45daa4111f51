//! `vettid-faults`: the fault table. Every row starts a fresh system (nats-server, parent,
//! enclave, local KMS, fs object store; for the trusted-store rows a DynamoDB stand-in of its
//! own), runs the vault load, breaks one part, repairs it, and
//! reads every vault back. Exits 1 if any row lost an acknowledged mutation, stored a refused one,
//! answered a request twice or did not recover.
//!
//! ```text
//! cargo build --release --bins --features vettid-enclave/dev
//! target/release/vettid-faults [--only kms-hang,store-conflict] [--outage-ms 2000] [--users 2]
//!                              [--pace-ms 50] [--enrol-ms 1000] [--attest-ms 50]
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use anyhow::ensure;
use vettid_tests::faults::{markdown, run, Fault, Mix, Plan};

/// The fault table.
#[derive(clap::Parser)]
#[command(name = "vettid-faults")]
struct Args {
    /// Rows to run, comma-separated: nats, enclave, parent-term, parent-kill, store-errors,
    /// store-hang, store-conflict, kms-deny, kms-disabled, kms-hang, trusted-down, trusted-slow,
    /// trusted-throttled, trusted-denied, trusted-dropped. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = fault)]
    only: Vec<Fault>,
    /// How long the part stays broken, in ms.
    #[arg(long, default_value_t = 2000, value_parser = ms)]
    outage_ms: u64,
    /// Time between one user's requests, in ms.
    #[arg(long, default_value_t = 50, value_parser = ms)]
    pace_ms: u64,
    /// Time between new users' enrolments, in ms.
    #[arg(long, default_value_t = 1000, value_parser = ms)]
    enrol_ms: u64,
    /// Time between app attestations, in ms.
    #[arg(long, default_value_t = 50, value_parser = ms)]
    attest_ms: u64,
    /// Enrolled users running the load.
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=50))]
    users: usize,
}

fn fault(s: &str) -> Result<Fault, String> {
    Fault::parse(s).ok_or_else(|| format!("unknown fault {s:?}"))
}

fn ms(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if (1..=600_000).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: milliseconds, 1 to 600000")),
    }
}

fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let defaults = Plan::default();
    let plan = Plan {
        outage: Duration::from_millis(a.outage_ms),
        mix: Mix {
            pace: Duration::from_millis(a.pace_ms),
            ..defaults.mix
        },
        enrol_every: Duration::from_millis(a.enrol_ms),
        attest_every: Duration::from_millis(a.attest_ms),
        users: a.users,
        ..defaults
    };
    let faults = if a.only.is_empty() {
        Fault::ALL.to_vec()
    } else {
        a.only
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &fault in &faults {
        eprintln!("vettid-faults: {} …", fault.name());
        let row = rt.block_on(run(fault, plan));
        eprint!("{}", markdown(std::slice::from_ref(&row)));
        rows.push(row);
    }
    print!("{}", markdown(&rows));
    let bad: Vec<String> = rows
        .iter()
        .zip(&faults)
        .filter_map(|(r, f)| {
            let failures = r.failures(*f);
            (!failures.is_empty()).then(|| format!("{}: {}", r.fault, failures.join("; ")))
        })
        .collect();
    ensure!(bad.is_empty(), "rows that failed: {bad:?}");
    Ok(())
}
