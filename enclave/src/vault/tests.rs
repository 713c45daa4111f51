//! Vault behaviour over a real link connection to an in-memory parent, with a test sealer and
//! weak Argon2 parameters. End-to-end tests (tests/tests/vault.rs) repeat the important cases
//! through NATS, the real parent, the real KMS client and the local KMS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use vettid_link::{Connection, Handler, LinkConfig, RequestCtx};
use vettid_protocol::{
    NatsMessage, PutCondition, Request, Response, Role, StorageRequest, StorageResponse, WireError,
};
use vettid_vault_crypto::{domain, legacy_ecies, Domain, KdfParams};

use super::{PinPolicy, VaultConfig};
use crate::sealing::test_sealer::TestSealer;
use crate::sealing::SealError;
use crate::{EnclaveConfig, EnclaveState, Processor};

/// The parent's object store, in memory, with S3's conditional semantics and fault switches.
#[derive(Default)]
struct MemParent {
    objects: Mutex<HashMap<String, (Bytes, String)>>,
    fail_puts: AtomicBool,
    fail_all: AtomicBool,
    etags: AtomicU32,
    /// Every body the enclave asked to store (what the host sees).
    written: Mutex<Vec<Bytes>>,
}

impl Handler for MemParent {
    async fn handle(&self, request: Request, _ctx: RequestCtx) -> Result<Response, WireError> {
        let Request::Storage(req) = request else {
            return Err(WireError::new(
                vettid_protocol::ErrorCode::UnknownRequest,
                "no",
            ));
        };
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(WireError::new(
                vettid_protocol::ErrorCode::Unavailable,
                "s3 down",
            ));
        }
        let mut objects = self.objects.lock().unwrap();
        let r = match req {
            StorageRequest::Get { key } => match objects.get(&key) {
                Some((body, etag)) => StorageResponse::Object {
                    body: body.clone(),
                    etag: etag.clone(),
                },
                None => StorageResponse::NotFound,
            },
            StorageRequest::Head { key } => match objects.get(&key) {
                Some((body, etag)) => StorageResponse::Meta {
                    etag: etag.clone(),
                    size: body.len() as u64,
                },
                None => StorageResponse::NotFound,
            },
            StorageRequest::Put {
                key,
                body,
                condition,
            } => {
                if self.fail_puts.load(Ordering::SeqCst) {
                    return Err(WireError::new(
                        vettid_protocol::ErrorCode::Unavailable,
                        "s3 down",
                    ));
                }
                let ok = match (&condition, objects.get(&key)) {
                    (PutCondition::Create, None) => true,
                    (PutCondition::IfMatch(e), Some((_, cur))) => e == cur,
                    _ => false,
                };
                if !ok {
                    StorageResponse::Conflict
                } else {
                    let etag = format!("e{}", self.etags.fetch_add(1, Ordering::SeqCst));
                    self.written.lock().unwrap().push(body.clone());
                    objects.insert(key, (body, etag.clone()));
                    StorageResponse::Written { etag }
                }
            }
            StorageRequest::Delete { key, .. } => match objects.remove(&key) {
                Some(_) => StorageResponse::Deleted,
                None => StorageResponse::NotFound,
            },
            StorageRequest::List { .. } => StorageResponse::Listing {
                objects: vec![],
                continuation: None,
            },
        };
        Ok(Response::Storage(r))
    }
}

struct Harness {
    p: Processor,
    parent: Arc<MemParent>,
    sealer: Arc<TestSealer>,
}

fn config() -> VaultConfig {
    VaultConfig {
        kdf: KdfParams::for_tests(64, 1, 1),
        pin: PinPolicy {
            free_attempts: 2,
            max_attempts: 4,
            backoff_base: std::time::Duration::ZERO,
            backoff_cap: std::time::Duration::ZERO,
        },
        ..VaultConfig::default()
    }
}

async fn harness_with(config: VaultConfig, parent: Arc<MemParent>) -> Harness {
    harness_sealed(config, parent, Arc::default()).await
}

/// A second enclave over the same storage and the same KMS key (a restart, or another host).
async fn restart(h: &Harness) -> Harness {
    harness_sealed(config(), h.parent.clone(), h.sealer.clone()).await
}

