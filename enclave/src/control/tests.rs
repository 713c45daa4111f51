//! Unit tests of the whole verification path, with a fixed key (RFC 8032 test 1) and a fixed
//! clock, then of the processor's Control arm and drain.

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_protocol::NatsMessage;

use super::*;
use crate::router::OwnerSpace;

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const NOW: u64 = 1_750_000_000_000;
const START: u64 = NOW - 3_600_000;

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&hex::decode(SEED).unwrap()).unwrap()
}

fn keys() -> VerifyingKeys {
    let entry = json!([{"key_id": "ops-1", "public_key_b64": B64.encode(key().public_key())}]);
    VerifyingKeys::from_json(entry.to_string().as_bytes()).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(keys(), "host-a".into(), START, 100)
}

/// An unsigned command for `target`, valid for 60 s from NOW.
fn unsigned(command: &str, target: Value) -> Value {
    json!({
        "command_id": "c-1", "command": command, "key_id": "ops-1", "target": target,
        "params": {"reason": "ticket 42"}, "issued_at": NOW - 1_000, "expires_at": NOW + 59_000,
        "issued_by": "ops@example",
    })
}

fn sign(mut cmd: Value) -> Vec<u8> {
    let sig = key().sign(&wire::signing_bytes(&cmd).unwrap());
    cmd["signature"] = B64.encode(sig.as_ref()).into();
    cmd.to_string().into_bytes()
}

fn user(guid: &str) -> ControlScope {
    ControlScope::User(OwnerSpace::parse(guid).unwrap())
}

fn reset_for_u1() -> Value {
    unsigned("vault.reset", json!({"type": "user", "id": "u1"}))
}

#[test]
fn a_signed_reset_verifies_once() {
    let v = verifier();
    let payload = sign(reset_for_u1());
    let cmd = v.verify(&user("u1"), "vault.reset", &payload, NOW).unwrap();
    assert_eq!(cmd.kind, CommandKind::VaultReset);
    assert_eq!(cmd.reason.as_deref(), Some("ticket 42"));
    assert_eq!(
        v.verify(&user("u1"), "vault.reset", &payload, NOW + 1),
        Err(Rejection::Replayed)
    );
}

#[test]
fn each_refusal_names_its_reason() {
    let v = verifier();
    let reset = |f: &dyn Fn(&mut Value)| {
        let mut c = reset_for_u1();
        f(&mut c);
        sign(c)
    };
    let check = |payload: &[u8], scope: &ControlScope, token: &str, want: Rejection| {
        assert_eq!(v.verify(scope, token, payload, NOW), Err(want), "{want}");
    };
    let mut unsigned_reset = reset_for_u1();
    check(
        unsigned_reset.to_string().as_bytes(),
        &user("u1"),
        "vault.reset",
        Rejection::Unsigned,
    );
    unsigned_reset["signature"] = B64.encode([0u8; 64]).into();
    check(
        unsigned_reset.to_string().as_bytes(),
        &user("u1"),
        "vault.reset",
        Rejection::BadSignature,
    );
    let mut tampered: Value = serde_json::from_slice(&sign(reset_for_u1())).unwrap();
    tampered["params"]["reason"] = "other".into();
    check(
        tampered.to_string().as_bytes(),
        &user("u1"),
        "vault.reset",
        Rejection::BadSignature,
    );
    // G4: nested members are covered too.
    tampered["params"]["reason"] = "ticket 42".into();
    tampered["target"]["id"] = "u2".into();
    check(
        tampered.to_string().as_bytes(),
        &user("u2"),
        "vault.reset",
        Rejection::BadSignature,
    );
    let other_key = reset(&|c| c["key_id"] = "ops-2".into());
    check(
        &other_key,
        &user("u1"),
        "vault.reset",
        Rejection::UnknownKey,
    );
    let p = sign(reset_for_u1());
    check(&p, &user("u2"), "vault.reset", Rejection::WrongTarget);
    check(
        &p,
        &ControlScope::Global,
        "vault.reset",
        Rejection::WrongTarget,
    );
    check(
        &p,
        &user("u1"),
        "credential.delete",
        Rejection::CommandMismatch,
    );
    let other_host = sign(unsigned(
        "drain",
        json!({"type": "enclave", "id": "host-b"}),
    ));
    let scope_b = ControlScope::Enclave("host-b".into());
    check(&other_host, &scope_b, "drain", Rejection::WrongTarget);
    let fleet_reset = sign(unsigned("vault.reset", json!({"type": "global"})));
    check(
        &fleet_reset,
        &ControlScope::Global,
        "vault.reset",
        Rejection::NotForTarget,
    );
    let unknown = sign(unsigned(
        "vault.export",
        json!({"type": "user", "id": "u1"}),
    ));
    check(
        &unknown,
        &user("u1"),
        "vault.export",
        Rejection::UnknownCommand,
    );
    let expired = reset(&|c| {
        c["issued_at"] = (NOW - 120_000).into();
        c["expires_at"] = (NOW - 60_000).into();
    });
    check(&expired, &user("u1"), "vault.reset", Rejection::Expired);
    let future = reset(&|c| {
        c["issued_at"] = (NOW + 61_000).into();
        c["expires_at"] = (NOW + 120_000).into();
    });
    check(&future, &user("u1"), "vault.reset", Rejection::NotYetValid);
    let long = reset(&|c| c["expires_at"] = (NOW - 1_000 + 300_001).into());
    check(&long, &user("u1"), "vault.reset", Rejection::BadWindow);
    let old = reset(&|c| {
        c["issued_at"] = (START - 1).into();
        c["expires_at"] = (START + 59_000).into();
    });
    let v_late = Verifier::new(keys(), "host-a".into(), START, 100);
    assert_eq!(
        v_late.verify(&user("u1"), "vault.reset", &old, START + 30_000),
        Err(Rejection::BeforeStart)
    );
    let params = reset(&|c| c["params"]["force"] = true.into());
    check(&params, &user("u1"), "vault.reset", Rejection::BadParams);
    // None of the refusals above consumed the id.
    assert!(v
        .verify(&user("u1"), "vault.reset", &sign(reset_for_u1()), NOW)
        .is_ok());
}

