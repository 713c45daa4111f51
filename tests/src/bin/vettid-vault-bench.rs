//! `vettid-vault-bench`: what the vault costs, through the real system (nats-server → parent →
//! Unix socket → dev enclave → KMS tunnel → local KMS over TLS), with production Argon2id
//! (t=3, m=256 MiB, p=4). The baseline, an app `attestation` round trip (no vault), is measured
//! in the same run so the vault figures can be read as ratios on any machine.
//!
//! ```text
//! cargo build --release --bins --features vettid-enclave/dev
//! target/release/vettid-vault-bench            # --users 10 --secret-ops 500 --concurrent 8 (--help)
//! ```
//!
//! Phases, in order (about 30 s on 2 vCPUs):
//! 1. baseline: 200 warm-up then `--baseline N` attestations, one at a time;
//! 2. `pin.setup` of each user (KMS GenerateDataKey with Recipient, Argon2id, create-only write);
//! 3. warm `pin.unlock` of each user (cached vault: counter write, Argon2id, state write);
//! 4. `secrets.add` then `secrets.retrieve`, `--secret-ops` each, on one unlocked vault: the
//!    non-Argon2 cost of a mutation (UTK envelope, state AEAD, conditional write via the parent);
//!    Then the same on a v2 vault through `vettid-app-client` (sealed, bound requests and sealed
//!    replies the client checks), plus `--users` warm unlocks of it: v2 / v1 in the same run is
//!    the cost of reply authentication;
//! 5. enclave restart, then cold `pin.unlock` of each user (adds KMS Decrypt with Recipient);
//! 6. for `--argon2-concurrency` 2 then 1, on a fresh enclave process: `--concurrent` users'
//!    vaults loaded (locked), then all unlocked at once; total time and the enclave's VmHWM.
//!
//! The harness's parent gives the enclave 5 s per request; eight unlocks queued behind one
//! Argon2 permit need longer, so this run's parent allows 60 s.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use vettid_app_client::VaultClient;
use vettid_tests::app;
use vettid_tests::kms::KmsOptions;
use vettid_tests::vault_client::{
    memory_kib, restart_enclave_with, restart_parent_with_timeout, Answer, VaultUser,
};
use vettid_tests::{System, SystemOptions};

/// Per-request limit of the client (and, via the parent, of the enclave call).
const LIMIT: Duration = Duration::from_secs(60);
/// Memory one Argon2id derivation holds (production m).
const ARGON2_MIB: f64 = 256.0;

/// What the vault costs, with the attestation round trip as the baseline.
#[derive(clap::Parser)]
#[command(name = "vettid-vault-bench")]
struct Args {
    /// Users enrolled (`pin.setup`) and unlocked warm and cold.
    #[arg(long, default_value_t = 10, value_parser = range(1, 1000))]
    users: usize,
    /// `secrets.add` and `secrets.retrieve` each, on one vault (which holds at most 1000 secrets).
    #[arg(long, default_value_t = 500, value_parser = range(1, 1000))]
    secret_ops: usize,
    /// Users unlocked at once in the Argon2 memory phase.
    #[arg(long, default_value_t = 8, value_parser = range(1, 1000))]
    concurrent: usize,
    /// Baseline attestations, one at a time.
    #[arg(long, default_value_t = 2000, value_parser = range(10, 1_000_000))]
    baseline: usize,
}

fn range(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..=max)
}

