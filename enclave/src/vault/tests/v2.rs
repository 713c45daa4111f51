//! The v2 protocol through the app's own implementation (`vettid-app-client`): what a v2 app does,
//! start to finish, against an enclave that serves v2 only (the production default).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_app_client::{attest, Error as AppError, VaultClient};

use super::*;

/// The v2-only configuration (`--accept-v1-envelopes` off).
pub(super) fn v2_config() -> VaultConfig {
    VaultConfig {
        accept_v1: false,
        ..config()
    }
}

pub(super) async fn v2_harness() -> Harness {
    harness_with(v2_config(), Arc::default()).await
}

/// A document for `owner` with the app's own nonce, checked as the app checks it.
pub(super) async fn attested(h: &Harness, owner: &str) -> attest::AttestedKey {
    let nonce = [owner.len() as u8; 24];
    let r = h
        .call(owner, "attestation", json!({"nonce": B64.encode(nonce)}))
        .await;
    let doc = B64.decode(r["attestation"].as_str().unwrap()).unwrap();
    attest::verify(&doc, policy(h), now(), &nonce, owner).expect("document verifies")
}

pub(super) fn policy(h: &Harness) -> vettid_attestation::Policy {
    vettid_attestation::Policy::skip_pcr_check_unsafe()
        .with_extra_root(h.root.clone())
        .unwrap()
}

pub(super) fn now() -> u64 {
    crate::clock::now_ms()
}

/// Sends `out` and checks its answer as the app does.
pub(super) async fn run(
    h: &Harness,
    client: &mut VaultClient,
    out: vettid_app_client::Outgoing,
) -> Result<serde_json::Map<String, Value>, AppError> {
    let reply = h.send(client.owner(), out.token, &out.request).await;
    client.finish(out.pending, &reply)
}

/// Enrols `owner` with `pin` and a credential, the v2 way.
pub(super) async fn enrolled(h: &Harness, owner: &str, pin: &str) -> VaultClient {
    let key = attested(h, owner).await;
    let mut c = VaultClient::new(owner);
    let out = c
        .setup(&key, pin, Some(json!({"first_name": "Ada"})))
        .unwrap();
    let r = run(h, &mut c, out).await.unwrap();
    assert_eq!(r["status"], "vault_ready");
    assert!(c.has_create_proof());
    let out = c.create_credential(PHC).unwrap();
    let r = run(h, &mut c, out).await.unwrap();
    assert_eq!(r["status"], "created", "{r:?}");
    c
}

#[tokio::test]
async fn a_v2_app_enrols_stores_and_reads_with_every_reply_authenticated() {
    let h = v2_harness().await;
    let mut c = enrolled(&h, "v2-ada", "2468").await;
    let out = c
        .utk_request(
            "secrets.add",
            &json!({"password_hash": PHC, "name": "bank", "value": "s3cret"}),
        )
        .unwrap();
    let r = run(&h, &mut c, out).await.unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    let out = c
        .utk_request("secrets.retrieve", &json!({"password_hash": PHC, "id": id}))
        .unwrap();
    let r = run(&h, &mut c, out).await.unwrap();
    assert_eq!(
        r["secret"]["value"], "s3cret",
        "the value inside the sealed reply"
    );
    let out = c
        .utk_request("secrets.list", &json!({"password_hash": PHC}))
        .unwrap();
    let r = run(&h, &mut c, out).await.unwrap();
    assert_eq!(r["count"], 1);
    assert_eq!(r["list"][0]["name"], "bank");
    for op in [
        "credential.get",
        "credential.version",
        "secrets.identity",
        "vault.save",
    ] {
        let out = c.read(op).unwrap();
        let r = run(&h, &mut c, out).await.unwrap();
        assert!(r.contains_key("status"), "{op}: {r:?}");
    }

    // Lock, then a wrong PIN (an authenticated refusal, the UTK kept) and the right one.
    h.p.state().vaults.slot("v2-ada").await.vault = None;
    let utks_before = c.utks().len();
    let out = c.unlock("1111").unwrap();
    match run(&h, &mut c, out).await {
        Err(AppError::Refused { code, body }) => {
            assert_eq!(code, "invalid_pin");
            assert_eq!(body["attempts_remaining"], 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.utks().len(), utks_before, "a wrong PIN spends no UTK");
    let out = c.unlock("2468").unwrap();
    let r = run(&h, &mut c, out).await.unwrap();
    assert_eq!(r["status"], "unlocked");
    assert!(r.contains_key("encrypted_credential"));
    // The answer of a v2 request shows the host nothing but a sealed blob.
    let out = c.read("secrets.identity").unwrap();
    let raw: Value =
        serde_json::from_slice(&h.send("v2-ada", out.token, &out.request).await).unwrap();
    let keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in &keys {
        assert!(
            ["v", "sealed_reply", "event_id", "request_type", "timestamp"].contains(k),
            "{k} in clear"
        );
    }
}

#[tokio::test]
async fn a_v2_pin_change_and_a_user_credential_delete_issue_what_comes_next() {
    let h = v2_harness().await;
    let mut c = enrolled(&h, "v2-bob", "1357").await;
    assert!(!c.has_create_proof(), "spent by credential.create");
    let out = c
        .utk_request("pin.change", &json!({"old_pin": "1357", "new_pin": "9753"}))
        .unwrap();
    assert_eq!(run(&h, &mut c, out).await.unwrap()["status"], "pin_changed");
    let out = c
        .utk_request("credential.delete", &json!({"password_hash": PHC}))
        .unwrap();
    assert_eq!(run(&h, &mut c, out).await.unwrap()["status"], "deleted");
    assert!(c.has_create_proof(), "the user may create the next one");
    let out = c.create_credential(PHC).unwrap();
    assert_eq!(run(&h, &mut c, out).await.unwrap()["status"], "created");
    h.p.state().vaults.slot("v2-bob").await.vault = None;
    let out = c.unlock("9753").unwrap();
    assert_eq!(run(&h, &mut c, out).await.unwrap()["status"], "unlocked");
}

#[tokio::test]
async fn a_v2_field_the_operation_does_not_take_is_refused_and_spends_nothing() {
    let h = v2_harness().await;
    let mut c = enrolled(&h, "v2-strict", "2468").await;
    let utks_before = c.utks().len();
    // A typo the Go vault would have ignored (the secret stored without its category).
    let out = c
        .utk_request(
            "secrets.add",
            &json!({"password_hash": PHC, "name": "bank", "value": "v", "categroy": "x"}),
        )
        .unwrap();
    match run(&h, &mut c, out).await {
        Err(AppError::Refused { code, .. }) => assert_eq!(code, "unknown_field"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.utks().len(), utks_before, "the refusal spends no UTK");
    let out = c
        .utk_request("secrets.list", &json!({"password_hash": PHC}))
        .unwrap();
    let r = run(&h, &mut c, out).await.unwrap();
    assert_eq!(r["count"], 0, "nothing was stored: {r:?}");
}
