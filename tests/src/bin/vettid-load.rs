//! `vettid-load`: sustained load at a fixed rate against the full system (NATS → parent →
//! enclave), with latency per window and memory of both processes every second.
//!
//! `cargo build --release --bins --features vettid-enclave/dev && target/release/vettid-load
//! [--seconds 60] [--rate 500] [--window 10]`

#![allow(clippy::print_stdout)]

use std::time::Duration;

use vettid_tests::load::{run, LoadSpec};
use vettid_tests::{System, SystemOptions};

fn main() -> anyhow::Result<()> {
    let mut spec = LoadSpec {
        duration: Duration::from_secs(60),
        rate: 500,
        window: Duration::from_secs(10),
        deadline: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--seconds" => spec.duration = Duration::from_secs(value),
            "--rate" => spec.rate = u32::try_from(value)?,
            "--window" => spec.window = Duration::from_secs(value.max(1)),
            other => anyhow::bail!("unknown flag {other}; flags: --seconds N --rate N --window N"),
        }
    }
    let sys = System::start(SystemOptions::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&sys, &spec));
    println!("vettid-load: {} s at {} req/s (health 50 %, Lambda attestation 25 %, app attestation 25 %)\n", spec.duration.as_secs(), spec.rate);
    print!("{}", report.markdown());
    let (p, e) = report.rss_growth_kib();
    println!("RSS growth after the first second: parent {p} KiB, enclave {e} KiB");
    anyhow::ensure!(report.errors == 0, "{} errors", report.errors);
    Ok(())
}
