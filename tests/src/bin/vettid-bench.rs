//! `vettid-bench`: the full path (NATS → parent → Unix socket → enclave → back) against a direct
//! NATS echo responder, measured in the same run on the same nats-server, so the ratios are
//! meaningful on any machine.
//!
//! Run (release, as recorded in BENCHMARKS.md):
//! `cargo build --release --bins --features vettid-enclave/dev && target/release/vettid-bench`

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::json;
use vettid_tests::{System, SystemOptions};

/// Full path vs direct NATS echo, in one run.
#[derive(clap::Parser)]
#[command(name = "vettid-bench")]
struct Args {
    /// Requests sent one at a time, per path.
    #[arg(long, default_value_t = 5000, value_parser = at_least(10))]
    sequential: usize,
    /// Concurrent requesters on one client connection.
    #[arg(long, default_value_t = 64, value_parser = at_least(1))]
    concurrency: usize,
    /// Requests each concurrent requester sends back to back.
    #[arg(long, default_value_t = 300, value_parser = at_least(1))]
    per_worker: usize,
    /// Seconds to keep the concurrent health load running after the table (for profiling).
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
}

fn at_least(min: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..)
}

#[derive(Clone, Copy)]
struct Stats {
    p50_us: f64,
    p99_us: f64,
    per_sec: f64,
}

fn stats(mut lat: Vec<Duration>, elapsed: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    Stats {
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
    }
}

async fn one(
    c: &async_nats::Client,
    subject: &'static str,
    payload: &bytes::Bytes,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let reply = c.request(subject, payload.clone()).await?;
    anyhow::ensure!(
        !reply.payload.is_empty() && reply.payload[0] == b'{',
        "unexpected reply"
    );
    anyhow::ensure!(
        !reply.payload.starts_with(b"{\"code\"")
            && !reply.payload.windows(13).any(|w| w == b"\"type\":\"error"),
        "error reply: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    Ok(t.elapsed())
}

async fn sequential(
    c: &async_nats::Client,
    subject: &'static str,
    payload: bytes::Bytes,
    n: usize,
) -> anyhow::Result<Stats> {
    for _ in 0..200 {
        one(c, subject, &payload).await?;
    }
    let started = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        lat.push(one(c, subject, &payload).await?);
    }
    Ok(stats(lat, started.elapsed()))
}

async fn concurrent(
    c: &async_nats::Client,
    subject: &'static str,
    payload: bytes::Bytes,
    workers: usize,
    each: usize,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let mut tasks = futures::stream::FuturesUnordered::new();
    for _ in 0..workers {
        let (c, payload) = (c.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(each);
            for _ in 0..each {
                lat.push(one(&c, subject, &payload).await?);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(workers * each);
    while let Some(r) = tasks.next().await {
        all.extend(r??);
    }
    Ok(stats(all, started.elapsed()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let sys = System::start(SystemOptions::default());
    let client = sys.client().await;

    // The baseline: a responder that answers every request with its payload, on the same server.
    let responder = sys.client().await;
    let mut sub = responder
        .queue_subscribe("bench.echo", "bench".into())
        .await?;
    let echo = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    });
    responder_ready(&client).await?;

    let empty = bytes::Bytes::from_static(b"{}");
    let nonce = bytes::Bytes::from(json!({"nonce": B64.encode([42u8; 32])}).to_string());
    println!(
        "vettid-bench: sequential {} requests; {} concurrent requesters x {} each\n",
        a.sequential, a.concurrency, a.per_worker
    );
    let rows = [
        ("direct NATS echo", "bench.echo", empty.clone()),
        ("full path: enclave.health", "enclave.health", empty.clone()),
        (
            "full path: enclave.attestation.request",
            "enclave.attestation.request",
            nonce,
        ),
    ];
    let mut results = Vec::new();
    for (name, subject, payload) in rows {
        let seq = sequential(&client, subject, payload.clone(), a.sequential).await?;
        let conc = concurrent(&client, subject, payload, a.concurrency, a.per_worker).await?;
        results.push((name, seq, conc));
    }
    println!("| path | seq p50 µs | seq p99 µs | seq req/s | {c}-way req/s | {c}-way p50 µs | {c}-way p99 µs |", c = a.concurrency);
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, s, c) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.p50_us, s.p99_us, s.per_sec, c.per_sec, c.p50_us, c.p99_us
        );
    }
    let (echo_s, echo_c) = (results[0].1, results[0].2);
    let (full_s, full_c) = (results[1].1, results[1].2);
    println!();
    println!(
        "full-path / direct-echo p50 latency: {:.2}x (target <= 1.5x)",
        full_s.p50_us / echo_s.p50_us
    );
    println!(
        "full-path / direct-echo p99 latency: {:.2}x",
        full_s.p99_us / echo_s.p99_us
    );
    println!(
        "full-path / direct-echo {}-way throughput: {:.0}% (target >= 60%)",
        a.concurrency,
        100.0 * full_c.per_sec / echo_c.per_sec
    );
    if a.soak_secs > 0 {
        println!(
            "soaking enclave.health at {}-way for {} s (attach a profiler now)",
            a.concurrency, a.soak_secs
        );
        let until = Instant::now() + Duration::from_secs(a.soak_secs);
        while Instant::now() < until {
            concurrent(&client, "enclave.health", empty.clone(), a.concurrency, 100).await?;
        }
    }
    echo.abort();
    Ok(())
}

async fn responder_ready(c: &async_nats::Client) -> anyhow::Result<()> {
    for _ in 0..100 {
        if c.request("bench.echo", bytes::Bytes::from_static(b"{}"))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("echo responder never answered")
}
