//! Storage failures, conflicts, rollback and KMS errors.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;

use super::*;
use crate::sealing::SealError;

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
    let (ecies, mut live) = enrolled_with_credential(&a, "u8").await;
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
    // A reloads on its next request, still unlocked (it kept the DEK, which matches the
    // reloaded verifier): no KMS call, no PIN. Its retried write lands beside B's.
    let unseals = a.p.state().vaults.kms_outcomes().get("ok").copied();
    let r = a
        .utk_op(
            "u8",
            "secrets.add",
            &live.remove(0),
            json!({"name": "a", "value": "1", "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    assert_eq!(
        a.p.state().vaults.kms_outcomes().get("ok").copied(),
        unseals
    );
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
    assert_eq!(r["count"], 2, "{r}");
    // After a PIN change on B, A's kept DEK no longer matches: A is locked, not wrong.
    let env = legacy_ecies::seal(
        &ecies,
        json!({"old_pin": "1234", "new_pin": "5678"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    // B's copy is stale now (A wrote): the UTK, checked first, is one B does not know, so B
    // reloads before it counts anything and the change goes through at once.
    let change = json!({"utk_id": live.remove(0).0, "encrypted_payload": B64.encode(env)});
    let r = b.call("u8", "pin-change", change.clone()).await;
    assert_eq!(r["status"], "pin_changed", "{r}");
    let r = b.call("u8", "pin-change", change).await;
    assert_eq!(code(&r), "utk_invalid", "spent: {r}");
    let r = a
        .utk_op(
            "u8",
            "secrets.add",
            &live.remove(0),
            json!({"name": "c", "value": "3", "password_hash": PHC}),
        )
        .await;
    assert_eq!(code(&r), "storage_conflict", "{r}");
    let r = a.call("u8", "secrets.identity", json!({})).await;
    assert_eq!(code(&r), "vault_locked", "{r}");
}

#[tokio::test]
async fn a_replayed_older_object_is_refused() {
    let h = harness().await;
    let r = h.setup("u9", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let live = utks(&r["utks"]);
    let key_name = crate::vault::record::object_key("u9");
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
async fn a_utk_minted_on_the_other_host_is_accepted_after_a_reload() {
    let a = harness().await;
    let (ecies, mut live) = enrolled_with_credential(&a, "u9").await;
    // B unlocks (a write A has not seen) and hands out new UTKs.
    let b = restart(&a).await;
    let (id, _) = live.remove(0);
    let r = b.unlock("u9", &ecies, &id, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    let from_b = utks(&r["new_utks"]).remove(0);
    // A's cached copy does not know that UTK: rather than `utk_invalid` (which makes the app
    // throw a good UTK away), A sees the object moved on, reloads and serves the request.
    let r = a
        .utk_op(
            "u9",
            "secrets.add",
            &from_b,
            json!({"name": "n", "value": "v", "password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    // A UTK nobody minted is still refused, with the store unchanged since A's write.
    let r = a
        .utk_op(
            "u9",
            "secrets.add",
            &("utk-nobody".to_owned(), from_b.1),
            json!({"name": "m", "value": "v", "password_hash": PHC}),
        )
        .await;
    assert_eq!(code(&r), "utk_invalid", "{r}");
}

/// The parent's deadline travels with the request: a cold load whose storage read hangs is
/// answered by the enclave before the parent would give up (1 s here; the store's own limit is
/// 10 s), with a definite answer (a read changes nothing).
#[tokio::test]
async fn a_hanging_read_is_answered_before_the_parents_deadline() {
    let a = harness().await;
    let r = a.setup("u10", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let b = restart(&a).await;
    b.parent.hang_reads.store(true, Ordering::SeqCst);
    let env = legacy_ecies::seal(&ecies, json!({"pin": "1234"}).to_string().as_bytes()).unwrap();
    let payload = json!({"type": "pin.unlock", "payload": {"utk_id": "utk-x", "encrypted_payload": B64.encode(env)}});
    let started = std::time::Instant::now();
    let r = b.call_within("u10", "pin", payload, Some(1000)).await;
    let took = started.elapsed();
    assert_eq!(code(&r), "storage_unavailable", "{r}");
    assert!(
        took < std::time::Duration::from_secs(1) && took >= std::time::Duration::from_millis(800),
        "answered in {took:?}"
    );
}

/// Waiting for an Argon2 permit ends at the deadline, before any attempt is counted.
#[tokio::test]
async fn no_attempt_is_counted_when_the_deadline_passes_waiting_for_argon2() {
    let config = VaultConfig {
        argon2_permits: 1,
        ..config()
    };
    let a = harness_with(config, Arc::default()).await;
    let r = a.setup("u11", "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let mut live = utks(&r["utks"]);
    let held = a.p.state().vaults.argon2_permit().await.unwrap();
    let env = legacy_ecies::seal(&ecies, json!({"pin": "0000"}).to_string().as_bytes()).unwrap();
    let payload = json!({"type": "pin.unlock", "payload": {"utk_id": live.remove(0).0, "encrypted_payload": B64.encode(env)}});
    let started = std::time::Instant::now();
    let r = a.call_within("u11", "pin", payload, Some(500)).await;
    assert_eq!(code(&r), "deadline_exceeded", "{r}");
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    drop(held);
    // The wrong PIN that timed out was never counted: this one is the first.
    let r = a.unlock("u11", &ecies, &live.remove(0).0, "0000").await;
    assert_eq!(code(&r), "invalid_pin", "{r}");
    assert_eq!(r["attempts_remaining"], 3, "{r}");
}

/// Enrols `owner` on `h` and creates its credential; the vault ECIES key and the live UTKs.
async fn enrolled_with_credential(h: &Harness, owner: &str) -> ([u8; 32], Vec<(String, [u8; 32])>) {
    let r = h.setup(owner, "1234").await;
    let ecies = key(&r["ecies_public_key"]);
    let mut live = utks(&r["utks"]);
    let r = h
        .utk_op(
            owner,
            "credential.create",
            &live.remove(0),
            json!({"password_hash": PHC}),
        )
        .await;
    assert_eq!(r["status"], "created", "{r}");
    live.extend(utks(&r["new_utks"]));
    (ecies, live)
}
