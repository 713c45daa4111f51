//! `vettid-faults`: the fault table. Every row starts a fresh system (nats-server, parent,
//! enclave, local KMS, fs object store), runs the vault load, breaks one part, repairs it, and
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

use anyhow::{bail, ensure, Context};
use vettid_tests::faults::{markdown, run, Fault, Plan};

fn main() -> anyhow::Result<()> {
    let mut plan = Plan::default();
    let mut faults = Fault::ALL.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let ms = || -> anyhow::Result<Duration> {
            let v: u64 = value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))?;
            ensure!(v > 0, "{flag} must be above 0");
            Ok(Duration::from_millis(v))
        };
        match flag.as_str() {
            "--only" => {
                faults = value
                    .split(',')
                    .map(|f| Fault::parse(f).with_context(|| format!("--only: unknown fault {f}")))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--outage-ms" => plan.outage = ms()?,
            "--pace-ms" => plan.mix.pace = ms()?,
            "--enrol-ms" => plan.enrol_every = ms()?,
            "--attest-ms" => plan.attest_every = ms()?,
            "--users" => {
                plan.users = value.parse().context("--users: not a number")?;
                ensure!((1..=50).contains(&plan.users), "--users must be 1 to 50");
            }
            other => bail!("unknown flag {other}"),
        }
    }
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