#[test]
fn malformed_commands_are_refused_before_any_signature_check() {
    let v = verifier();
    let good = String::from_utf8(sign(reset_for_u1())).unwrap();
    let cases = [
        good.replacen("{", "{\"command_id\":\"c-0\",", 1),
        good.replacen("{", "{\"extra\":1,", 1),
        good.replacen("{", "{\"n\":1.5,", 1),
        good.replace("\"issued_at\":", "\"issued_at\":\"x\",\"_\":"),
        "[]".into(),
        "{".into(),
        " ".repeat(wire::MAX_COMMAND_LEN + 1),
    ];
    for payload in cases {
        assert_eq!(
            v.verify(&user("u1"), "vault.reset", payload.as_bytes(), NOW),
            Err(Rejection::Malformed),
            "{payload:.80}"
        );
    }
    let global_with_id = sign(unsigned("drain", json!({"type": "global", "id": "x"})));
    assert_eq!(
        v.verify(&ControlScope::Global, "drain", &global_with_id, NOW),
        Err(Rejection::Malformed)
    );
}

#[test]
fn without_keys_every_command_is_refused() {
    let v = Verifier::new(VerifyingKeys::none(), "host-a".into(), 0, 10);
    let payload = sign(reset_for_u1());
    assert_eq!(
        v.verify(&user("u1"), "vault.reset", &payload, NOW),
        Err(Rejection::Disabled)
    );
}

fn processor() -> crate::Processor {
    use vettid_nsm::{MockNsm, MockPcrs};
    let nsm = MockNsm::ephemeral(MockPcrs::from_measurement(b"control tests")).unwrap();
    let config = crate::EnclaveConfig::new("tcp://127.0.0.1:1".parse().unwrap());
    let now = now_ms();
    let verifier = Verifier::new(keys(), "host-a".into(), now - 10_000, 100);
    let state = crate::EnclaveState::new(config, Arc::new(nsm))
        .unwrap()
        .with_control(ControlState::new(verifier));
    crate::Processor::new(Arc::new(state))
}

async fn send(p: &crate::Processor, subject: &str, payload: Vec<u8>) -> (Value, usize) {
    let reply = p
        .nats(NatsMessage {
            subject: subject.into(),
            reply: Some("_INBOX.1".into()),
            headers: vec![],
            payload: payload.into(),
        })
        .await;
    (
        crate::processor::reply_json(&reply).unwrap(),
        reply.publish.len(),
    )
}

fn live(command: &str, id: &str, target: Value) -> Vec<u8> {
    let now = now_ms();
    let mut c = unsigned(command, target);
    c["command_id"] = id.into();
    c["issued_at"] = (now - 1_000).into();
    c["expires_at"] = (now + 60_000).into();
    sign(c)
}

#[tokio::test]
async fn reset_clears_the_users_keys_and_drain_refuses_vault_work() {
    let p = processor();
    let keys = &p.state().keys;
    keys.generate("u1").unwrap();
    keys.generate("u2").unwrap();
    let (v, published) = send(
        &p,
        "Control.user.u1.vault.reset",
        live("vault.reset", "r1", json!({"type": "user", "id": "u1"})),
    )
    .await;
    assert_eq!(published, 0, "control replies go to the inbox only");
    assert_eq!(
        (v["status"].clone(), v["removed"].clone()),
        ("reset".into(), 1.into()),
        "{v}"
    );
    assert_eq!(keys.len(), 1);
    let (v, _) = send(&p, "Control.user.u1.vault.reset", b"{}".to_vec()).await;
    assert_eq!(v["code"], "control_rejected");
    assert_eq!(v["error"], "control command rejected: unsigned");

    let drain = live("drain", "d1", json!({"type": "enclave", "id": "host-a"}));
    let (v, _) = send(&p, "Control.enclave.host-a.drain", drain).await;
    assert_eq!(v["status"], "draining", "{v}");
    assert_eq!(p.state().control.phase(), Phase::Draining);
    let att = json!({"nonce": B64.encode([1u8; 16])})
        .to_string()
        .into_bytes();
    let (v, _) = send(&p, "OwnerSpace.u1.forVault.attestation", att).await;
    assert_eq!(v["code"], "draining", "{v}");
    let (v, _) = send(&p, "enclave.health", b"{}".to_vec()).await;
    assert_eq!(v["healthy"], true);
    let health = live("health.request", "h1", json!({"type": "global"}));
    let (v, _) = send(&p, "Control.global.health.request", health).await;
    assert_eq!(v["healthy"], true, "{v}");
}
