//! One app user of the vault over NATS, for the vault benchmark (`vettid-vault-bench`) and the
//! vault fault tests (`tests/vault_faults.rs`): enrol, unlock, credential and secrets calls, with
//! the UTK bookkeeping a real app does.
//!
//! Unlike `tests/vault.rs`, which plays the app step by step and checks every reply, this client
//! returns every outcome (success, error reply, or no answer) instead of panicking, so a fault test
//! can count what each request saw. It takes the attestation key from the reply without verifying
//! the document: `tests/vault.rs` proves the verification, and a benchmark should not time it.
//!
//! Also here: the two harness steps the vault measurements need and [`System`] does not offer, a
//! parent with a longer request timeout and an enclave with extra flags (see
//! [`restart_parent_with_timeout`], [`restart_enclave_with`]).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::app::{self, ReplyKey, Utk};
use crate::proc::{bin_path, Child};
use crate::replies::Requester;
use crate::system::System;

/// The vault keeps at most this many live UTKs per vault (G24) and prunes the oldest; the client
/// keeps the same number, newest last, so it never offers one the vault already pruned.
pub const MAX_LIVE_UTKS: usize = 16;

/// Codes after which a UTK is certainly still live: the vault changes nothing, the spend
/// included, unless it answers a success (docs/VAULT.md, "RPO 0").
const UNSPENT_CODES: &[&str] = &[
    "storage_unavailable",
    "storage_conflict",
    "vault_locked",
    "KMSUnavailable",
    "KMSThrottled",
    "busy",
    "deadline_exceeded",
    "draining",
];

/// What one request got.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A success reply.
    Ok(Value),
    /// An error reply (`{type:"error", code, …}`) from the enclave or the parent; the whole reply.
    Error(Value),
    /// No answer within the limit, or the request could not be sent (the text says which).
    Lost(String),
}

impl Answer {
    /// The success reply.
    ///
    /// # Panics
    /// With the answer, when it is not a success (`what` names the step).
    pub fn expect_ok(self, what: &str) -> Value {
        match self {
            Answer::Ok(v) => v,
            other => panic!("{what}: expected a success, got {other:?}"),
        }
    }

    /// The error code, or `""` for a success, or `"lost: …"`.
    pub fn code(&self) -> String {
        match self {
            Answer::Ok(_) => String::new(),
            Answer::Error(v) => v["code"].as_str().unwrap_or("?").to_owned(),
            Answer::Lost(why) => format!("lost: {why}"),
        }
    }

    /// Whether it is a success.
    pub fn is_ok(&self) -> bool {
        matches!(self, Answer::Ok(_))
    }
}

/// One user of the vault, as an app sees it.
pub struct VaultUser {
    requester: Requester,
    /// The owner-space GUID.
    pub owner: String,
    pin: String,
    password_hash: String,
    ecies: [u8; 32],
    utks: Vec<Utk>,
    limit: Duration,
}

