//! A fleet workload through the v2 app crate (`vettid-app-client`): users enrol and then run mixed
//! vault operations against hosts sharing one nats-server (so the queue group picks the host of
//! every request), for `tests/fleet.rs` (small) and `vettid-fleet` (BENCHMARKS.md, full size).
//!
//! Each user runs sequentially, as one app does; users run concurrently. A request succeeds or
//! it is a failure: the workload retries nothing, so "100 % success" means every exchange
//! finished on whichever host it reached. Every acknowledged write is checked at the end by
//! reading each secret back (from whichever host answers).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use vettid_app_client::{attest, Outgoing, VaultClient};
use vettid_attestation::Policy;

use crate::system::System;

const LIMIT: Duration = Duration::from_secs(60);

/// What a run did.
#[derive(Debug, Default)]
pub struct FleetReport {
    /// Users enrolled (attestation, `pin.setup`, `credential.create`).
    pub enrolled: usize,
    /// Mixed operations that succeeded.
    pub ops_ok: usize,
    /// Every failure, described.
    pub failures: Vec<String>,
    /// Acknowledged writes not read back as written.
    pub lost: usize,
    /// Hosts whose parent forwarded at least one request.
    pub hosts_used: usize,
    /// Requests forwarded per host.
    pub per_host: Vec<u64>,
    /// Latency per operation name, milliseconds, sorted.
    pub latency_ms: BTreeMap<&'static str, Vec<f64>>,
    /// Wall time.
    pub elapsed: Duration,
}

impl FleetReport {
    /// The p-th percentile of `op` (ms).
    pub fn percentile(&self, op: &str, p: f64) -> Option<f64> {
        let v = self.latency_ms.get(op)?;
        if v.is_empty() {
            return None;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        Some(v[i])
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fleet: {} enrolled, {} ops ok, {} failures, {} lost, requests per host {:?}, {:.1} s",
            self.enrolled,
            self.ops_ok,
            self.failures.len(),
            self.lost,
            self.per_host,
            self.elapsed.as_secs_f64()
        )?;
        for (op, v) in &self.latency_ms {
            writeln!(
                f,
                "  {op:<18} n={:<5} p50 {:>8.1} ms  p99 {:>8.1} ms",
                v.len(),
                self.percentile(op, 0.5).unwrap_or(0.0),
                self.percentile(op, 0.99).unwrap_or(0.0)
            )?;
        }
        for fail in self.failures.iter().take(20) {
            writeln!(f, "  FAILED {fail}")?;
        }
        Ok(())
    }
}

