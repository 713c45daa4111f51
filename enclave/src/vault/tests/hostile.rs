//! The host's attacks, played as the host plays them: the harness is the enclave's link peer, so
//! every message here is one an EC2 host that owns the parent can inject, replay, rewrite or
//! redirect. One test per hole of the host-proof review (docs/VAULT.md, "Threats"); each failed
//! on the code before the fix.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_app_client::{attest, Error as AppError, VaultClient};
use vettid_vault_crypto::{domain, legacy_ecies, v2 as envelope, Domain};

use super::v2::{attested, enrolled, policy, run, v2_harness};
use super::*;

/// Ten attempts, no back-off: the numbers of the review's own experiment.
fn ten_attempts() -> VaultConfig {
    VaultConfig {
        pin: PinPolicy {
            free_attempts: 10,
            max_attempts: 10,
            backoff_base: std::time::Duration::ZERO,
            backoff_cap: std::time::Duration::ZERO,
        },
        ..config()
    }
}

/// A v1 unlock request as a v1 app sends it (what the host records).
fn v1_unlock(ecies: &[u8; 32], utk: &str, pin: &str) -> Value {
    let env = legacy_ecies::seal(ecies, json!({"pin": pin}).to_string().as_bytes()).unwrap();
    json!({"type": "pin.unlock", "payload": {"utk_id": utk, "encrypted_payload": B64.encode(env)}})
}

fn remaining(v: &Value) -> Value {
    v["attempts_remaining"].clone()
}

#[tokio::test]
async fn a_recorded_unlock_replayed_under_a_made_up_utk_refunds_no_guesses() {
    let h = harness_with(ten_attempts(), Arc::default()).await;
    let r = h.setup("h-refund", "1234").await;
    let live = utks(&r["utks"]);
    let ecies = key(&r["ecies_public_key"]);
    // The app unlocks once; the host keeps the request.
    let recorded = v1_unlock(&ecies, &live[0].0, "1234");
    assert_eq!(
        h.call("h-refund", "pin", recorded.clone()).await["status"],
        "unlocked"
    );
    h.p.state().vaults.slot("h-refund").await.vault = None;
    // The host guesses (it can: the ECIES key is in the clear reply) ...
    for expected in [9, 8, 7] {
        let r = h
            .call("h-refund", "pin", v1_unlock(&ecies, &live[1].0, "0000"))
            .await;
        assert_eq!(remaining(&r), expected, "{r}");
    }
    // ... and replays the recorded correct unlock under a UTK id it made up.
    let mut replay = recorded.clone();
    replay["payload"]["utk_id"] = "utk-made-up".into();
    let r = h.call("h-refund", "pin", replay).await;
    assert_eq!(code(&r), "utk_invalid", "{r}");
    // The counter is where the guesses left it (before the fix: back to 10, then 9).
    let r = h
        .call("h-refund", "pin", v1_unlock(&ecies, &live[1].0, "0000"))
        .await;
    assert_eq!(remaining(&r), 6, "no guess refunded: {r}");
}

#[tokio::test]
async fn a_bad_utk_answers_the_same_for_a_right_and_a_wrong_pin_and_counts_nothing() {
    let h = harness_with(ten_attempts(), Arc::default()).await;
    let r = h.setup("h-oracle", "1234").await;
    let live = utks(&r["utks"]);
    let ecies = key(&r["ecies_public_key"]);
    h.p.state().vaults.slot("h-oracle").await.vault = None;
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("timestamp");
        v
    };
    let right = strip(
        h.call("h-oracle", "pin", v1_unlock(&ecies, "utk-x", "1234"))
            .await,
    );
    let wrong = strip(
        h.call("h-oracle", "pin", v1_unlock(&ecies, "utk-x", "9999"))
            .await,
    );
    assert_eq!(right, wrong, "before the fix: utk_invalid vs invalid_pin");
    assert_eq!(code(&right), "utk_invalid");
    let r = h
        .call("h-oracle", "pin", v1_unlock(&ecies, &live[0].0, "9999"))
        .await;
    assert_eq!(remaining(&r), 9, "the two probes counted nothing: {r}");
}