async fn harness_sealed(
    config: VaultConfig,
    parent: Arc<MemParent>,
    sealer: Arc<TestSealer>,
) -> Harness {
    use vettid_nsm::{MockNsm, MockPcrs};
    let nsm = MockNsm::ephemeral(MockPcrs::from_measurement(b"vault tests")).unwrap();
    let state = EnclaveState::new(
        EnclaveConfig::new("tcp://127.0.0.1:1".parse().unwrap()),
        Arc::new(nsm),
    )
    .unwrap()
    .with_vault_config(config)
    .with_sealer(sealer.clone());
    let p = Processor::new(Arc::new(state));
    let (a, b) = tokio::io::duplex(1 << 20);
    let (enclave_side, parent_side) = tokio::join!(
        Connection::establish(a, LinkConfig::new(Role::Enclave), Arc::new(p.clone())),
        Connection::establish(b, LinkConfig::new(Role::Parent), parent.clone()),
    );
    let (conn, task) = enclave_side.unwrap();
    let (_pconn, ptask) = parent_side.unwrap();
    tokio::spawn(task);
    tokio::spawn(ptask);
    p.state().parent.insert(1, conn);
    Harness { p, parent, sealer }
}

async fn harness() -> Harness {
    harness_with(config(), Arc::default()).await
}

impl Harness {
    async fn call(&self, owner: &str, op: &str, payload: Value) -> Value {
        let reply = self
            .p
            .nats(NatsMessage {
                subject: format!("OwnerSpace.{owner}.forVault.{op}"),
                reply: Some("_INBOX.1".into()),
                headers: vec![],
                payload: serde_json::to_vec(&payload).unwrap().into(),
            })
            .await;
        serde_json::from_slice(reply.reply.as_ref().unwrap()).unwrap()
    }

    async fn attest(&self, owner: &str) -> [u8; 32] {
        let r = self
            .call(
                owner,
                "attestation",
                json!({"nonce": B64.encode([7u8; 32])}),
            )
            .await;
        key(&r["public_key"])
    }

    async fn setup(&self, owner: &str, pin: &str) -> Value {
        let public = self.attest(owner).await;
        self.call(
            owner,
            "pin",
            json!({"type": "pin.setup", "payload": setup_payload(&public, pin)}),
        )
        .await
    }

    async fn unlock(&self, owner: &str, ecies: &[u8; 32], utk: &str, pin: &str) -> Value {
        let env = legacy_ecies::seal(ecies, json!({"pin": pin}).to_string().as_bytes()).unwrap();
        self.call(
            owner,
            "pin",
            json!({"type": "pin.unlock", "payload": {"utk_id": utk, "encrypted_payload": B64.encode(env)}}),
        )
        .await
    }

    async fn utk_op(&self, owner: &str, op: &str, utk: &(String, [u8; 32]), plain: Value) -> Value {
        let env = domain::seal(Domain::Utk, &utk.1, plain.to_string().as_bytes()).unwrap();
        self.call(
            owner,
            op,
            json!({"id": "r1", "payload": {"utk_id": utk.0, "encrypted_payload": B64.encode(env)}}),
        )
        .await
    }
}

fn key(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn utks(v: &Value) -> Vec<(String, [u8; 32])> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_owned(), key(&u["public_key"])))
        .collect()
}