/// The dev policy: the mock NSM root, any PCRs (dev builds only).
pub fn dev_policy(sys: &System) -> Policy {
    let pem = std::fs::read_to_string(sys.mock_root_pem()).expect("mock root");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Policy::skip_pcr_check_unsafe()
        .with_extra_root(B64.decode(body).expect("mock root base64"))
        .expect("mock root DER")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn raw(
    nats: &async_nats::Client,
    owner: &str,
    token: &str,
    request: &Value,
) -> Result<Vec<u8>, String> {
    let subject = format!("OwnerSpace.{owner}.forVault.{token}");
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    match tokio::time::timeout(LIMIT, nats.request(subject, body.into())).await {
        Ok(Ok(msg)) => Ok(msg.payload.to_vec()),
        Ok(Err(e)) => Err(format!("request failed: {e}")),
        Err(_) => Err("no answer in time".into()),
    }
}

struct User {
    client: VaultClient,
    hash: String,
    pin: String,
    /// Secret id → the value last acknowledged.
    secrets: HashMap<String, String>,
    timings: Vec<(&'static str, f64)>,
    failures: Vec<String>,
    ops_ok: usize,
}

impl User {
    async fn run(
        &mut self,
        nats: &async_nats::Client,
        name: &'static str,
        out: Outgoing,
    ) -> Option<Map<String, Value>> {
        let started = Instant::now();
        let owner = self.client.owner().to_owned();
        let reply = match raw(nats, &owner, out.token, &out.request).await {
            Ok(r) => r,
            Err(e) => {
                self.failures.push(format!("{owner} {name}: {e}"));
                return None;
            }
        };
        match self.client.finish(out.pending, &reply) {
            Ok(body) => {
                self.timings
                    .push((name, started.elapsed().as_secs_f64() * 1000.0));
                Some(body)
            }
            Err(e) => {
                self.failures.push(format!("{owner} {name}: {e:?}"));
                None
            }
        }
    }

    async fn enrol(&mut self, nats: &async_nats::Client, policy: &Policy) -> bool {
        let owner = self.client.owner().to_owned();
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&now_ms().to_be_bytes());
        let started = Instant::now();
        let reply = match raw(
            nats,
            &owner,
            "attestation",
            &json!({"nonce": B64.encode(nonce)}),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                self.failures.push(format!("{owner} attestation: {e}"));
                return false;
            }
        };
        let doc = serde_json::from_slice::<Value>(&reply)
            .ok()
            .and_then(|v| v["attestation"].as_str().map(str::to_owned))
            .and_then(|d| B64.decode(d).ok());
        let Some(doc) = doc else {
            self.failures.push(format!(
                "{owner} attestation: {}",
                String::from_utf8_lossy(&reply)
            ));
            return false;
        };
        let key = match attest::verify(&doc, policy.clone(), now_ms(), &nonce, &owner) {
            Ok(k) => k,
            Err(e) => {
                self.failures.push(format!("{owner} attestation: {e:?}"));
                return false;
            }
        };
        self.timings
            .push(("attestation", started.elapsed().as_secs_f64() * 1000.0));
        let Ok(out) = self.client.setup(&key, &self.pin.clone(), None) else {
            return false;
        };
        if self.run(nats, "pin.setup", out).await.is_none() {
            return false;
        }
        let Ok(out) = self.client.create_credential(&self.hash.clone()) else {
            return false;
        };
        self.run(nats, "credential.create", out).await.is_some()
    }

    /// One operation, chosen by `i`: add, update, retrieve (checked), credential.get, unlock.
    async fn op(&mut self, nats: &async_nats::Client, i: usize) {
        let hash = self.hash.clone();
        let kind = if self.secrets.is_empty() { 0 } else { i % 5 };
        let ok = match kind {
            0 => {
                let value = format!("v{i}");
                let Ok(out) = self.client.utk_request(
                    "secrets.add",
                    &json!({"password_hash": hash, "name": format!("s{i}"), "value": value}),
                ) else {
                    return self.no_utk();
                };
                match self.run(nats, "secrets.add", out).await {
                    Some(r) => {
                        if let Some(id) = r["id"].as_str() {
                            self.secrets.insert(id.to_owned(), value);
                        }
                        true
                    }
                    None => false,
                }
            }
            1 => {
                let id = self.pick(i);
                let value = format!("u{i}");
                let Ok(out) = self.client.utk_request(
                    "secrets.update",
                    &json!({"password_hash": hash, "id": id, "value": value}),
                ) else {
                    return self.no_utk();
                };
                let ok = self.run(nats, "secrets.update", out).await.is_some();
                if ok {
                    self.secrets.insert(id, value);
                }
                ok
            }
            2 => {
                let id = self.pick(i);
                self.retrieve(nats, &id).await
            }
            3 => match self.client.read("credential.get") {
                Ok(out) => self.run(nats, "credential.get", out).await.is_some(),
                Err(_) => false,
            },
            _ => {
                let Ok(out) = self.client.unlock(&self.pin.clone()) else {
                    return self.no_utk();
                };
                self.run(nats, "pin.unlock", out).await.is_some()
            }
        };
        if ok {
            self.ops_ok += 1;
        }
    }

    fn no_utk(&mut self) {
        self.failures
            .push(format!("{}: no live UTK", self.client.owner()));
    }

    fn pick(&self, i: usize) -> String {
        let mut ids: Vec<&String> = self.secrets.keys().collect();
        ids.sort();
        ids[i % ids.len()].clone()
    }

    /// Retrieves `id` and checks it holds the last acknowledged value.
    async fn retrieve(&mut self, nats: &async_nats::Client, id: &str) -> bool {
        let hash = self.hash.clone();
        let Ok(out) = self.client.utk_request(
            "secrets.retrieve",
            &json!({"password_hash": hash, "id": id}),
        ) else {
            self.no_utk();
            return false;
        };
        match self.run(nats, "secrets.retrieve", out).await {
            Some(r) => {
                let got = r["secret"]["value"].as_str().unwrap_or_default();
                let want = self.secrets.get(id).map(String::as_str).unwrap_or_default();
                if got != want {
                    self.failures.push(format!(
                        "{} secret {id}: read {got:?}, last acknowledged {want:?}",
                        self.client.owner()
                    ));
                    return false;
                }
                true
            }
            None => false,
        }
    }
}

