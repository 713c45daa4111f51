//! What VettID's own v1 enrollment driver (vettid-dev `enclave/tests/migration/driver/`) does,
//! against this vault: its `attestation`, `pin-setup`, `enroll-only` and `unlock-only` scenarios.
//!
//! Like the driver, every request is published through JetStream (no reply inbox; the publish
//! waits for the `ENROLLMENT` stream's PubAck) in the envelope `{id, type, timestamp, payload}`,
//! and its answer is awaited only on the correlated subject
//! `OwnerSpace.{guid}.forApp.{op}.{id}.response`. Answers are read into types as strict as the
//! driver's Go structs: unknown fields are ignored (Go's `encoding/json` does), a missing field
//! or `null` is the zero value, and a field of another JSON type fails the whole answer (Go's
//! `UnmarshalTypeError`): so `new_utks` of `pin.unlock` must be strings, of `credential.create`
//! objects. Any non-empty `error` is a failure, as in the driver.
//!
//! The crypto is the app's (tests/src/app.rs), which is what the driver's newest `crypto.go`
//! does too: legacy ECIES for PINs, the `vettid-utk-v1` domain envelope for UTK payloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_RAW};
use base64::Engine;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use vettid_tests::kms::KmsOptions;
use vettid_tests::{app, request_json, System, SystemOptions};

/// One request's bound: `pin.setup` runs Argon2id at production cost (seconds in a debug build).
const LIMIT: Duration = Duration::from_secs(45);

// === The driver's answer types (its Go structs, field for field) ===

#[derive(Debug, Deserialize)]
struct AttestationAnswer {
    attestation: Option<String>,
    public_key: Option<String>,
    #[allow(dead_code)]
    event_id: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct UtkInfo {
    id: Option<String>,
    public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PinSetupAnswer {
    #[allow(dead_code)]
    #[serde(rename = "type")]
    kind: Option<String>,
    #[allow(dead_code)]
    event_id: Option<String>,
    utks: Option<Vec<UtkInfo>>,
    ecies_public_key: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CredentialCreateAnswer {
    #[allow(dead_code)]
    status: Option<String>,
    encrypted_credential: Option<String>,
    new_utks: Option<Vec<UtkInfo>>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PinUnlockAnswer {
    status: Option<String>,
    #[allow(dead_code)]
    migration_status: Option<String>,
    #[allow(dead_code)]
    migration_version: Option<String>,
    new_utks: Option<Vec<String>>,
    error: Option<String>,
}

/// `json.Unmarshal` into a struct: the answer must be a JSON object whose fields have the
/// struct's types; then a non-empty `error` is the vault saying no.
fn go_unmarshal<T: DeserializeOwned>(
    raw: &[u8],
    error: impl Fn(&T) -> Option<&String>,
) -> Result<T, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err(format!("not a JSON object: {v}"));
    }
    let t = T::deserialize(&v).map_err(|e| format!("unmarshal: {e}; raw={v}"))?;
    match error(&t) {
        Some(e) if !e.is_empty() => Err(format!("vault returned error: {e}; raw={v}")),
        _ => Ok(t),
    }
}

fn key32(b64: &str, what: &str) -> Result<[u8; 32], String> {
    B64.decode(b64)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| format!("{what}: not 32 bytes of base64: {b64}"))
}

fn uuid() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// The driver's PHC string: Argon2id m=64 MiB, t=3, p=4, 16-byte salt, 32-byte hash, unpadded
/// B64. The vault validates it but never evaluates it, so the hash bytes need not be computed.
fn driver_phc() -> String {
    let mut salt = [0u8; 16];
    let mut hash = [0u8; 32];
    aws_lc_rs::rand::fill(&mut salt).unwrap();
    aws_lc_rs::rand::fill(&mut hash).unwrap();
    format!(
        "$argon2id$v=19$m=65536,t=3,p=4${}${}",
        B64_RAW.encode(salt),
        B64_RAW.encode(hash)
    )
}

// === The driver's harness: JetStream publish, answer on the correlated subject ===

struct Driver {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
}

impl Driver {
    async fn new(sys: &System) -> Self {
        let client = sys.client().await;
        let js = async_nats::jetstream::new(client.clone());
        Self { client, js }
    }