#[tokio::test]
async fn a_recorded_unlock_replayed_under_a_live_utk_is_refused() {
    let h = harness_with(ten_attempts(), Arc::default()).await;
    let r = h.setup("h-replay", "1234").await;
    let live = utks(&r["utks"]);
    let ecies = key(&r["ecies_public_key"]);
    let recorded = v1_unlock(&ecies, &live[0].0, "1234");
    assert_eq!(
        h.call("h-replay", "pin", recorded.clone()).await["status"],
        "unlocked"
    );
    h.p.state().vaults.slot("h-replay").await.vault = None;
    let r = h
        .call("h-replay", "pin", v1_unlock(&ecies, &live[1].0, "0000"))
        .await;
    assert_eq!(remaining(&r), 9);
    // The UTK ids are in clear v1 replies: the host pairs the old envelope with a live one.
    let mut replay = recorded;
    replay["payload"]["utk_id"] = live[2].0.clone().into();
    let r = h.call("h-replay", "pin", replay).await;
    assert_eq!(
        code(&r),
        "replayed_request",
        "before the fix: unlocked, counter 0: {r}"
    );
    let r = h
        .call("h-replay", "pin", v1_unlock(&ecies, &live[1].0, "0000"))
        .await;
    assert_eq!(remaining(&r), 8, "{r}");
}

#[tokio::test]
async fn a_v2_unlock_cannot_be_replayed_or_moved_to_another_utk_or_op() {
    let h = v2_harness().await;
    let mut c = enrolled(&h, "h-v2replay", "1234").await;
    h.p.state().vaults.slot("h-v2replay").await.vault = None;
    let out = c.unlock("1234").unwrap();
    let recorded = out.request.clone();
    run(&h, &mut c, out).await.unwrap();
    // Replayed as it was: its UTK is spent.
    let r: Value =
        serde_json::from_slice(&h.send("h-v2replay", "pin-unlock", &recorded).await).unwrap();
    assert_eq!(code(&r), "utk_invalid", "{r}");
    // Under a live UTK id, or as a pin.change: the envelope is bound to both.
    let mut moved = recorded.clone();
    moved["payload"]["utk_id"] = c.utks().last().unwrap().id.clone().into();
    let r: Value =
        serde_json::from_slice(&h.send("h-v2replay", "pin-unlock", &moved).await).unwrap();
    assert_eq!(code(&r), "decryption_failed", "{r}");
    let r: Value =
        serde_json::from_slice(&h.send("h-v2replay", "pin-change", &moved).await).unwrap();
    assert_eq!(code(&r), "decryption_failed", "{r}");
}

#[tokio::test]
async fn v1_shapes_are_refused_unless_the_flag_allows_them() {
    let h = v2_harness().await;
    let public = h.attest("h-v1off").await;
    let r = h
        .call(
            "h-v1off",
            "pin",
            json!({"type": "pin.setup", "payload": setup_payload(&public, "1234")}),
        )
        .await;
    assert_eq!(code(&r), "v1_envelope_refused", "{r}");
    let c = enrolled(&h, "h-v1off2", "1234").await;
    // A v1 read (no envelope) and a v1 UTK envelope: refused, nothing changed.
    assert_eq!(
        code(&h.call("h-v1off2", "secrets.identity", json!({})).await),
        "v1_envelope_refused"
    );
    let utk = (c.utks()[0].id.clone(), c.utks()[0].public);
    let r = h
        .utk_op(
            "h-v1off2",
            "secrets.add",
            &utk,
            json!({"password_hash": PHC, "name": "a", "value": "b"}),
        )
        .await;
    assert_eq!(code(&r), "v1_envelope_refused", "{r}");
}