/// Request ids, unique in this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl VaultUser {
    /// A user whose requests go through `requester` (every answer counted). `password_hash` is an Argon2id PHC string ([`app::phc_password_hash`]);
    /// users may share one, it is only compared. Every request waits at most `limit`.
    pub fn new(requester: Requester, owner: &str, password_hash: &str, limit: Duration) -> Self {
        Self {
            requester,
            owner: owner.to_owned(),
            pin: String::new(),
            password_hash: password_hash.to_owned(),
            ecies: [0; 32],
            utks: Vec::new(),
            limit,
        }
    }

    /// This user's keys (PIN, password hash, vault ECIES key, UTKs) on another client: the same
    /// app talking through another host.
    pub fn with_keys_of(mut self, other: &VaultUser) -> Self {
        self.pin = other.pin.clone();
        self.password_hash = other.password_hash.clone();
        self.ecies = other.ecies;
        self.utks = other.utks.clone();
        self
    }

    /// UTKs this client holds.
    pub fn live_utks(&self) -> usize {
        self.utks.len()
    }

    /// Sends `{id, type, payload}` to `OwnerSpace.{owner}.forVault.{op}`.
    pub async fn call(&self, op: &str, kind: &str, payload: Value) -> Answer {
        let subject = format!("OwnerSpace.{}.forVault.{op}", self.owner);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let request = json!({"id": format!("evt-{id}"), "type": kind, "payload": payload});
        match self.requester.request(&subject, &request, self.limit).await {
            Err(why) => Answer::Lost(why),
            Ok(v) if v["type"] == "error" => Answer::Error(v),
            Ok(v) => Answer::Ok(v),
        }
    }

    /// `attestation` for this user: leaves a key the enclave will open `pin.setup` with.
    pub async fn attest(&self) -> Answer {
        self.call(
            "attestation",
            "attestation",
            json!({"nonce": B64.encode([0x5a; 32])}),
        )
        .await
    }

    /// Waits until the enclave answers this user (after a restart the parent may still be
    /// reconnecting: `enclave_unavailable`). Returns how long that took.
    ///
    /// # Panics
    /// If no attestation succeeds within `limit`.
    pub async fn wait_answering(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let answer = self.attest().await;
            if answer.is_ok() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "the enclave did not answer within {limit:?}: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Attests, then `pin.setup` with `pin`; on success keeps the ECIES key and the UTKs.
    pub async fn setup(&mut self, pin: &str) -> Answer {
        let key: [u8; 32] = match self.attest().await {
            Answer::Ok(r) => B64
                .decode(r["public_key"].as_str().unwrap_or_default())
                .ok()
                .and_then(|k| k.try_into().ok())
                .expect("attestation reply carries a 32-byte public_key"),
            other => return other,
        };
        let payload = app::pin_setup_payload(&key, pin, Some(json!({"first_name": "Bench"})));
        let answer = self.call("pin", "pin.setup", payload).await;
        if let Answer::Ok(r) = &answer {
            self.pin = pin.to_owned();
            self.ecies = B64
                .decode(r["ecies_public_key"].as_str().unwrap_or_default())
                .ok()
                .and_then(|k| k.try_into().ok())
                .expect("pin.setup reply carries a 32-byte ecies_public_key");
            self.utks = app::parse_utks(&r["utks"]);
        }
        answer
    }

    /// `pin.unlock` with the enrolled PIN.
    pub async fn unlock(&mut self) -> Answer {
        let pin = self.pin.clone();
        self.unlock_with(&pin).await
    }

    /// `pin.unlock` with `pin` (a wrong one counts an attempt).
    pub async fn unlock_with(&mut self, pin: &str) -> Answer {
        let plain = json!({"pin": pin});
        let Some(utk) = self.utks.pop() else {
            return Answer::Lost("the client holds no live UTK".into());
        };
        let payload = json!({
            "utk_id": utk.id,
            "encrypted_payload": app::legacy_ecies_payload(&self.ecies, &plain),
        });
        let answer = self.call("pin", "pin.unlock", payload).await;
        self.settle(utk, &answer);
        answer
    }

    /// Brings a cold vault into the enclave's memory, locked: KMS `Decrypt` of its material but
    /// no Argon2id and no attempt counted (a `pin.unlock` with a UTK the vault never had answers
    /// `utk_invalid` after the vault was loaded, `not_enrolled` when there is none). What a vault
    /// looks like after idle lock.
    pub async fn load_locked(&self) -> Answer {
        let payload = json!({"utk_id": "utk-none", "encrypted_payload": B64.encode([0u8; 80])});
        self.call("pin", "pin.unlock", payload).await
    }

    /// A UTK-consuming op: `plain` (plus the password hash) sealed to the newest UTK.
    pub async fn utk_op(&mut self, op: &str, mut plain: Value) -> Answer {
        plain["password_hash"] = self.password_hash.clone().into();
        let Some(utk) = self.utks.pop() else {
            return Answer::Lost("the client holds no live UTK".into());
        };
        let payload = json!({
            "utk_id": utk.id,
            "encrypted_payload": app::utk_payload(&utk.public_key, &plain),
        });
        let answer = self.call(op, op, payload).await;
        self.settle(utk, &answer);
        answer
    }

    /// UTK bookkeeping after a reply: a success spent `utk` and brought new ones; an error that
    /// changed nothing leaves it live; `utk_invalid` drops it; an outcome that does not say (no
    /// answer, the enclave gone mid-request) keeps it as the last choice.
    fn settle(&mut self, utk: Utk, answer: &Answer) {
        match answer {
            Answer::Ok(r) => {
                if r.get("new_utks").is_some() {
                    self.utks.extend(app::parse_utks(&r["new_utks"]));
                }
            }
            Answer::Error(v) if UNSPENT_CODES.contains(&v["code"].as_str().unwrap_or("")) => {
                self.utks.push(utk);
            }
            Answer::Error(v) if v["code"] == "invalid_pin" || v["code"] == "decryption_failed" => {
                self.utks.push(utk);
            }
            Answer::Error(v) if v["code"] == "utk_invalid" => {}
            // The enclave died with the request, or no answer came: it may or may not have been
            // spent. Keep it as the last choice (and the first the vault would prune).
            _ => self.utks.insert(0, utk),
        }
        if self.utks.len() > MAX_LIVE_UTKS {
            let surplus = self.utks.len() - MAX_LIVE_UTKS;
            self.utks.drain(..surplus);
        }
    }

    /// `credential.create` (secrets operations need a credential).
    pub async fn create_credential(&mut self) -> Answer {
        self.utk_op("credential.create", json!({})).await
    }

    /// `secrets.add`.
    pub async fn add_secret(&mut self, name: &str, value: &str) -> Answer {
        self.utk_op("secrets.add", json!({"name": name, "value": value}))
            .await
    }

    /// `secrets.retrieve`, sealed to `reply`.
    pub async fn retrieve_secret(&mut self, id: &str, reply: &ReplyKey) -> Answer {
        self.utk_op(
            "secrets.retrieve",
            json!({"id": id, "reply_key": reply.public_b64()}),
        )
        .await
    }

    /// `secrets.list`, opened: every secret's `(id, name)`.
    pub async fn list_secrets(&mut self) -> Result<Vec<(String, String)>, Answer> {
        let reply = ReplyKey::generate();
        match self
            .utk_op("secrets.list", json!({"reply_key": reply.public_b64()}))
            .await
        {
            Answer::Ok(r) => {
                let list = reply.open_json(r["encrypted_list"].as_str().unwrap_or_default());
                let items: Vec<(String, String)> = list
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                (
                                    s["id"].as_str().unwrap_or_default().to_owned(),
                                    s["name"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(
                    r["count"].as_u64(),
                    Some(items.len() as u64),
                    "secrets.list count matches its list"
                );
                Ok(items)
            }
            other => Err(other),
        }
    }
}

/// Replaces the system's parent with one whose enclave request timeout is `timeout` (the harness
/// uses 5 s; eight unlocks queued behind one Argon2 permit take longer). Same config otherwise.
///
/// # Panics
/// If the parent's config cannot be read or rewritten, or it does not become healthy in 15 s.
pub fn restart_parent_with_timeout(sys: &mut System, timeout: Duration) {
    let original = sys.dir.path().join("parent.toml");
    let toml = std::fs::read_to_string(&original).expect("read parent.toml");
    assert!(
        toml.contains("request_timeout_ms = 5000"),
        "the harness's parent.toml changed; update restart_parent_with_timeout"
    );
    let toml = toml.replace(
        "request_timeout_ms = 5000",
        &format!("request_timeout_ms = {}", timeout.as_millis()),
    );
    let config = sys.dir.path().join("parent-long-timeout.toml");
    std::fs::write(&config, toml).expect("write parent config");
    if let Some(mut old) = sys.parent.take() {
        old.kill();
    }
    let mut cmd = Command::new(bin_path("vettid-parent"));
    cmd.arg("--config").arg(&config);
    if sys.kms.is_some() {
        cmd.envs(crate::kms::parent_env());
    }
    sys.parent = Some(Child::spawn(
        "vettid-parent",
        cmd,
        &sys.dir.path().join("parent.log"),
    ));
    assert!(
        sys.wait_healthy(Duration::from_secs(15)),
        "parent with a longer timeout did not become healthy"
    );
}

/// Restarts the enclave as [`System::start_enclave`] does, with `extra` flags (for example
/// `--argon2-concurrency 1`), and waits until the parent has reconnected. `System::start_enclave`
/// afterwards goes back to the system's own flags.
///
/// # Panics
/// If the system has no local KMS, or the enclave or the parent do not come up in time.
pub fn restart_enclave_with(sys: &mut System, extra: &[&str]) {
    sys.kill_enclave();
    let socket = sys.socket();
    let _ = std::fs::remove_file(&socket);
    let kms = sys
        .kms
        .as_ref()
        .expect("a system with a local KMS")
        .endpoint();
    let mut cmd = Command::new(bin_path("vettid-enclave"));
    cmd.arg("--listen")
        .arg(sys.enclave_addr())
        .arg("--dev-dir")
        .arg(sys.dir.path())
        .args(extra)
        .args(kms.enclave_args(&sys.kms_tunnel()));
    if !sys.opts.v2_only {
        cmd.arg("--accept-v1-envelopes");
    }
    let child = Child::spawn("vettid-enclave", cmd, &sys.dir.path().join("enclave.log"));
    sys.enclave = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "enclave socket did not appear");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        sys.wait_healthy(Duration::from_secs(15)),
        "parent did not reconnect to the enclave"
    );
}

/// `VmHWM` (peak resident set) and `VmRSS` of process `pid`, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
