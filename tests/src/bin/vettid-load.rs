//! `vettid-load`: sustained load at a fixed rate against the full system (NATS → parent →
//! enclave), with latency per window and memory of both processes every second.
//!
//! `cargo build --release --bins --features vettid-enclave/dev && target/release/vettid-load
//! [--seconds 60] [--rate 500] [--window 10] [--vault-users 10 --vault-rate 50 --unlock-every 100]`
//!
//! With `--vault-users` above 0 the system gets its local KMS and that many enrolled users run
//! vault operations at `--vault-rate` requests/s in all (`vettid_tests::load::VaultMix`).

#![allow(clippy::print_stdout)]

use std::time::Duration;

use vettid_tests::kms::KmsOptions;
use vettid_tests::load::{run, LoadSpec, VaultMix};
use vettid_tests::{System, SystemOptions};

fn main() -> anyhow::Result<()> {
    let mut spec = LoadSpec {
        duration: Duration::from_secs(60),
        rate: 500,
        window: Duration::from_secs(10),
        deadline: Duration::from_secs(5),
        vault: None,
    };
    let mut vault = VaultMix {
        users: 0,
        rate: 50,
        unlock_every: 100,
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
            "--vault-users" => vault.users = usize::try_from(value)?,
            "--vault-rate" => vault.rate = u32::try_from(value.max(1))?,
            "--unlock-every" => vault.unlock_every = u32::try_from(value)?,
            other => anyhow::bail!(
                "unknown flag {other}; flags: --seconds N --rate N --window N --vault-users N \
                 --vault-rate N --unlock-every N"
            ),
        }
    }
    anyhow::ensure!(vault.users <= 1000, "--vault-users at most 1000");
    if vault.users > 0 {
        spec.vault = Some(vault);
    }
    let sys = System::start(SystemOptions {
        kms: spec.vault.map(|_| KmsOptions::default()),
        ..SystemOptions::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&sys, &spec));
    println!("vettid-load: {} s at {} req/s (health 50 %, Lambda attestation 25 %, app attestation 25 %)", spec.duration.as_secs(), spec.rate);
    if let Some(v) = spec.vault {
        println!("plus {} vault users at {} req/s in all (secrets.update / secrets.retrieve alternating, a warm pin.unlock every {} requests per user)", v.users, v.rate, v.unlock_every);
    }
    println!();
    print!("{}", report.markdown());
    let (p, e) = report.rss_growth_kib();
    println!("RSS growth (floor of the last tenth minus floor of the first): parent {p} KiB, enclave {e} KiB");
    anyhow::ensure!(report.errors == 0, "{} errors", report.errors);
    Ok(())
}
