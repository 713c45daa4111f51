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

/// Sustained load at a fixed rate.
#[derive(clap::Parser)]
#[command(name = "vettid-load")]
struct Args {
    /// Length of the run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Health and attestation requests per second.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Reporting window, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    window: u64,
    /// Enrolled vault users alongside (0: none; the system then runs no KMS).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1000))]
    vault_users: usize,
    /// Vault requests per second, over all vault users.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    vault_rate: u32,
    /// Every this many of a vault user's requests is a warm `pin.unlock` (0: none).
    #[arg(long, default_value_t = 100)]
    unlock_every: u32,
}

fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let spec = LoadSpec {
        duration: Duration::from_secs(a.seconds),
        rate: a.rate,
        window: Duration::from_secs(a.window),
        deadline: Duration::from_secs(5),
        vault: (a.vault_users > 0).then_some(VaultMix {
            users: a.vault_users,
            rate: a.vault_rate,
            unlock_every: a.unlock_every,
        }),
    };
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
