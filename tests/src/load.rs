//! Sustained load at a fixed request rate, mixing request families, with latency percentiles per
//! window and the memory of both processes sampled every second. Used by `vettid-load` (60 s and
//! longer) and by a short test in `scripts/test`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use tokio::sync::mpsc;

use crate::system::System;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Total duration.
    pub duration: Duration,
    /// Requests per second, spread evenly.
    pub rate: u32,
    /// Reporting window.
    pub window: Duration,
    /// Per-request deadline.
    pub deadline: Duration,
}

/// One reporting window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Seconds since start at the window's end.
    pub at_s: u64,
    /// Requests completed in the window.
    pub done: usize,
    /// Errors (error replies, timeouts) in the window.
    pub errors: usize,
    /// Latency percentiles in µs.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Per-window figures.
    pub windows: Vec<Window>,
    /// (second, parent RSS KiB, enclave RSS KiB).
    pub memory: Vec<(u64, u64, u64)>,
    /// Requests sent.
    pub sent: usize,
    /// Requests answered successfully.
    pub ok: usize,
    /// Requests answered with an error or not at all.
    pub errors: usize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// Drives `sys` at `spec.rate` for `spec.duration`: health, Lambda attestation and app attestation
/// in a 2:1:1 mix. Every request has a deadline; the run stops by itself.
pub async fn run(sys: &System, spec: &LoadSpec) -> LoadReport {
    let client = sys.client().await;
    let pids = (
        sys.parent.as_ref().map(|p| p.pid()).unwrap_or(0),
        sys.enclave.as_ref().map(|e| e.pid()).unwrap_or(0),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Result<Duration, ()>)>();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut report = LoadReport::default();
    let mut next_send = started;
    let mut next_sample = started;
    let mut window_end = started + spec.window;
    let mut lat: Vec<u64> = Vec::new();
    let mut win_errors = 0usize;
    let mut in_flight = 0usize;
    let mut i = 0u64;
    let end = started + spec.duration;
    loop {
        let now = Instant::now();
        if now >= end && in_flight == 0 {
            break;
        }
        if now >= next_sample {
            report.memory.push((
                started.elapsed().as_secs(),
                rss_kib(pids.0),
                rss_kib(pids.1),
            ));
            next_sample += Duration::from_secs(1);
        }
        if now >= window_end {
            lat.sort_unstable();
            report.windows.push(Window {
                at_s: (window_end - started).as_secs(),
                done: lat.len(),
                errors: win_errors,
                p50_us: percentile(&lat, 0.5),
                p99_us: percentile(&lat, 0.99),
                max_us: lat.last().copied().unwrap_or(0),
            });
            lat.clear();
            win_errors = 0;
            window_end += spec.window;
        }
        while now < end && next_send <= now {
            i += 1;
            let (subject, payload) = match i % 4 {
                0 | 2 => ("enclave.health".to_string(), json!({})),
                1 => (
                    "enclave.attestation.request".to_string(),
                    json!({"nonce": B64.encode(i.to_be_bytes())}),
                ),
                _ => (
                    format!("OwnerSpace.load-{}.forVault.attestation", i % 50),
                    json!({"id": format!("e{i}"), "type": "attestation.request", "payload": {"nonce": B64.encode(i.to_be_bytes())}}),
                ),
            };
            let (c, tx, deadline) = (client.clone(), tx.clone(), spec.deadline);
            tokio::spawn(async move {
                let t = Instant::now();
                let r = crate::system::request_json(&c, &subject, payload, deadline).await;
                let ok =
                    matches!(&r, Ok(v) if v.get("type").and_then(|t| t.as_str()) != Some("error"));
                let _ = tx.send((t, if ok { Ok(t.elapsed()) } else { Err(()) }));
            });
            report.sent += 1;
            in_flight += 1;
            next_send += interval;
        }
        let wait = [next_send, next_sample, window_end]
            .into_iter()
            .min()
            .unwrap_or(now)
            .saturating_duration_since(now);
        match tokio::time::timeout(wait.max(Duration::from_millis(1)), rx.recv()).await {
            Ok(Some((_, res))) => {
                in_flight -= 1;
                match res {
                    Ok(d) => {
                        report.ok += 1;
                        lat.push(d.as_micros() as u64);
                    }
                    Err(()) => {
                        report.errors += 1;
                        win_errors += 1;
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    report
}

impl LoadReport {
    /// A markdown rendering for BENCHMARKS.md and test logs.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| t (s) | done | errors | p50 µs | p99 µs | max µs |\n|---:|---:|---:|---:|---:|---:|\n");
        for w in &self.windows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                w.at_s, w.done, w.errors, w.p50_us, w.p99_us, w.max_us
            );
        }
        let mem = |f: fn(&(u64, u64, u64)) -> u64| {
            let v: Vec<u64> = self.memory.iter().map(f).collect();
            (
                v.iter().min().copied().unwrap_or(0),
                v.iter().max().copied().unwrap_or(0),
                v.last().copied().unwrap_or(0),
            )
        };
        let (pmin, pmax, plast) = mem(|m| m.1);
        let (emin, emax, elast) = mem(|m| m.2);
        s += &format!(
            "\nsent {}, ok {}, errors {}; RSS KiB parent min/max/last {pmin}/{pmax}/{plast}, enclave {emin}/{emax}/{elast}\n",
            self.sent, self.ok, self.errors
        );
        s
    }

    /// RSS growth (KiB) between the second sample and the last, per process: the first second
    /// includes start-up allocation.
    pub fn rss_growth_kib(&self) -> (i64, i64) {
        let first = self
            .memory
            .get(1)
            .or(self.memory.first())
            .copied()
            .unwrap_or_default();
        let last = self.memory.last().copied().unwrap_or_default();
        (
            last.1 as i64 - first.1 as i64,
            last.2 as i64 - first.2 as i64,
        )
    }
}
