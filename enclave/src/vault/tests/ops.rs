//! Every operation, bad payloads, admin commands, idle lock and eviction.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_vault_crypto::{domain, Domain};

use super::*;

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
        json!({"utk_id": live[1].0, "encrypted_payload": "%%%"}),
    ] {
        let r = h.call("u11", "pin-unlock", bad.clone()).await;
        assert_eq!(code(&r), "bad_field", "{bad} → {r}");
    }
    // The UTK is checked before the envelope is even decoded.
    let r = h
        .call(
            "u11",
            "pin-unlock",
            json!({"utk_id": "x", "encrypted_payload": "%%%"}),
        )
        .await;
    assert_eq!(code(&r), "utk_invalid", "{r}");
    let r = h
        .call("u11", "pin", json!({"type": "pin.bogus", "payload": {}}))
        .await;
    assert_eq!(code(&r), "unknown_pin_op");
    let r = h.call("u11", "vault.bogus", json!({})).await;
    assert_eq!(code(&r), "not_supported");
    // Cached (loaded from storage) but locked: still refused.
    let utk = live.remove(0);
    let ecies = key(&r_ecies(&h, "u11").await);
    let env = domain::seal(Domain::Utk, &utk.1, b"not json").unwrap();
    let garbage = json!({"utk_id": utk.0, "encrypted_payload": B64.encode(env)});
    let r = h.call("u11", "secrets.add", garbage.clone()).await;
    assert_eq!(code(&r), "vault_locked", "{r}");
    // Unlocked: garbage inside a valid UTK envelope is a clear error, and the UTK stays unspent.
    let r = h.unlock("u11", &ecies, &live.remove(0).0, "1234").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    let r = h.call("u11", "secrets.add", garbage.clone()).await;
    assert_eq!(code(&r), "bad_plaintext", "{r}");
    let wrong_key = domain::seal(Domain::Utk, &[9; 32], b"{}").unwrap();
    let r = h
        .call(
            "u11",
            "secrets.add",
            json!({"utk_id": utk.0, "encrypted_payload": B64.encode(wrong_key)}),
        )
        .await;
    assert_eq!(code(&r), "decryption_failed", "{r}");
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
    let next = |r: &Value, live: &mut Vec<(String, [u8; 32])>| {
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
    let key_name = crate::vault::record::object_key("u13");
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
    let admin = crate::vault::VaultAdminImpl::new(state.vault_services());
    let owner = crate::router::OwnerSpace::parse("u15").unwrap();
    // Not enrolled: nothing to delete.
    assert_eq!(admin.delete_credential(&owner, 1).await.unwrap(), 0);
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
    assert_eq!(admin.delete_credential(&owner, 1).await.unwrap(), 1);
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
    assert!(admin.reset(&owner, 2).await.unwrap() >= 1);
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
