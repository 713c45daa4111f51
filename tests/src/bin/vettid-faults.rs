//! `vettid-faults`: the fault table. `target/release/vettid-faults [--rate 100] [--outage-ms 2000]`

#![allow(clippy::print_stdout)]

use std::time::Duration;

use vettid_tests::faults::{markdown, run, Fault};
use vettid_tests::{System, SystemOptions};

fn main() -> anyhow::Result<()> {
    let (mut rate, mut outage_ms) = (100u32, 2000u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v: u64 = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--rate" => rate = u32::try_from(v)?,
            "--outage-ms" => outage_ms = v,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for fault in Fault::ALL {
        let mut sys = System::start(SystemOptions::default());
        let row = rt.block_on(run(
            &mut sys,
            fault,
            rate,
            Duration::from_secs(2),
            Duration::from_millis(outage_ms),
            Duration::from_secs(3),
            Duration::from_secs(5),
        ));
        rows.push(row);
    }
    print!("{}", markdown(&rows));
    anyhow::ensure!(rows.iter().all(|r| r.duplicates == 0), "duplicate answers");
    Ok(())
}
