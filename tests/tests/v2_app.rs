//! A v2 app end to end through the app's own crate (`vettid-app-client`): real nats-server,
//! parent, dev enclave serving v2 only (the production default), local KMS over TLS, production
//! Argon2id. Every request is sealed by the crate and every answer checked by it, so the protocol
//! the enclave speaks is the one the crate defines.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use vettid_app_client::{attest, Error as AppError, Outgoing, VaultClient};
use vettid_attestation::Policy;
use vettid_tests::app;
use vettid_tests::kms::KmsOptions;
use vettid_tests::{System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn v2_system() -> System {
    System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        v2_only: true,
        ..SystemOptions::default()
    })
}

fn dev_policy(sys: &System) -> Policy {
    let pem = std::fs::read_to_string(sys.mock_root_pem()).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Policy::skip_pcr_check_unsafe()
        .with_extra_root(B64.decode(body).unwrap())
        .unwrap()
}

async fn raw(nats: &async_nats::Client, owner: &str, token: &str, request: &Value) -> Vec<u8> {
    let subject = format!("OwnerSpace.{owner}.forVault.{token}");
    let msg = tokio::time::timeout(
        LIMIT,
        nats.request(subject, serde_json::to_vec(request).unwrap().into()),
    )
    .await
    .expect("answered in time")
    .expect("request");
    msg.payload.to_vec()
}

async fn run(
    nats: &async_nats::Client,
    c: &mut VaultClient,
    out: Outgoing,
) -> Result<Map<String, Value>, AppError> {
    let reply = raw(nats, c.owner(), out.token, &out.request).await;
    c.finish(out.pending, &reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_app_enrols_unlocks_and_keeps_secrets_through_the_whole_system() {
    let mut sys = v2_system();
    let nats = sys.client().await;
    let owner = "v2-e2e-ada";
    let hash = app::phc_password_hash("correct horse battery staple");

    let nonce = [0x42u8; 32];
    let r: Value = serde_json::from_slice(
        &raw(
            &nats,
            owner,
            "attestation",
            &json!({"nonce": B64.encode(nonce)}),
        )
        .await,
    )
    .unwrap();
    let doc = B64.decode(r["attestation"].as_str().unwrap()).unwrap();
    assert!(
        attest::verify(&doc, dev_policy(&sys), now_ms(), &nonce, "someone-else").is_err(),
        "a document for this owner is refused for another"
    );
    let key = attest::verify(&doc, dev_policy(&sys), now_ms(), &nonce, owner).unwrap();

    let mut c = VaultClient::new(owner);
    let out = c.setup(&key, "482916", None).unwrap();
    assert_eq!(
        run(&nats, &mut c, out).await.unwrap()["status"],
        "vault_ready"
    );
    let out = c.create_credential(&hash).unwrap();
    assert_eq!(run(&nats, &mut c, out).await.unwrap()["status"], "created");
    let out = c
        .utk_request(
            "secrets.add",
            &json!({"password_hash": hash, "name": "bank", "value": "7351"}),
        )
        .unwrap();
    let id = run(&nats, &mut c, out).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A v1 request to this enclave is refused, whatever it is.
    let r: Value =
        serde_json::from_slice(&raw(&nats, owner, "secrets.identity", &json!({})).await).unwrap();
    assert_eq!(r["code"], "v1_envelope_refused", "{r}");

    // A restarted enclave (cold: KMS and Argon2id again) answers the same client.
    sys.start_enclave();
    assert!(sys.wait_healthy(Duration::from_secs(15)));
    let out = c.unlock("000000").unwrap();
    match run(&nats, &mut c, out).await {
        Err(AppError::Refused { code, body }) => {
            assert_eq!(code, "invalid_pin");
            assert!(body["attempts_remaining"].as_u64().is_some());
        }
        other => panic!("{other:?}"),
    }
    let out = c.unlock("482916").unwrap();
    assert_eq!(run(&nats, &mut c, out).await.unwrap()["status"], "unlocked");
    let out = c
        .utk_request(
            "secrets.retrieve",
            &json!({"password_hash": hash, "id": id}),
        )
        .unwrap();
    assert_eq!(
        run(&nats, &mut c, out).await.unwrap()["secret"]["value"],
        "7351"
    );
    let out = c.read("secrets.identity").unwrap();
    let r = run(&nats, &mut c, out).await.unwrap();
    assert!(r["identity_public_key"].as_str().is_some(), "{r:?}");
}