/// Latency summary of one measurement, in milliseconds.
struct Row {
    name: String,
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn row(name: &str, mut lat: Vec<Duration>) -> Row {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    Row {
        name: name.to_owned(),
        n: lat.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: pick(1.0),
    }
}

async fn timed(
    what: &str,
    answer: impl std::future::Future<Output = Answer>,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    match answer.await {
        Answer::Ok(v) => Ok((started.elapsed(), v)),
        other => anyhow::bail!("{what}: {other:?}"),
    }
}

/// One `--argon2-concurrency` setting: all users unlocked at once on a fresh enclave.
struct Concurrency {
    permits: usize,
    unlocks: usize,
    total: Duration,
    first: Duration,
    base_kib: u64,
    peak_kib: u64,
}

async fn concurrent_unlocks(
    sys: &mut System,
    users: &mut [VaultUser],
    permits: usize,
) -> anyhow::Result<Concurrency> {
    restart_enclave_with(sys, &["--argon2-concurrency", &permits.to_string()]);
    users[0].wait_answering(Duration::from_secs(10)).await;
    // KMS first, so the measured part is Argon2id and the writes.
    for u in users.iter() {
        let code = u.load_locked().await.code();
        anyhow::ensure!(code == "utk_invalid", "loading {}: {code}", u.owner);
    }
    let pid = sys.enclave.as_ref().map(|c| c.pid()).unwrap_or(0);
    let (_, base_kib) = memory_kib(pid).ok_or_else(|| anyhow::anyhow!("no /proc/{pid}"))?;
    let started = Instant::now();
    let mut first = Duration::MAX;
    let results = futures::future::join_all(users.iter_mut().map(|u| async move {
        let t = Instant::now();
        (u.unlock().await, t.elapsed())
    }))
    .await;
    let total = started.elapsed();
    for (answer, took) in results {
        anyhow::ensure!(answer.is_ok(), "concurrent unlock: {answer:?}");
        first = first.min(took);
    }
    let (peak_kib, _) = memory_kib(pid).ok_or_else(|| anyhow::anyhow!("no /proc/{pid}"))?;
    Ok(Concurrency {
        permits,
        unlocks: users.len(),
        total,
        first,
        base_kib,
        peak_kib,
    })
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), \"{model}\", {date}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let users_n = a.users.max(a.concurrent);
    let run_started = Instant::now();
    println!("vettid-vault-bench: {}", machine());
    let mut sys = System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        ..SystemOptions::default()
    });
    restart_parent_with_timeout(&mut sys, LIMIT);
    let password_hash = app::phc_password_hash("bench password");
    let client = vettid_tests::replies::Requester::new(sys.client().await).await;
    let mut users: Vec<VaultUser> = (0..users_n)
        .map(|i| {
            VaultUser::new(
                client.clone(),
                &format!("bench-user-{i}"),
                &password_hash,
                LIMIT,
            )
        })
        .collect();
    users[0].wait_answering(Duration::from_secs(10)).await;

    // 1. Baseline.
    let base = VaultUser::new(client.clone(), "bench-baseline", &password_hash, LIMIT);
    for _ in 0..200 {
        timed("attestation", base.attest()).await?;
    }
    let mut lat = Vec::with_capacity(a.baseline);
    for _ in 0..a.baseline {
        lat.push(timed("attestation", base.attest()).await?.0);
    }
    let mut rows = vec![row("app `attestation` (baseline, no vault)", lat)];

    // 2. pin.setup (the attestation it needs first is inside the time: ~0.5 ms of ~1 s).
    let mut lat = Vec::new();
    for (i, u) in users.iter_mut().enumerate() {
        lat.push(
            timed("pin.setup", u.setup(&format!("{:06}", 240_000 + i)))
                .await?
                .0,
        );
    }
    rows.push(row(
        "`pin.setup` (attestation + KMS GenerateDataKey + Argon2id + create)",
        lat,
    ));

    // 3. Warm unlock: every vault is cached and unlocked since its setup.
    let mut lat = Vec::new();
    for u in users.iter_mut() {
        lat.push(timed("warm pin.unlock", u.unlock()).await?.0);
    }
    rows.push(row(
        "warm `pin.unlock` (counter write + Argon2id + state write)",
        lat,
    ));

    // 4. Secrets on one unlocked vault.
    let reply = app::ReplyKey::generate();
    let u = &mut users[0];
    timed("credential.create", u.create_credential()).await?;
    let (mut add, mut ids) = (Vec::new(), Vec::new());
    for i in 0..a.secret_ops {
        let value = format!("bench-secret-value-{i:04}-{}", "x".repeat(32));
        let (took, r) = timed(
            "secrets.add",
            u.add_secret(&format!("secret-{i:04}"), &value),
        )
        .await?;
        add.push(took);
        ids.push(r["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut retrieve = Vec::new();
    for id in &ids {
        let (took, r) = timed("secrets.retrieve", u.retrieve_secret(id, &reply)).await?;
        anyhow::ensure!(r["status"] == "retrieved", "retrieve: {r}");
        retrieve.push(took);
    }
    let object_kib = stored_size(&sys.storage_root(), &users[0].owner) / 1024;
    // Every mutation re-seals and rewrites the whole state: show how the cost grows with it.
    let tenth = (add.len() / 10).max(1);
    let growth = (
        row("", add[..tenth].to_vec()).p50,
        row("", add[add.len() - tenth..].to_vec()).p50,
    );
    rows.push(row(
        &format!("`secrets.add` (vault growing to {} secrets)", a.secret_ops),
        add,
    ));
    rows.push(row(
        &format!(
            "`secrets.retrieve` ({} secrets, object {object_kib} KiB)",
            a.secret_ops
        ),
        retrieve,
    ));

    // 4b. The same through the v2 envelope (reply authentication), on a vault of its own.
    let v1_p50 = (
        rows[2].p50,
        rows[rows.len() - 2].p50,
        rows[rows.len() - 1].p50,
    );
    let v2 = v2_phase(&sys, &password_hash, a.secret_ops, a.users).await?;
    rows.push(row(
        &format!(
            "v2 `secrets.add` (vault growing to {} secrets)",
            a.secret_ops
        ),
        v2.add,
    ));
    rows.push(row(
        &format!("v2 `secrets.retrieve` ({} secrets)", a.secret_ops),
        v2.retrieve,
    ));
    rows.push(row("v2 warm `pin.unlock` (one vault, repeated)", v2.unlock));
    let n = rows.len();
    let v2_ratios = (
        rows[n - 1].p50 / v1_p50.0,
        rows[n - 3].p50 / v1_p50.1,
        rows[n - 2].p50 / v1_p50.2,
    );

    // 5. Cold unlock: a new enclave process knows no vault.
    sys.start_enclave();
    anyhow::ensure!(
        sys.wait_healthy(Duration::from_secs(15)),
        "parent did not reconnect"
    );
    users[0].wait_answering(Duration::from_secs(10)).await;
    let mut lat = Vec::new();
    for u in users.iter_mut() {
        lat.push(timed("cold pin.unlock", u.unlock()).await?.0);
    }
    rows.push(row(
        "cold `pin.unlock` (+ storage read + KMS Decrypt with Recipient)",
        lat,
    ));

    // 6. Argon2 permits under a burst of unlocks.
    let burst = &mut users[..a.concurrent];
    let two = concurrent_unlocks(&mut sys, burst, 2).await?;
    let one = concurrent_unlocks(&mut sys, burst, 1).await?;

    let base_p50 = rows[0].p50;
    println!();
    println!("| measurement | n | p50 ms | p99 ms | max ms | p50 / attestation p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0}x |",
            r.name,
            r.n,
            r.p50,
            r.p99,
            r.max,
            r.p50 / base_p50
        );
    }
    println!();
    println!("| `--argon2-concurrency` | concurrent unlocks | first answered s | all answered s | enclave RSS before MiB | peak VmHWM MiB | peak − before MiB | bound: permits × 256 MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in [&two, &one] {
        let (base, peak) = (c.base_kib as f64 / 1024.0, c.peak_kib as f64 / 1024.0);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} |",
            c.permits,
            c.unlocks,
            c.first.as_secs_f64(),
            c.total.as_secs_f64(),
            base,
            peak,
            peak - base,
            c.permits as f64 * ARGON2_MIB
        );
    }
    println!();
    println!(
        "2 permits vs 1: total time {:.2}x, peak memory above base {:.2}x",
        two.total.as_secs_f64() / one.total.as_secs_f64(),
        (two.peak_kib.saturating_sub(two.base_kib)) as f64
            / (one.peak_kib.saturating_sub(one.base_kib)).max(1) as f64
    );
    println!(
        "secrets.add p50, first tenth / last tenth of the {} adds: {:.2} / {:.2} ms",
        a.secret_ops, growth.0, growth.1
    );
    println!(
        "v2 / v1 p50 (reply authentication): warm pin.unlock {:.3}x, secrets.add {:.3}x, secrets.retrieve {:.3}x",
        v2_ratios.0, v2_ratios.1, v2_ratios.2
    );
    println!("whole run {:.0} s", run_started.elapsed().as_secs_f64());
    Ok(())
}