/// Requests each host's parent has forwarded (its `/metrics`).
fn forwarded(sys: &System) -> u64 {
    let Ok((200, text)) = crate::http::get(sys.http_port, "/metrics") else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("vettid_parent_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs `users` users doing `ops` operations in all (spread evenly), `concurrency` users at once,
/// against `fleet`, whose hosts share `fleet[0]`'s nats-server. Each enrolment runs Argon2id
/// (256 MiB, production parameters) within the harness parent's 5 s request limit, so the
/// concurrency must suit the machine (2 on 2 cores with other tests running, 6 alone).
pub async fn run(fleet: &[System], users: usize, ops: usize, concurrency: usize) -> FleetReport {
    let started = Instant::now();
    let before: Vec<u64> = fleet.iter().map(forwarded).collect();
    let policy = std::sync::Arc::new(dev_policy(&fleet[0]));
    let nats = fleet[0].client().await;
    let hash = crate::app::phc_password_hash("fleet workload");
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let per_user = ops / users.max(1);
    let extra = ops - per_user * users.max(1);
    for n in 0..users {
        let my_ops = per_user + usize::from(n < extra);
        let (nats, policy, hash, semaphore) = (
            nats.clone(),
            policy.clone(),
            hash.clone(),
            semaphore.clone(),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let mut u = User {
                client: VaultClient::new(format!("fleet-{n:04}-{}", now_ms())),
                hash,
                pin: format!("{:06}", 100_000 + n),
                secrets: HashMap::new(),
                timings: Vec::new(),
                failures: Vec::new(),
                ops_ok: 0,
            };
            let enrolled = u.enrol(&nats, &policy).await;
            if enrolled {
                for i in 0..my_ops {
                    u.op(&nats, i).await;
                }
            }
            // Read back every acknowledged value (not counted as an operation).
            let mut lost = 0;
            let ids: Vec<String> = u.secrets.keys().cloned().collect();
            for id in ids {
                let before = u.failures.len();
                if !u.retrieve(&nats, &id).await && u.failures.len() > before {
                    lost += usize::from(
                        u.failures
                            .last()
                            .is_some_and(|f| f.contains("last acknowledged")),
                    );
                }
            }
            (enrolled, u, lost)
        });
    }
    let mut report = FleetReport::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((enrolled, u, lost)) = joined else {
            report.failures.push("a user task panicked".into());
            continue;
        };
        report.enrolled += usize::from(enrolled);
        report.ops_ok += u.ops_ok;
        report.lost += lost;
        report.failures.extend(u.failures);
        for (op, ms) in u.timings {
            report.latency_ms.entry(op).or_default().push(ms);
        }
    }
    for v in report.latency_ms.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    report.per_host = fleet
        .iter()
        .zip(before)
        .map(|(s, b)| forwarded(s).saturating_sub(b))
        .collect();
    report.hosts_used = report.per_host.iter().filter(|&&n| n > 0).count();
    report.elapsed = started.elapsed();
    report
}
