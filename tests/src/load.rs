//! Sustained load at a fixed request rate, mixing request families, with latency percentiles per
//! window and the memory of both processes sampled every second. Used by `vettid-load` (60 s and
//! longer) and by a short test in `scripts/test`.
//!
//! With a [`VaultMix`], enrolled users also run vault operations at their own fixed pace:
//! `secrets.update` over a fixed set of secrets (so the vaults do not grow and memory can stay
//! flat), `secrets.retrieve` with the value checked against the last acknowledged update, and a
//! warm `pin.unlock` (Argon2id, 256 MiB for ~0.6 s) now and then. Each user's requests are
//! sequential, as an app's are (UTKs are single use).

use std::collections::{BTreeMap, HashMap};
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
    /// Vault operations alongside, if any.
    pub vault: Option<VaultMix>,
}

/// The vault part of the mix.
#[derive(Debug, Clone, Copy)]
pub struct VaultMix {
    /// Enrolled users, each with [`SECRETS_PER_USER`] secrets.
    pub users: usize,
    /// Vault requests per second, over all users.
    pub rate: u32,
    /// Every this many of a user's requests is a warm `pin.unlock`; `0`: none.
    pub unlock_every: u32,
}

/// Secrets each vault user keeps (updated in turn, never added to).
pub const SECRETS_PER_USER: usize = 5;

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
    /// Latency (µs) and errors per request family, over the whole run.
    pub families: BTreeMap<&'static str, (Vec<u64>, usize)>,
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
    let vault = match spec.vault {
        Some(mix) => Some(start_vault(&client, mix, spec.duration).await),
        None => None,
    };
    let pids = (
        sys.parent.as_ref().map(|p| p.pid()).unwrap_or(0),
        sys.enclave.as_ref().map(|e| e.pid()).unwrap_or(0),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Result<Duration, ()>)>();
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
            let family = match i % 4 {
                0 | 2 => "enclave.health",
                1 => "enclave.attestation.request",
                _ => "app attestation",
            };
            let (c, tx, deadline) = (client.clone(), tx.clone(), spec.deadline);
            tokio::spawn(async move {
                let t = Instant::now();
                let r = crate::system::request_json(&c, &subject, payload, deadline).await;
                let ok =
                    matches!(&r, Ok(v) if v.get("type").and_then(|t| t.as_str()) != Some("error"));
                let _ = tx.send((family, if ok { Ok(t.elapsed()) } else { Err(()) }));
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
            Ok(Some((family, res))) => {
                in_flight -= 1;
                let fam = report.families.entry(family).or_default();
                match res {
                    Ok(d) => {
                        report.ok += 1;
                        lat.push(d.as_micros() as u64);
                        fam.0.push(d.as_micros() as u64);
                    }
                    Err(()) => {
                        report.errors += 1;
                        win_errors += 1;
                        fam.1 += 1;
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    if let Some(tasks) = vault {
        for t in tasks {
            for (family, at, res) in t.await.expect("vault load task") {
                report.sent += 1;
                let fam = report.families.entry(family).or_default();
                let window = report
                    .windows
                    .iter_mut()
                    .find(|w| at.duration_since(started).as_secs() < w.at_s);
                match res {
                    Ok(d) => {
                        report.ok += 1;
                        fam.0.push(d.as_micros() as u64);
                    }
                    Err(code) => {
                        eprintln!("vault load: {family} failed: {code}");
                        report.errors += 1;
                        fam.1 += 1;
                        if let Some(w) = window {
                            w.errors += 1;
                        }
                    }
                }
            }
        }
    }
    report
}

/// One vault request's family, when it was sent, and its latency or error code.
type VaultResult = (&'static str, Instant, Result<Duration, String>);

/// Enrols `mix.users` users (each with [`SECRETS_PER_USER`] secrets, before the clock starts) and
/// starts their loads, which stop after `duration`.
async fn start_vault(
    client: &async_nats::Client,
    mix: VaultMix,
    duration: Duration,
) -> Vec<tokio::task::JoinHandle<Vec<VaultResult>>> {
    let requester = crate::replies::Requester::new(client.clone()).await;
    let users = crate::faults::users(&requester, "load-vault", mix.users).await;
    let pace = Duration::from_secs_f64(mix.users as f64 / f64::from(mix.rate.max(1)));
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for mut user in users {
        let mut ids = Vec::new();
        for k in 0..SECRETS_PER_USER {
            let name = format!("secret-{k}");
            let r = user.add_secret(&name, "v0").await.expect_ok("secrets.add");
            ids.push((
                r["id"].as_str().unwrap_or_default().to_owned(),
                "v0".to_owned(),
            ));
        }
        // Staggered, so the users' unlocks spread over the period instead of coming at once.
        let offset = (tasks.len() * mix.unlock_every as usize / mix.users.max(1)) as u32;
        tasks.push(tokio::spawn(vault_user(
            user,
            ids,
            pace,
            (mix.unlock_every, offset),
            end,
        )));
    }
    tasks
}

/// One user's sequential vault load until `end`; its request counter starts at `offset`.
async fn vault_user(
    mut user: crate::vault_client::VaultUser,
    mut secrets: Vec<(String, String)>,
    pace: Duration,
    (unlock_every, offset): (u32, u32),
    end: Instant,
) -> Vec<VaultResult> {
    use crate::vault_client::Answer;
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = offset;
    let mut values: HashMap<usize, u32> = HashMap::new();
    while Instant::now() < end {
        tick.tick().await;
        n += 1;
        let k = (n as usize / 2) % secrets.len();
        let t = Instant::now();
        let (family, result) = if unlock_every > 0 && n.is_multiple_of(unlock_every) {
            ("pin.unlock", user.unlock().await)
        } else if n.is_multiple_of(2) {
            let version = values.entry(k).or_default();
            *version += 1;
            let value = format!("v{version}");
            let (id, _) = secrets[k].clone();
            let r = user
                .utk_op("secrets.update", json!({"id": id, "value": value}))
                .await;
            if r.is_ok() {
                secrets[k].1 = value;
            }
            ("secrets.update", r)
        } else {
            let reply = crate::app::ReplyKey::generate();
            let (id, expected) = secrets[k].clone();
            let r = user.retrieve_secret(&id, &reply).await;
            let r = match r {
                Answer::Ok(v) => {
                    let got = reply.open_json(v["encrypted_secret"].as_str().unwrap_or_default());
                    if got["value"] == expected.as_str() {
                        Answer::Ok(v)
                    } else {
                        Answer::Lost(format!("read {} expected {expected}", got["value"]))
                    }
                }
                other => other,
            };
            ("secrets.retrieve", r)
        };
        let res = if result.is_ok() {
            Ok(t.elapsed())
        } else {
            Err(result.code())
        };
        out.push((family, t, res));
    }
    out
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
        s += "\n| family | requests | errors | p50 µs | p99 µs | max µs |\n|---|---:|---:|---:|---:|---:|\n";
        for (family, (lat, errors)) in &self.families {
            let mut lat = lat.clone();
            lat.sort_unstable();
            s += &format!(
                "| {family} | {} | {errors} | {} | {} | {} |\n",
                lat.len() + errors,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                lat.last().copied().unwrap_or(0)
            );
        }
        s
    }

    /// RSS growth (KiB) per process: the lowest sample of the last tenth of the run minus the
    /// lowest of the first tenth (after the first second, which includes start-up allocation).
    /// Floors, not single samples: a warm unlock holds 256 MiB for ~0.6 s and a sample that
    /// lands on one says nothing about growth.
    pub fn rss_growth_kib(&self) -> (i64, i64) {
        let samples = self.memory.get(1..).unwrap_or_default();
        let tenth = (samples.len() / 10).max(1);
        let floor = |part: &[(u64, u64, u64)], f: fn(&(u64, u64, u64)) -> u64| {
            part.iter().map(f).min().unwrap_or(0) as i64
        };
        let (head, tail) = (
            &samples[..tenth.min(samples.len())],
            &samples[samples.len().saturating_sub(tenth)..],
        );
        (
            floor(tail, |m| m.1) - floor(head, |m| m.1),
            floor(tail, |m| m.2) - floor(head, |m| m.2),
        )
    }
}