/// Latencies of the v2 phase.
struct V2 {
    add: Vec<Duration>,
    retrieve: Vec<Duration>,
    unlock: Vec<Duration>,
}

/// One request of a v2 app: sealed by the client, its answer checked by it.
async fn v2_call(
    nats: &async_nats::Client,
    c: &mut VaultClient,
    out: vettid_app_client::Outgoing,
) -> anyhow::Result<(Duration, serde_json::Map<String, serde_json::Value>)> {
    let subject = format!("OwnerSpace.{}.forVault.{}", c.owner(), out.token);
    let started = Instant::now();
    let msg = tokio::time::timeout(
        LIMIT,
        nats.request(subject, serde_json::to_vec(&out.request)?.into()),
    )
    .await??;
    let body = c
        .finish(out.pending, &msg.payload)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.token))?;
    Ok((started.elapsed(), body))
}

/// A v2 user enrolled through the app's crate, then timed like phases 3 and 4.
async fn v2_phase(
    sys: &System,
    password_hash: &str,
    secret_ops: usize,
    unlocks: usize,
) -> anyhow::Result<V2> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let nats = sys.client().await;
    let owner = "bench-v2";
    let nonce = [0x61u8; 32];
    let msg = nats
        .request(
            format!("OwnerSpace.{owner}.forVault.attestation"),
            serde_json::to_vec(&serde_json::json!({"nonce": b64.encode(nonce)}))?.into(),
        )
        .await?;
    let r: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    let doc = b64.decode(r["attestation"].as_str().unwrap_or_default())?;
    let pem = std::fs::read_to_string(sys.mock_root_pem())?;
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let policy = vettid_attestation::Policy::skip_pcr_check_unsafe()
        .with_extra_root(b64.decode(der)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let key = vettid_app_client::attest::verify(&doc, policy, now, &nonce, owner)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut c = VaultClient::new(owner);
    let pin = "731904";
    let out = c.setup(&key, pin, None)?;
    v2_call(&nats, &mut c, out).await?;
    let out = c.create_credential(password_hash)?;
    v2_call(&nats, &mut c, out).await?;
    let mut v2 = V2 {
        add: Vec::new(),
        retrieve: Vec::new(),
        unlock: Vec::new(),
    };
    let mut ids = Vec::new();
    for i in 0..secret_ops {
        let value = format!("bench-secret-value-{i:04}-{}", "x".repeat(32));
        let plain = serde_json::json!({"password_hash": password_hash, "name": format!("secret-{i:04}"), "value": value});
        let out = c.utk_request("secrets.add", &plain)?;
        let (took, r) = v2_call(&nats, &mut c, out).await?;
        v2.add.push(took);
        ids.push(r["id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &ids {
        let plain = serde_json::json!({"password_hash": password_hash, "id": id});
        let out = c.utk_request("secrets.retrieve", &plain)?;
        let (took, r) = v2_call(&nats, &mut c, out).await?;
        anyhow::ensure!(r["secret"]["id"] == *id, "v2 retrieve: {r:?}");
        v2.retrieve.push(took);
    }
    for _ in 0..unlocks {
        let out = c.unlock(pin)?;
        v2.unlock.push(v2_call(&nats, &mut c, out).await?.0);
    }
    Ok(v2)
}

/// Size of the stored vault object of `owner` in the fs store (0 if not found).
fn stored_size(root: &std::path::Path, owner: &str) -> u64 {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if path.is_dir() {
                stack.push(path.clone());
            } else if name.contains(owner) && name.contains("vault.v2") && !name.ends_with(".meta")
            {
                return entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    0
}