fn setup_payload(public: &[u8; 32], pin: &str) -> Value {
    let env = legacy_ecies::seal(
        public,
        json!({"pin": pin, "profile": {"first_name": "Ada"}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    json!({
        "encrypted_pin": B64.encode(&env[44..]),
        "ephemeral_public_key": B64.encode(&env[..32]),
        "nonce": B64.encode(&env[32..44]),
    })
}

const PHC: &str = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn enrol_credential_unlock_secrets_and_pin_change() {
    let h = harness().await;
    let r = h.setup("u1", "1234").await;
    assert_eq!(r["status"], "vault_ready", "{r}");
    let ecies = key(&r["ecies_public_key"]);
    let mut live = utks(&r["utks"]);
    assert_eq!(live.len(), 5);

    let r = h
        .utk_op(
            "u1",
            "credential.create",
            &live.remove(0),
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["event_id"], "r1");
    assert!(r["encrypted_credential"].is_string());
    live.extend(utks(&r["new_utks"]));

    let (id, _) = live.remove(0);
    let r = h.unlock("u1", &ecies, &id, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    assert!(r["encrypted_credential"].is_string());
    // The same UTK again: single use.
    let r = h.unlock("u1", &ecies, &id, "1234").await;
    assert_eq!(code(&r), "utk_invalid", "{r}");

    let r = h
        .utk_op(
            "u1",
            "secrets.add",
            &live.remove(0),
            json!({"name": "bank", "value": "hunter2", "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    let secret_id = r["id"].as_str().unwrap().to_owned();
    let reply_key =
        aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let reply_pub = vettid_vault_crypto::x25519::public_key_bytes(&reply_key).unwrap();
    let r = h
        .utk_op(
            "u1",
            "secrets.retrieve",
            &live.remove(0),
            json!({"id": secret_id, "reply_key": B64.encode(reply_pub), "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "retrieved", "{r}");
    let plain = domain::open(
        Domain::Reply,
        &reply_key,
        &B64.decode(r["encrypted_secret"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let secret: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(secret["value"], "hunter2");

    // PIN change, then only the new PIN works.
    let env = legacy_ecies::seal(
        &ecies,
        json!({"old_pin": "1234", "new_pin": "987654"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let (id, _) = live.remove(0);
    let r = h
        .call(
            "u1",
            "pin-change",
            json!({"utk_id": id, "encrypted_payload": B64.encode(env)}),
        )
        .await;
    assert_eq!(r["status"], "pin_changed", "{r}");
    // Older UTKs were pruned (at most 16 live): the app uses the newest.
    live = utks(&r["new_utks"]);
    let (id, _) = live.pop().unwrap();
    let r = h.unlock("u1", &ecies, &id, "1234").await;
    assert_eq!(code(&r), "invalid_pin", "{r}");
    let r = h.unlock("u1", &ecies, &id, "987654").await;
    assert_eq!(r["status"], "unlocked", "{r}");

    // Nothing the host stored contains the PIN, the secret or the profile in clear.
    for body in h.parent.written.lock().unwrap().iter() {
        for needle in [&b"1234"[..], b"987654", b"hunter2", b"Ada", PHC.as_bytes()] {
            assert!(!body.windows(needle.len()).any(|w| w == needle));
        }
    }
}

#[tokio::test]
async fn setup_is_refused_on_an_enrolled_vault_and_without_attestation() {
    let h = harness().await;
    let r = h
        .call(
            "u2",
            "pin",
            json!({"type": "pin.setup", "payload": setup_payload(&[9; 32], "1234")}),
        )
        .await;
    assert_eq!(code(&r), "attestation_key_required", "{r}");
    assert_eq!(h.setup("u2", "1234").await["status"], "vault_ready");
    let r = h.setup("u2", "5555").await;
    assert_eq!(code(&r), "already_enrolled", "{r}");
    // A fresh enclave (cold cache) refuses too.
    let h2 = restart(&h).await;
    assert_eq!(code(&h2.setup("u2", "5555").await), "already_enrolled");
    // Bad PINs.
    for pin in ["12", "123456789", "12a4"] {
        assert_eq!(
            code(&h.setup("u3", pin).await),
            "invalid_pin_format",
            "{pin}"
        );
    }
}

#[tokio::test]
async fn wrong_pins_are_counted_across_restarts_until_lockout() {
    let h = harness().await;
    let r = h.setup("u4", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let live = utks(&r["utks"]);
    let r = h.unlock("u4", &ecies, &live[0].0, "0000").await;
    assert_eq!(
        (code(&r), r["attempts_remaining"].as_u64()),
        ("invalid_pin", Some(3)),
        "{r}"
    );
    // A new enclave over the same storage (restart): the count survived.
    let h2 = restart(&h).await;
    let r = h2.unlock("u4", &ecies, &live[0].0, "0001").await;
    assert_eq!(
        (code(&r), r["attempts_remaining"].as_u64()),
        ("invalid_pin", Some(2)),
        "{r}"
    );
    // Success resets the counter.
    assert_eq!(
        h2.unlock("u4", &ecies, &live[0].0, "1234").await["status"],
        "unlocked"
    );
    for (i, pin) in ["1111", "2222", "3333"].iter().enumerate() {
        let r = h2.unlock("u4", &ecies, &live[1].0, pin).await;
        assert_eq!(r["attempts_remaining"].as_u64(), Some(3 - i as u64), "{r}");
    }
    let r = h2.unlock("u4", &ecies, &live[1].0, "4444").await;
    assert_eq!(code(&r), "locked_out", "{r}");
    // Even the right PIN is not evaluated now.
    let r = h2.unlock("u4", &ecies, &live[1].0, "1234").await;
    assert_eq!(code(&r), "locked_out", "{r}");
}

#[tokio::test]
async fn backoff_refuses_without_evaluating() {
    let mut c = config();
    c.pin.backoff_base = std::time::Duration::from_secs(60);
    c.pin.backoff_cap = std::time::Duration::from_secs(600);
    let h = harness_with(c, Arc::default()).await;
    let r = h.setup("u5", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let utk = utks(&r["utks"])[0].0.clone();
    assert_eq!(
        code(&h.unlock("u5", &ecies, &utk, "0000").await),
        "invalid_pin"
    );
    // The second failure reaches free_attempts: back-off starts.
    assert_eq!(
        code(&h.unlock("u5", &ecies, &utk, "0001").await),
        "invalid_pin"
    );
    let r = h.unlock("u5", &ecies, &utk, "1234").await;
    assert_eq!(code(&r), "pin_backoff", "{r}");
    assert!(r["retry_after_seconds"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn storage_failure_changes_nothing_and_a_retry_succeeds() {
    let h = harness().await;
    let r = h.setup("u6", "1234").await;
    let mut live = utks(&r["utks"]);
    let utk = live.remove(0);
    h.parent.fail_puts.store(true, Ordering::SeqCst);
    let r = h
        .utk_op(
            "u6",
            "credential.create",
            &utk,
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(code(&r), "storage_unavailable", "{r}");
    h.parent.fail_puts.store(false, Ordering::SeqCst);
    // The UTK was not spent and no credential exists: the same request now succeeds.
    let r = h
        .utk_op(
            "u6",
            "credential.create",
            &utk,
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");

    // A PIN attempt whose counter cannot be stored is not evaluated at all.
    let ecies = key(&h.setup("u7", "1234").await["ecies_public_key"]);
    h.parent.fail_all.store(true, Ordering::SeqCst);
    let r = h.unlock("u7", &ecies, "utk-0", "1234").await;
    assert_eq!(code(&r), "storage_unavailable", "{r}");
    h.parent.fail_all.store(false, Ordering::SeqCst);
}

#[tokio::test]
async fn two_enclaves_one_wins_the_other_conflicts_nothing_lost() {
    let a = harness().await;
    let r = a.setup("u8", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let mut live = utks(&r["utks"]);
    let r = a
        .utk_op(
            "u8",
            "credential.create",
            &live.remove(0),
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");
    // Enclave B unlocks the same vault (cold: it reads A's object).
    let b = restart(&a).await;
    let (id, _) = live.remove(0);
    assert_eq!(
        b.unlock("u8", &ecies, &id, "1234").await["status"],
        "unlocked"
    );
    // A's cached copy is now stale: its write conflicts and it drops the copy.
    let r = a
        .utk_op(
            "u8",
            "secrets.add",
            &live.remove(0),
            json!({"name": "a", "value": "1", "password_hash": PHC}),
        )
        .await;
    assert_eq!(code(&r), "storage_conflict", "{r}");
    // B's write goes through.
    let r = b
        .utk_op(
            "u8",
            "secrets.add",
            &live.remove(0),
            json!({"name": "b", "value": "2", "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    // A reloads (after unlocking again) and sees B's secret.
    let (id, _) = live.remove(0);
    let r = a.unlock("u8", &ecies, &id, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    let mut live = utks(&r["new_utks"]);
    let reply_key =
        aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let reply_pub = vettid_vault_crypto::x25519::public_key_bytes(&reply_key).unwrap();
    let r = a
        .utk_op(
            "u8",
            "secrets.list",
            &live.remove(0),
            json!({"reply_key": B64.encode(reply_pub), "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["count"], 1, "{r}");
}

#[tokio::test]
async fn a_replayed_older_object_is_refused() {
    let h = harness().await;
    let r = h.setup("u9", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let live = utks(&r["utks"]);
    let key_name = super::record::object_key("u9");
    let old = h.parent.objects.lock().unwrap()[&key_name].clone();
    assert_eq!(
        h.unlock("u9", &ecies, &live[0].0, "1234").await["status"],
        "unlocked"
    );
    // The host puts the version-1 object back and the enclave's cache is evicted.
    h.parent
        .objects
        .lock()
        .unwrap()
        .insert(key_name, (old.0, "old".into()));
    h.p.state().vaults.slot("u9").await.vault = None;
    let r = h.unlock("u9", &ecies, &live[1].0, "1234").await;
    assert_eq!(code(&r), "stale_vault", "{r}");
}

#[tokio::test]
async fn kms_errors_surface_with_their_codes() {
    let h = harness().await;
    *h.sealer.fail.lock().unwrap() = Some(SealError::AccessDenied);
    let r = h.setup("u10", "1234").await;
    assert_eq!(
        (code(&r), r["error"].as_str()),
        ("KMSAccessDenied", Some("KMS access denied")),
        "{r}"
    );
    *h.sealer.fail.lock().unwrap() = None;
    let r = h.setup("u10", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let utk = utks(&r["utks"])[0].0.clone();
    // Cold unlock needs KMS.
    h.p.state().vaults.slot("u10").await.vault = None;
    *h.sealer.fail.lock().unwrap() = Some(SealError::KeyDisabled);
    assert_eq!(
        code(&h.unlock("u10", &ecies, &utk, "1234").await),
        "KMSKeyDisabled"
    );
    *h.sealer.fail.lock().unwrap() = None;
    assert_eq!(
        h.unlock("u10", &ecies, &utk, "1234").await["status"],
        "unlocked"
    );
    let outcomes = h.p.state().vaults.kms_outcomes();
    assert_eq!(outcomes.get("KMSAccessDenied"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("KMSKeyDisabled"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("ok"), Some(&2), "{outcomes:?}");
    let health = serde_json::to_value(crate::handlers::health::handle(h.p.state())).unwrap();
    assert_eq!(health["kms_outcomes"]["ok"], 2);
    assert_eq!(health["phase"], "serving");
}

#[tokio::test]
async fn locked_and_absent_vaults_and_bad_payloads() {
    let h = harness().await;
    assert_eq!(
        code(&h.call("nobody", "secrets.identity", json!({})).await),
        "not_enrolled"
    );
    let r = h.setup("u11", "1234").await;
    let mut live = utks(&r["utks"]);
    h.p.state().vaults.slot("u11").await.vault = None;
    assert_eq!(
        code(&h.call("u11", "secrets.identity", json!({})).await),
        "vault_locked"
    );
    for bad in [
        json!({}),
        json!({"utk_id": 5}),
        json!({"utk_id": "x", "encrypted_payload": "%%%"}),
    ] {
        let r = h.call("u11", "pin-unlock", bad.clone()).await;
        assert_eq!(code(&r), "bad_field", "{bad} → {r}");
    }
    let r = h
        .call("u11", "pin", json!({"type": "pin.bogus", "payload": {}}))
        .await;
    assert_eq!(code(&r), "unknown_pin_op");
    let r = h.call("u11", "vault.bogus", json!({})).await;
    assert_eq!(code(&r), "not_supported");
    // Garbage in a valid UTK envelope.
    let utk = live.remove(0);
    let ecies = key(&r_ecies(&h, "u11").await);
    let _ = ecies;
    let env = domain::seal(Domain::Utk, &utk.1, b"not json").unwrap();
    let r = h
        .call(
            "u11",
            "secrets.add",
            json!({"utk_id": utk.0, "encrypted_payload": B64.encode(env)}),
        )
        .await;
    assert_eq!(code(&r), "vault_locked", "{r}");
}

async fn r_ecies(h: &Harness, owner: &str) -> Value {
    let mut slot = h.p.state().vaults.slot(owner).await;
    let sealer = h.sealer.clone();
    let loaded =
        h.p.state()
            .vaults
            .load(&*sealer, owner, &mut slot)
            .await
            .unwrap();
    Value::String(B64.encode(loaded.meta.ecies.public))
}

#[tokio::test]
async fn unsigned_reset_is_refused() {
    let h = harness().await;
    let reply =
        h.p.nats(NatsMessage {
            subject: "enclave.vault.reset".into(),
            reply: Some("_INBOX.2".into()),
            headers: vec![],
            payload: Bytes::from_static(br#"{"user_guid":"u1"}"#),
        })
        .await;
    let v: Value = serde_json::from_slice(reply.reply.as_ref().unwrap()).unwrap();
    assert_eq!(code(&v), "unsigned_reset_refused");
}

#[tokio::test]
async fn secrets_need_the_password_hash_inside_the_envelope() {
    let h = harness().await;
    let r = h.setup("u12", "1234").await;
    let mut live = utks(&r["utks"]);
    let r = h
        .utk_op(
            "u12",
            "secrets.add",
            &live.remove(0),
            json!({"name": "n", "value": "v"}),
        )
        .await;
    assert_eq!(code(&r), "no_credential", "{r}");
    let r = h
        .utk_op(
            "u12",
            "credential.create",
            &live.remove(0),
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");
    let r = h
        .utk_op(
            "u12",
            "secrets.add",
            &live.remove(0),
            json!({"name": "n", "value": "v"}),
        )
        .await;
    assert_eq!(code(&r), "bad_field", "{r}");
    let other = PHC.replace("MTIz", "OTIz");
    let r = h
        .utk_op(
            "u12",
            "secrets.add",
            &live.remove(0),
            json!({"name": "n", "value": "v", "password_hash": other}),
        )
        .await;
    assert_eq!(code(&r), "password_mismatch", "{r}");
}

#[tokio::test]
async fn credential_and_secret_lifecycle_ops() {
    let h = harness().await;
    let r = h.setup("u13", "1234").await;
    let mut live = utks(&r["utks"]);
    let mut next = |r: &Value, live: &mut Vec<(String, [u8; 32])>| {
        if r.get("new_utks").is_some() {
            live.extend(utks(&r["new_utks"]));
        }
        live.pop().unwrap()
    };
    let u = next(&r, &mut live);
    assert_eq!(
        code(&h.call("u13", "credential.get", json!({})).await),
        "no_credential"
    );
    let bad = h
        .utk_op(
            "u13",
            "credential.create",
            &u,
            json!({"password_hash": "$argon2id$v=19$m=16,t=1,p=1$c2FsdA$aGFzaA"}),
        )
        .await;
    assert_eq!(code(&bad), "invalid_password_hash", "{bad}");
    let r = h
        .utk_op(
            "u13",
            "credential.create",
            &u,
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");
    let u = next(&r, &mut live);
    let r = h
        .utk_op(
            "u13",
            "credential.create",
            &u,
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(code(&r), "credential_exists");

    let v = h.call("u13", "credential.version", json!({})).await;
    assert_eq!(v["version"], 1, "{v}");
    let g = h.call("u13", "credential.get", json!({})).await;
    assert_eq!(
        (g["status"].as_str(), g["version"].as_u64()),
        (Some("ok"), Some(1)),
        "{g}"
    );
    let id = h.call("u13", "secrets.identity", json!({})).await;
    assert_eq!(key(&id["identity_public_key"]).len(), 32);

    // Password change: the old hash must match.
    let new_phc = PHC.replace("MTIz", "OTIz");
    let r = h
        .utk_op(
            "u13",
            "credential.password-change",
            &u,
            json!({"old_password_hash": new_phc, "new_password_hash": new_phc}),
        )
        .await;
    assert_eq!(code(&r), "password_mismatch", "{r}");
    let r = h
        .utk_op(
            "u13",
            "credential.password-change",
            &u,
            json!({"old_password_hash": PHC, "new_password_hash": new_phc}),
        )
        .await;
    assert_eq!(r["status"], "password_changed", "{r}");
    assert_eq!(
        h.call("u13", "credential.version", json!({})).await["version"],
        2
    );

    // Secrets: add, update, delete, and an unknown id.
    let u = next(&r, &mut live);
    let r = h
        .utk_op(
            "u13",
            "secrets.add",
            &u,
            json!({"name": "a", "value": "1", "password_hash": new_phc}),
        )
        .await;
    let sid = r["id"].as_str().unwrap().to_owned();
    let u = next(&r, &mut live);
    let r = h
        .utk_op(
            "u13",
            "secrets.update",
            &u,
            json!({"id": sid, "value": "2", "category": "c", "password_hash": new_phc}),
        )
        .await;
    assert_eq!(
        (r["status"].as_str(), r["version"].as_u64()),
        (Some("updated"), Some(2)),
        "{r}"
    );
    let u = next(&r, &mut live);
    let r = h
        .utk_op(
            "u13",
            "secrets.delete",
            &u,
            json!({"id": sid, "password_hash": new_phc}),
        )
        .await;
    assert_eq!(r["status"], "deleted", "{r}");
    let u = next(&r, &mut live);
    let r = h
        .utk_op(
            "u13",
            "secrets.delete",
            &u,
            json!({"id": sid, "password_hash": new_phc}),
        )
        .await;
    assert_eq!(code(&r), "secret_not_found", "{r}");

    // vault.save confirms the stored object is ours; after another writer, it reports a conflict.
    let r = h.call("u13", "vault.save", json!({})).await;
    assert_eq!(r["status"], "saved", "{r}");
    let key_name = super::record::object_key("u13");
    h.parent
        .objects
        .lock()
        .unwrap()
        .get_mut(&key_name)
        .unwrap()
        .1 = "someone-else".into();
    assert_eq!(
        code(&h.call("u13", "vault.save", json!({})).await),
        "storage_conflict"
    );

    // credential.delete needs the password hash.
    let h2 = harness().await;
    let r = h2.setup("u14", "1234").await;
    let mut live = utks(&r["utks"]);
    let r = h2
        .utk_op(
            "u14",
            "credential.create",
            &live.pop().unwrap(),
            json!({"password_hash": PHC}),
        )
        .await;
    live.extend(utks(&r["new_utks"]));
    let u = live.pop().unwrap();
    let r = h2
        .utk_op(
            "u14",
            "credential.delete",
            &u,
            json!({"password_hash": new_phc}),
        )
        .await;
    assert_eq!(code(&r), "password_mismatch");
    let r = h2
        .utk_op(
            "u14",
            "credential.delete",
            &u,
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "deleted", "{r}");
    assert_eq!(
        code(&h2.call("u14", "credential.version", json!({})).await),
        "no_credential"
    );
}

#[tokio::test]
async fn signed_admin_operations_reset_and_delete_credentials() {
    use crate::control::VaultAdmin;
    let h = harness().await;
    let state = h.p.state().clone();
    let admin = super::VaultAdminImpl::new(&state);
    let owner = crate::router::OwnerSpace::parse("u15").unwrap();
    // Not enrolled: nothing to delete.
    assert_eq!(admin.delete_credential(&owner).await.unwrap(), 0);
    let r = h.setup("u15", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let mut live = utks(&r["utks"]);
    h.utk_op(
        "u15",
        "credential.create",
        &live.pop().unwrap(),
        json!({"password_hash": PHC}),
    )
    .await;
    // Locked vault: the deletion is recorded and applied at the next unlock.
    h.p.state().vaults.slot("u15").await.vault = None;
    assert_eq!(admin.delete_credential(&owner).await.unwrap(), 1);
    let r = h
        .unlock("u15", &ecies, &live.pop().unwrap().0, "1234")
        .await;
    assert_eq!(r["status"], "unlocked", "{r}");
    assert!(r.get("encrypted_credential").is_none(), "{r}");
    assert_eq!(
        code(&h.call("u15", "credential.get", json!({})).await),
        "no_credential"
    );
    // Reset wipes the vault: setup works again.
    assert!(admin.reset(&owner).await.unwrap() >= 1);
    assert_eq!(
        code(&h.call("u15", "secrets.identity", json!({})).await),
        "not_enrolled"
    );
    assert_eq!(h.setup("u15", "9999").await["status"], "vault_ready");
}

#[tokio::test]
async fn idle_vaults_lock_and_the_cache_evicts_least_recently_used() {
    let mut c = config();
    c.idle_lock = std::time::Duration::from_millis(50);
    c.max_vaults = 2;
    let h = harness_with(c, Arc::default()).await;
    for u in ["e1", "e2", "e3"] {
        assert_eq!(h.setup(u, "1234").await["status"], "vault_ready");
    }
    // At most two cached.
    assert!(
        h.p.state().vaults.counts().0 <= 2,
        "{:?}",
        h.p.state().vaults.counts()
    );
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert_eq!(
        code(&h.call("e3", "secrets.identity", json!({})).await),
        "vault_locked"
    );
    // Health reports the counts.
    let health = crate::handlers::health::handle(h.p.state());
    let v = serde_json::to_value(&health).unwrap();
    assert_eq!(v["kms_configured"], true);
    assert!(v["active_vaults"].as_u64().unwrap() <= 2);
}