#[tokio::test]
async fn a_host_that_rewrites_or_replays_replies_is_caught_by_the_app() {
    let h = v2_harness().await;
    let key = attested(&h, "h-rewrite").await;
    let mut c = VaultClient::new("h-rewrite");
    let out = c.setup(&key, "1234", None).unwrap();
    let reply = h.send("h-rewrite", out.token, &out.request).await;
    // The host sees no key to swap: the setup answer is one sealed blob ...
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert!(
        v.get("utks").is_none() && v.get("ecies_public_key").is_none(),
        "{v}"
    );
    // ... and any byte it changes, or a fake answer of its own, fails the app's check.
    let mut forged = v.clone();
    let mut sealed = B64.decode(v["sealed_reply"].as_str().unwrap()).unwrap();
    *sealed.last_mut().unwrap() ^= 1;
    forged["sealed_reply"] = B64.encode(&sealed).into();
    let mut other = VaultClient::new("h-rewrite");
    let probe = other.setup(&key, "1234", None).unwrap();
    assert_eq!(
        other.finish(probe.pending, &serde_json::to_vec(&forged).unwrap()),
        Err(AppError::ReplyNotAuthentic)
    );
    let fake = json!({"status": "vault_ready", "utks": [{"id": "utk-host", "public_key": B64.encode([9u8; 32])}], "ecies_public_key": B64.encode([9u8; 32])});
    let probe = other.setup(&key, "1234", None).unwrap();
    assert_eq!(
        other.finish(probe.pending, &serde_json::to_vec(&fake).unwrap()),
        Err(AppError::ReplyNotAuthentic),
        "a v1-shaped answer is never taken for a v2 one"
    );
    // The genuine answer opens for the request that caused it, and only for it.
    let r = c.finish(out.pending, &reply).unwrap();
    assert_eq!(r["status"], "vault_ready");
    let probe = other.setup(&key, "1234", None).unwrap();
    assert_eq!(
        other.finish(probe.pending, &reply),
        Err(AppError::ReplyNotAuthentic)
    );
    // Later replies too: a recorded answer replayed for a new request does not open.
    let out = c.create_credential(PHC).unwrap();
    let created = h.send("h-rewrite", out.token, &out.request).await;
    c.finish(out.pending, &created).unwrap();
    let out = c.read("credential.get").unwrap();
    assert_eq!(
        c.finish(out.pending, &created),
        Err(AppError::ReplyNotAuthentic)
    );
}

#[tokio::test]
async fn a_request_moved_to_another_op_or_vault_does_not_open() {
    let h = v2_harness().await;
    let mut c = enrolled(&h, "h-move", "1234").await;
    let out = c
        .utk_request(
            "secrets.add",
            &json!({"password_hash": PHC, "name": "n", "value": "v"}),
        )
        .unwrap();
    let id = run(&h, &mut c, out).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The app asks for its secret; the host submits the same bytes as a delete.
    let out = c
        .utk_request("secrets.retrieve", &json!({"password_hash": PHC, "id": id}))
        .unwrap();
    let r: Value =
        serde_json::from_slice(&h.send("h-move", "secrets.delete", &out.request).await).unwrap();
    assert_eq!(code(&r), "decryption_failed", "before v2: deleted: {r}");
    // Still there, and the app's own request still works.
    let r = run(&h, &mut c, out).await.unwrap();
    assert_eq!(r["secret"]["value"], "v");
    // pin.setup for one GUID, redirected to another (with that GUID's attestation key too).
    let victim = h
        .call(
            "h-move-2",
            "attestation",
            json!({"nonce": B64.encode([1u8; 8])}),
        )
        .await;
    let victim_key = key(&victim["public_key"]);
    let mut app = VaultClient::new("h-move-3");
    let out = app
        .setup(&attest::AttestedKey(victim_key), "1234", None)
        .unwrap();
    let r: Value =
        serde_json::from_slice(&h.send("h-move-2", "pin-setup", &out.request).await).unwrap();
    assert_eq!(code(&r), "decryption_failed", "{r}");
}

