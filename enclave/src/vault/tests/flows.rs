//! Enrolment, unlock, PIN change and the attempt counter.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use vettid_protocol::NatsMessage;
use vettid_vault_crypto::{domain, legacy_ecies, Domain};

use super::*;

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
    assert!(
        r["new_utks"][0].is_object(),
        "credential.create: UTK objects, as v1"
    );
    live.extend(utks(&r["new_utks"]));

    let (id, _) = live.remove(0);
    let r = h.unlock("u1", &ecies, &id, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    assert!(r["encrypted_credential"].is_string());
    // v1's pin.unlock answers `new_utks` as "id:base64" strings (its EncodeUTKs).
    let first = r["new_utks"][0]
        .as_str()
        .expect("pin.unlock new_utks are strings");
    let (utk_id, key) = first.split_once(':').unwrap();
    assert!(
        utk_id.starts_with("utk") && B64.decode(key).unwrap().len() == 32,
        "{first}"
    );
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