    /// `publishCore`: subscribe the correlated subject, JetStream-publish the envelope, return
    /// the first answer there.
    async fn publish(
        &self,
        owner: &str,
        subject_op: &str,
        env_type: &str,
        payload: Value,
    ) -> Result<Vec<u8>, String> {
        let id = uuid();
        let envelope = json!({
            "id": id,
            "type": env_type,
            // The driver sends the current time; nothing in the vault reads it.
            "timestamp": "2026-12-01T12:00:00Z",
            "payload": payload,
        });
        let answer_subject = format!("OwnerSpace.{owner}.forApp.{subject_op}.{id}.response");
        let mut answers = self
            .client
            .subscribe(answer_subject.clone())
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        self.client
            .flush()
            .await
            .map_err(|e| format!("flush: {e}"))?;
        let ack = self
            .js
            .publish(
                format!("OwnerSpace.{owner}.forVault.{subject_op}"),
                envelope.to_string().into(),
            )
            .await
            .map_err(|e| format!("js publish: {e}"))?
            .await
            .map_err(|e| format!("js publish ack: {e}"))?;
        assert_eq!(ack.stream, "ENROLLMENT");
        match tokio::time::timeout(LIMIT, answers.next()).await {
            Ok(Some(m)) => Ok(m.payload.to_vec()),
            _ => Err(format!("await response on {answer_subject}: timed out")),
        }
    }
}

/// The driver's `EnrolledUser`.
struct User {
    owner: String,
    pin: String,
    enclave_key: [u8; 32],
    utks: Vec<UtkInfo>,
    ecies: Option<[u8; 32]>,
    encrypted_credential: String,
    new_utks: Vec<UtkInfo>,
}

impl User {
    fn new() -> Self {
        Self {
            owner: uuid(),
            pin: "1234".into(),
            enclave_key: [0; 32],
            utks: Vec::new(),
            ecies: None,
            encrypted_credential: String::new(),
            new_utks: Vec::new(),
        }
    }

    async fn attest(&mut self, d: &Driver) -> Result<(), String> {
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).unwrap();
        let raw = d
            .publish(
                &self.owner,
                "attestation",
                "attestation",
                json!({"nonce": B64.encode(nonce)}),
            )
            .await?;
        let a: AttestationAnswer = go_unmarshal(&raw, |a: &AttestationAnswer| a.error.as_ref())?;
        let (Some(doc), Some(key)) = (a.attestation.filter(|s| !s.is_empty()), a.public_key) else {
            return Err("attestation response missing attestation/public_key".into());
        };
        assert!(B64.decode(doc).is_ok(), "attestation is base64");
        self.enclave_key = key32(&key, "enclave public key")?;
        Ok(())
    }

    async fn setup_pin(&mut self, d: &Driver) -> Result<(), String> {
        let payload = app::pin_setup_payload(&self.enclave_key, &self.pin, None);
        let raw = d.publish(&self.owner, "pin", "pin.setup", payload).await?;
        let a: PinSetupAnswer = go_unmarshal(&raw, |a: &PinSetupAnswer| a.error.as_ref())?;
        self.utks = a.utks.unwrap_or_default();
        if self.utks.is_empty() {
            return Err("pin.setup response has no UTKs".into());
        }
        if let Some(k) = a.ecies_public_key.filter(|k| !k.is_empty()) {
            self.ecies = Some(key32(&k, "ECIES public key")?);
        }
        Ok(())
    }

    async fn create_credential(&mut self, d: &Driver) -> Result<(), String> {
        let utk = self.utks.first().cloned().ok_or("no UTKs")?;
        let public = key32(utk.public_key.as_deref().unwrap_or_default(), "UTK")?;
        let payload = json!({
            "utk_id": utk.id,
            "encrypted_payload": app::utk_payload(&public, &json!({"password_hash": driver_phc()})),
        });
        let raw = d
            .publish(
                &self.owner,
                "credential.create",
                "credential.create",
                payload,
            )
            .await?;
        let a: CredentialCreateAnswer =
            go_unmarshal(&raw, |a: &CredentialCreateAnswer| a.error.as_ref())?;
        self.encrypted_credential = a.encrypted_credential.unwrap_or_default();
        if self.encrypted_credential.is_empty() {
            return Err("credential.create response has no encrypted_credential".into());
        }
        self.new_utks = a.new_utks.unwrap_or_default();
        Ok(())
    }

    /// `unlockPIN` with `utk_id` from `utk`. The driver sends `UTKs[0]`, which its
    /// `credential.create` already spent; this vault refuses a spent UTK (see the test).
    async fn unlock(&mut self, d: &Driver, utk: &UtkInfo) -> Result<PinUnlockAnswer, String> {
        let ecies = self.ecies.ok_or("no ECIES public key captured")?;
        let payload = json!({
            "utk_id": utk.id,
            "encrypted_payload": app::legacy_ecies_payload(&ecies, &json!({"pin": self.pin})),
            "encrypted_credential": self.encrypted_credential,
        });
        let raw = d.publish(&self.owner, "pin", "pin.unlock", payload).await?;
        go_unmarshal(&raw, |a: &PinUnlockAnswer| a.error.as_ref())
    }
}