#[tokio::test]
async fn the_document_names_its_owner_so_a_redirected_attestation_is_refused() {
    let h = v2_harness().await;
    let nonce = [5u8; 16];
    let r = h
        .call("h-doc", "attestation", json!({"nonce": B64.encode(nonce)}))
        .await;
    let doc = B64.decode(r["attestation"].as_str().unwrap()).unwrap();
    let verified = vettid_attestation::verify(&doc, &policy(&h), super::v2::now()).unwrap();
    assert_eq!(
        verified.user_data.as_deref(),
        Some(&b"vettid.attest.v2:h-doc"[..])
    );
    // The app that asked for "h-other" and got h-doc's document back refuses it.
    assert!(matches!(
        attest::verify(&doc, policy(&h), super::v2::now(), &nonce, "h-other"),
        Err(AppError::Attestation(_))
    ));
    attest::verify(&doc, policy(&h), super::v2::now(), &nonce, "h-doc").unwrap();
}

#[tokio::test]
async fn an_attestation_flood_is_bounded_per_owner_and_lambda_keys_are_not_kept() {
    let h = harness().await;
    let keys = &h.p.state().keys;
    for i in 0..200u32 {
        h.call(
            "h-flood",
            "attestation",
            json!({"nonce": B64.encode(i.to_be_bytes())}),
        )
        .await;
        let lambda =
            h.p.nats_until(
                NatsMessage {
                    subject: "enclave.attestation.request".into(),
                    reply: Some("_INBOX.2".into()),
                    headers: vec![],
                    payload: serde_json::to_vec(&json!({"nonce": B64.encode(i.to_be_bytes())}))
                        .unwrap()
                        .into(),
                },
                None,
            )
            .await;
        assert!(lambda.reply.is_some());
    }
    assert_eq!(
        keys.len(),
        keys.per_owner(),
        "before the fix: 400 keys, all of one owner's tried on its next pin.setup"
    );
    // Another user enrols as if nothing happened.
    let r = h.setup("h-bystander", "1234").await;
    assert_eq!(r["status"], "vault_ready", "{r}");
}

