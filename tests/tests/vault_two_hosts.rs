//! Two hosts, one bucket, one KMS: each with its own enclave, parent and (here) nats-server, so
//! the test can address each. Writes are conditional: when both hold the same vault, one write
//! wins, the other gets `storage_conflict`, reloads, and nothing acknowledged is lost.

use std::time::Duration;

use serde_json::{json, Value};
use vettid_tests::app::{self, ReplyKey, Utk};
use vettid_tests::kms::KmsOptions;
use vettid_tests::{request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(30);
const OWNER: &str = "user-two-hosts";

struct Host {
    client: async_nats::Client,
}

impl Host {
    async fn pin(&self, request: Value) -> Value {
        let subject = format!("OwnerSpace.{OWNER}.forVault.pin");
        request_json(&self.client, &subject, request, LIMIT)
            .await
            .unwrap()
    }

    async fn call(&self, op: &str, payload: Value) -> Value {
        request_json(
            &self.client,
            &format!("OwnerSpace.{OWNER}.forVault.{op}"),
            json!({"id": "e", "payload": payload}),
            LIMIT,
        )
        .await
        .unwrap()
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hosts_write_one_vault_one_wins_nothing_is_lost() {
    let first = System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        ..SystemOptions::default()
    });
    let second = System::start_second_host(
        &first,
        SystemOptions {
            kms: Some(KmsOptions::default()),
            storage_root: Some(first.storage_root()),
            separate_nats: true,
            ..SystemOptions::default()
        },
    );
    let a = Host {
        client: first.client().await,
    };
    let b = Host {
        client: second.client().await,
    };
    let password_hash = app::phc_password_hash("two hosts");

    // Enrol on A.
    let attested = a
        .call("attestation", json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}))
        .await;
    let key: [u8; 32] = base64_32(&attested["public_key"]);
    let r = a
        .pin(json!({"type": "pin.setup", "payload": app::pin_setup_payload(&key, "2468", None)}))
        .await;
    assert_eq!(r["status"], "vault_ready", "{r}");
    let ecies = base64_32(&r["ecies_public_key"]);
    let mut utks = app::parse_utks(&r["utks"]);
    let utk_op = |utks: &mut Vec<Utk>, mut plain: Value| {
        plain["password_hash"] = password_hash.clone().into();
        let u = utks.pop().unwrap();
        json!({"utk_id": u.id, "encrypted_payload": app::utk_payload(&u.public_key, &plain)})
    };
    let r = a
        .call("credential.create", utk_op(&mut utks, json!({})))
        .await;
    assert_eq!(r["status"], "created", "{r}");
    utks.extend(app::parse_utks(&r["new_utks"]));

    let unlock = |utks: &mut Vec<Utk>| {
        let u = utks.pop().unwrap();
        json!({"type": "pin.unlock", "payload": {"utk_id": u.id, "encrypted_payload": app::legacy_ecies_payload(&ecies, &json!({"pin": "2468"}))}})
    };

    // B unlocks the same vault (cold there): its write moves the object on.
    let r = b.pin(unlock(&mut utks)).await;
    assert_eq!(r["status"], "unlocked", "{r}");
    utks.extend(app::parse_utks(&r["new_utks"]));

    // A's cached copy is stale: its write is refused, not applied over B's. (It uses an early
    // UTK both copies know; the ones B just minted are unknown to A's stale copy.)
    let mut early = vec![utks.remove(0)];
    let r = a
        .call(
            "secrets.add",
            utk_op(&mut early, json!({"name": "from-a", "value": "1"})),
        )
        .await;
    assert_eq!(code(&r), "storage_conflict", "{r}");
    // B writes.
    let r = b
        .call(
            "secrets.add",
            utk_op(&mut utks, json!({"name": "from-b", "value": "2"})),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    utks.extend(app::parse_utks(&r["new_utks"]));

    // A reloads (an unlock), retries, and sees B's secret beside its own.
    let r = a.pin(unlock(&mut utks)).await;
    assert_eq!(r["status"], "unlocked", "{r}");
    utks.extend(app::parse_utks(&r["new_utks"]));
    let r = a
        .call(
            "secrets.add",
            utk_op(&mut utks, json!({"name": "from-a", "value": "1"})),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    utks.extend(app::parse_utks(&r["new_utks"]));
    let reply = ReplyKey::generate();
    let r = a
        .call(
            "secrets.list",
            utk_op(&mut utks, json!({"reply_key": reply.public_b64()})),
        )
        .await;
    let names = reply
        .open_json(r["encrypted_list"].as_str().unwrap())
        .to_string();
    assert_eq!(r["count"], 2, "{r}");
    assert!(
        names.contains("from-a") && names.contains("from-b"),
        "{names}"
    );
}

fn base64_32(v: &Value) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}