fn vault_system(enrollment_stream: bool) -> System {
    System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        enrollment_stream,
        ..SystemOptions::default()
    })
}

/// Polls `/health` until the stream has been checked.
fn stream_health(sys: &System) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, h) = sys.health().expect("/health answers");
        let s = h["enrollment_stream"].clone();
        if s["state"] != "unchecked" || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_driver_scenarios_pass_over_jetstream_on_the_correlated_subject() {
    let mut sys = vault_system(true);
    let stream = stream_health(&sys);
    assert_eq!(stream["state"], "ready", "{stream}");
    assert_eq!(stream["created_by_this_parent"], true, "{stream}");
    let d = Driver::new(&sys).await;
    // (The driver's smoke step, JetStream account info, is not repeated: async-nats 0.51 cannot
    // parse nats-server 2.9's account info answer.)

    // attestation
    User::new().attest(&d).await.expect("scenario attestation");

    // pin-setup
    let mut u = User::new();
    u.attest(&d).await.expect("pin-setup: attestation");
    u.setup_pin(&d).await.expect("pin-setup: pin.setup");
    assert!(u.ecies.is_some(), "pin.setup answers ecies_public_key");

    // enroll-only
    let mut u = User::new();
    u.attest(&d).await.expect("enroll-only: attestation");
    u.setup_pin(&d).await.expect("enroll-only: pin.setup");
    u.create_credential(&d)
        .await
        .expect("enroll-only: credential.create");
    assert!(
        !u.new_utks.is_empty(),
        "credential.create answers new_utks objects"
    );

    // unlock-only. The driver's own step reuses the UTK credential.create spent: v1 only warned;
    // this vault refuses it (single use), with a typed error and without counting a PIN attempt.
    let spent = u.utks[0].clone();
    let refused = u
        .unlock(&d, &spent)
        .await
        .expect_err("a spent UTK is refused");
    assert!(refused.contains("unknown or already used UTK"), "{refused}");
    let fresh = u.new_utks[0].clone();
    let a = u.unlock(&d, &fresh).await.expect("unlock-only: pin.unlock");
    assert_eq!(a.status.as_deref(), Some("unlocked"));
    let new_utks = a.new_utks.unwrap_or_default();
    assert!(!new_utks.is_empty());
    for s in &new_utks {
        let (id, key) = s.split_once(':').expect("\"id:base64\"");
        assert!(!id.is_empty());
        key32(key, "pin.unlock UTK").unwrap();
    }

    // The stream kept the requests and the answers (v1's replay store).
    let (_, h) = sys.health().unwrap();
    let metrics = vettid_tests::http::get(sys.http_port, "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("vettid_parent_enrollment_stream_ready 1"),
        "{metrics}"
    );
    assert_eq!(h["enrollment_stream"]["state"], "ready");

    // With the enclave gone, the parent's own answer reaches the correlated subject at once,
    // carrying the request's id, instead of the app waiting out its timeout.
    sys.kill_enclave();
    let owner = uuid();
    let raw = tokio::time::timeout(
        Duration::from_secs(20),
        d.publish(
            &owner,
            "attestation",
            "attestation",
            json!({"nonce": B64.encode([1u8; 32])}),
        ),
    )
    .await
    .expect("an answer in time")
    .expect("an answer on the correlated subject");
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "enclave_unavailable", "{v}");
    assert_eq!(v["request_type"], "attestation", "{v}");
    assert!(v["event_id"].as_str().is_some_and(|e| e.len() == 36), "{v}");
}

/// Answers per subject, counted by a wildcard subscriber.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<HashMap<String, u32>>>);