#[tokio::test]
async fn credential_create_needs_the_proof_only_the_setup_reply_revealed() {
    let h = v2_harness().await;
    let key = attested(&h, "h-create").await;
    let mut c = VaultClient::new("h-create");
    let out = c.setup(&key, "1234", None).unwrap();
    run(&h, &mut c, out).await.unwrap();
    // Suppose the host learnt a UTK public key (v1 replies show them): it seals its own
    // password hash to it, without the proof.
    let utk = c.utks().last().unwrap().clone();
    let (sealed, host_reply_key) = envelope::seal_request(
        &utk.public,
        &envelope::Binding {
            op: "credential.create",
            owner: "h-create",
            key_ref: &utk.id,
        },
        json!({"password_hash": PHC}).to_string().as_bytes(),
    )
    .unwrap();
    let req = json!({"payload": {"v": 2, "utk_id": utk.id, "sealed": B64.encode(sealed)}});
    let r: Value =
        serde_json::from_slice(&h.send("h-create", "credential.create", &req).await).unwrap();
    let inner: Value = serde_json::from_slice(
        &host_reply_key
            .open(&B64.decode(r["sealed_reply"].as_str().unwrap()).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        inner["code"], "create_proof_required",
        "before the fix: created"
    );
    // The app, with the proof, creates it.
    let out = c.create_credential(PHC).unwrap();
    assert_eq!(run(&h, &mut c, out).await.unwrap()["status"], "created");
}

#[tokio::test]
async fn a_vault_is_refused_before_it_grows_past_what_it_can_load() {
    let h = harness().await;
    let r = h.setup("h-full", "1234").await;
    let mut live = utks(&r["utks"]);
    let r = h
        .utk_op(
            "h-full",
            "credential.create",
            &live.remove(0),
            json!({"password_hash": PHC}),
        )
        .await;
    live.extend(utks(&r["new_utks"]));
    let value = "v".repeat(64 * 1024);
    let mut added = 0;
    let full = loop {
        let r = h
            .utk_op(
                "h-full",
                "secrets.add",
                &live.pop().unwrap(),
                json!({"password_hash": PHC, "name": format!("s{added}"), "value": value}),
            )
            .await;
        if r["status"] == "added" {
            added += 1;
            live.extend(utks(&r["new_utks"]));
            assert!(added < 100, "never refused");
        } else {
            break r;
        }
    };
    assert_eq!(code(&full), "vault_full", "{full}");
    let stored = h.parent.written.lock().unwrap().last().unwrap().len();
    assert!(stored <= crate::vault::record::MAX_COMMIT_LEN, "{stored}");
    assert!(
        stored + 2 * 64 * 1024 > crate::vault::record::MAX_COMMIT_LEN,
        "refused only at the boundary: {stored}"
    );
    // A meta-only write (a counted PIN attempt) still fits, and after a restart the vault
    // loads, with every acknowledged secret (before the fix: corrupt_vault).
    let h2 = restart(&h).await;
    let ecies = key(&r_ecies(&h2, "h-full").await);
    let newest = live.pop().unwrap();
    let r = h2.unlock("h-full", &ecies, &newest.0, "0000").await;
    assert_eq!(code(&r), "invalid_pin", "{r}");
    let r = h2.unlock("h-full", &ecies, &newest.0, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    live.extend(utks(&r["new_utks"]));
    let reply_key =
        aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let reply_pub = vettid_vault_crypto::x25519::public_key_bytes(&reply_key).unwrap();
    let r = h2
        .utk_op(
            "h-full",
            "secrets.list",
            &live.pop().unwrap(),
            json!({"password_hash": PHC, "reply_key": B64.encode(reply_pub)}),
        )
        .await;
    assert_eq!(r["count"], added, "{r}");
    let list = domain::open(
        Domain::Reply,
        &reply_key,
        &B64.decode(r["encrypted_list"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        added
    );
}

#[tokio::test]
async fn an_older_object_served_after_a_restart_is_refused_by_the_apps_witness() {
    // No trusted store here: the app's own witness is the floor (`seen_version`).
    let h = v2_harness().await;
    let mut c = enrolled(&h, "h-witness", "2468").await;
    let before = h.parent.objects.lock().unwrap().clone();
    let add = |c: &mut VaultClient, value: &str| {
        c.utk_request(
            "secrets.add",
            &json!({"password_hash": PHC, "name": "bank", "value": value}),
        )
        .unwrap()
    };
    let out = add(&mut c, "new");
    run(&h, &mut c, out).await.unwrap();
    assert!(c.seen_version() >= 3, "replies name their version");
    // The host restarts the enclave and serves the object from before the change.
    let h2 = restart(&h).await;
    *h2.parent.objects.lock().unwrap() = before.clone();
    // UTKs minted after the old object do not exist in it (refused, nothing counted); one
    // from before does, and the witness refuses the old object.
    let mut outcome = None;
    for _ in 0..4 {
        let out = c.unlock("2468").unwrap();
        match run(&h2, &mut c, out).await {
            Err(AppError::Unauthenticated { code }) if code == "utk_invalid" => continue,
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    match outcome {
        Some(Err(AppError::Refused { code, .. })) => assert_eq!(code, "stale_vault"),
        other => panic!("an old copy was unlocked: {other:?}"),
    }
}

#[tokio::test]
async fn a_host_answering_from_an_older_cached_copy_is_refused_by_the_apps_witness() {
    // Two enclaves over one bucket, no trusted store: B caches the vault unlocked, the app then
    // changes it on A, and the host routes the app's next read back to B.
    let a = v2_harness().await;
    let mut c = enrolled(&a, "h-cached", "2468").await;
    let b = restart(&a).await;
    let out = c.unlock("2468").unwrap();
    run(&b, &mut c, out).await.unwrap();
    let out = c
        .utk_request(
            "secrets.add",
            &json!({"password_hash": PHC, "name": "bank", "value": "new"}),
        )
        .unwrap();
    run(&a, &mut c, out).await.unwrap();
    let out = c.read("credential.get").unwrap();
    match run(&b, &mut c, out).await {
        Err(AppError::Refused { code, .. }) => assert_eq!(code, "stale_vault"),
        other => panic!("an old copy was answered from: {other:?}"),
    }
}