impl Tally {
    async fn start(
        client: &async_nats::Client,
        pattern: &str,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let tally = Self::default();
        let mut sub = client.subscribe(pattern.to_string()).await.unwrap();
        client.flush().await.unwrap();
        let t = tally.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                if vettid_tests::system::is_pub_ack(&v) {
                    continue;
                }
                *t.0.lock()
                    .unwrap()
                    .entry(m.subject.to_string())
                    .or_default() += 1;
            }
        });
        (tally, task)
    }

    fn get(&self, subject: &str) -> u32 {
        self.0.lock().unwrap().get(subject).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parents_in_one_queue_group_answer_each_request_once_per_subject() {
    let first = System::start(SystemOptions {
        enrollment_stream: true,
        ..SystemOptions::default()
    });
    let second = System::start_second_host(
        &first,
        SystemOptions {
            enrollment_stream: true,
            ..SystemOptions::default()
        },
    );
    // Both parents check the one shared stream; exactly one of them created it.
    let (a, b) = (stream_health(&first), stream_health(&second));
    assert_eq!(
        (a["state"].as_str(), b["state"].as_str()),
        (Some("ready"), Some("ready"))
    );
    assert_ne!(
        a["created_by_this_parent"], b["created_by_this_parent"],
        "{a} {b}"
    );

    let client = first.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let (answers, collector) = Tally::start(&client, "OwnerSpace.*.forApp.>").await;
    let (inbox_answers, inbox_collector) = Tally::start(&client, "_INBOX.v1drv.>").await;

    const N: usize = 24;
    let owners: Vec<String> = (0..N).map(|i| format!("dedup-{i}")).collect();
    let ids: Vec<String> = (0..N).map(|_| uuid()).collect();
    for i in 0..N {
        let subject = format!("OwnerSpace.{}.forVault.attestation", owners[i]);
        let body = json!({"id": ids[i], "type": "attestation", "payload": {"nonce": B64.encode([i as u8; 32])}});
        match i % 3 {
            // The driver: JetStream publish, no reply inbox of its own.
            0 => {
                js.publish(subject, body.to_string().into())
                    .await
                    .unwrap()
                    .await
                    .expect("PubAck");
            }
            // An Android app: core publish, no inbox.
            1 => client
                .publish(subject, body.to_string().into())
                .await
                .unwrap(),
            // Request/reply (Lambdas, tools): an inbox, which also gets the stream's PubAck.
            _ => client
                .publish_with_reply(
                    subject,
                    format!("_INBOX.v1drv.{i}"),
                    body.to_string().into(),
                )
                .await
                .unwrap(),
        }
    }
    // The request/reply path still answers (the PubAck is skipped, not taken for the answer).
    let v = request_json(
        &client,
        "OwnerSpace.dedup-rr.forVault.attestation",
        json!({"id": "rr-1", "payload": {"nonce": B64.encode([9u8; 32])}}),
        LIMIT,
    )
    .await
    .expect("request/reply answered");
    assert_eq!(v["event_id"], "rr-1", "{v}");
    assert!(v["attestation"].is_string(), "{v}");

    let correlated = |i: usize| {
        format!(
            "OwnerSpace.{}.forApp.attestation.{}.response",
            owners[i], ids[i]
        )
    };
    let legacy = |i: usize| format!("OwnerSpace.{}.forApp.attestation.response", owners[i]);
    let deadline = std::time::Instant::now() + LIMIT;
    while (0..N).any(|i| answers.get(&correlated(i)) == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every request was answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late duplicates would arrive within this.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..N {
        assert_eq!(answers.get(&correlated(i)), 1, "{}", correlated(i));
        assert_eq!(answers.get(&legacy(i)), 1, "{}", legacy(i));
        if i % 3 == 2 {
            assert_eq!(
                inbox_answers.get(&format!("_INBOX.v1drv.{i}")),
                1,
                "inbox {i}"
            );
        }
    }
    assert_eq!(
        answers.get("OwnerSpace.dedup-rr.forApp.attestation.rr-1.response"),
        1
    );
    // Both hosts served (the queue group spread the requests), each request once.
    let served = |s: &System| {
        let m = vettid_tests::http::get(s.http_port, "/metrics").unwrap().1;
        m.lines()
            .filter(|l| {
                l.starts_with("vettid_parent_requests_total{family=\"OwnerSpace\",outcome=\"Ok\"}")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(served(&first) + served(&second), N as u64 + 1);
    collector.abort();
    inbox_collector.abort();
}

#[test]
fn a_missing_stream_is_reported_when_the_parent_may_not_create_it() {
    let sys = System::start(SystemOptions::default());
    let s = stream_health(&sys);
    assert_eq!(s["state"], "missing", "{s}");
    assert_eq!(s["create"], false);
    assert!(
        s["reason"].as_str().unwrap().contains("create = false"),
        "{s}"
    );
    let metrics = vettid_tests::http::get(sys.http_port, "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("vettid_parent_enrollment_stream_ready 0"),
        "{metrics}"
    );
}
