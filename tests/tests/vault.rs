//! The vault end to end, as a mobile app uses it: real nats-server → parent → Unix socket →
//! dev enclave, whose real aws-sdk-kms client reaches the local KMS over TLS through the parent's
//! allow-listed tunnel, with the attested Recipient flow and production Argon2id parameters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vettid_attestation::Policy;
use vettid_tests::app::{self, ReplyKey, Utk};
use vettid_tests::kms::KmsOptions;
use vettid_tests::{request_json, System, SystemOptions};

/// Cold unlocks run Argon2id (256 MiB) and two KMS round trips.
const LIMIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn vault_system(extra_enclave_args: &[&str], kms: KmsOptions) -> System {
    System::start(SystemOptions {
        kms: Some(kms),
        enclave_args: extra_enclave_args.iter().map(|s| s.to_string()).collect(),
        ..SystemOptions::default()
    })
}

/// The app: one user, its keys and UTKs, talking over NATS.
struct App {
    client: async_nats::Client,
    owner: String,
    pin: String,
    password_hash: String,
    ecies: [u8; 32],
    utks: Vec<Utk>,
}

impl App {
    async fn new(sys: &System, owner: &str) -> Self {
        Self {
            client: sys.client().await,
            owner: owner.into(),
            pin: String::new(),
            password_hash: app::phc_password_hash("correct horse battery staple"),
            ecies: [0; 32],
            utks: Vec::new(),
        }
    }

    async fn call(&self, op: &str, payload: Value) -> Value {
        let subject = format!("OwnerSpace.{}.forVault.{op}", self.owner);
        let request = json!({"id": format!("evt-{}", now_ms()), "type": op, "payload": payload});
        request_json(&self.client, &subject, request, LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn pin_op(&self, kind: &str, payload: Value) -> Value {
        let subject = format!("OwnerSpace.{}.forVault.pin", self.owner);
        let request = json!({"id": "evt-pin", "type": kind, "payload": payload});
        request_json(&self.client, &subject, request, LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    /// Attests like the app: verifies the document against the dev root and its own nonce, then
    /// takes the enclave's key from it.
    async fn attest(&self, sys: &System) -> [u8; 32] {
        let nonce = [0x5a; 32];
        let r = self
            .call("attestation", json!({"nonce": B64.encode(nonce)}))
            .await;
        let doc = B64
            .decode(r["attestation"].as_str().expect("attestation"))
            .unwrap();
        let pem = std::fs::read_to_string(sys.mock_root_pem()).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let policy = Policy::skip_pcr_check_unsafe()
            .with_extra_root(B64.decode(body).unwrap())
            .unwrap()
            .expect_nonce(nonce.to_vec());
        let verified = vettid_attestation::verify(&doc, &policy, now_ms()).expect("verifies");
        let key: [u8; 32] = verified.public_key.unwrap().try_into().unwrap();
        assert_eq!(B64.encode(key), r["public_key"]);
        key
    }

    async fn setup(&mut self, sys: &System, pin: &str) -> Value {
        let key = self.attest(sys).await;
        let r = self
            .pin_op(
                "pin.setup",
                app::pin_setup_payload(&key, pin, Some(json!({"first_name": "Ada"}))),
            )
            .await;
        if r["status"] == "vault_ready" {
            self.pin = pin.into();
            self.ecies = B64
                .decode(r["ecies_public_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            self.utks = app::parse_utks(&r["utks"]);
        }
        r
    }

    fn take_utk(&mut self) -> Utk {
        self.utks.pop().expect("a live UTK")
    }

    fn add_utks(&mut self, r: &Value) {
        if r.get("new_utks").is_some() {
            self.utks.extend(app::parse_utks(&r["new_utks"]));
        }
    }

    async fn unlock(&mut self, pin: &str) -> Value {
        let utk = self.take_utk();
        let r = self
            .pin_op(
                "pin.unlock",
                json!({
                    "utk_id": utk.id,
                    "encrypted_payload": app::legacy_ecies_payload(&self.ecies, &json!({"pin": pin})),
                }),
            )
            .await;
        if r["status"] == "unlocked" {
            self.add_utks(&r);
        } else {
            // The UTK was not spent (the PIN is checked first): keep it.
            self.utks.push(utk);
        }
        r
    }

    async fn utk_op(&mut self, op: &str, mut plain: Value) -> Value {
        plain["password_hash"] = self.password_hash.clone().into();
        let utk = self.take_utk();
        let r = self
            .call(
                op,
                json!({"utk_id": utk.id, "encrypted_payload": app::utk_payload(&utk.public_key, &plain)}),
            )
            .await;
        self.add_utks(&r);
        r
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

/// Everything the parent and the enclave send each other, recorded by a Unix-socket relay.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Relays `listen` → `target`, recording both directions.
    fn start(listen: &Path, target: PathBuf) -> Self {
        let capture = Capture::default();
        let listener = tokio::net::UnixListener::bind(listen).unwrap();
        let c = capture.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::UnixStream::connect(&target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, c.clone()));
                tokio::spawn(pump(ro, wi, c.clone()));
            }
        });
        capture
    }

    fn contains(&self, needle: &[u8]) -> bool {
        self.0
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    capture: Capture,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        capture.0.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

/// The stored object of `owner` under the fs store.
fn stored_object(sys: &System, owner: &str) -> Vec<u8> {
    std::fs::read(find_object(&sys.dir.path().join("objects"), owner)).unwrap()
}

fn find_object(root: &Path, owner: &str) -> PathBuf {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(owner)
                && path.to_string_lossy().contains("vault.v2")
                && !path.to_string_lossy().ends_with(".meta")
            {
                return path;
            }
        }
    }
    panic!("no stored vault for {owner} under {}", root.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_flow_works_and_a_cold_unlock_restores_everything_after_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let proxy = work.path().join("proxy.sock");
    let enclave_socket = work.path().join("enclave.sock");
    let capture = Capture::start(&proxy, enclave_socket.clone());
    let mut sys = System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        enclave_socket: Some(enclave_socket),
        parent_enclave_address: Some(format!("unix://{}", proxy.display())),
        ..SystemOptions::default()
    });
    let mut app = App::new(&sys, "user-e2e-1").await;
    let mut published = app
        .client
        .subscribe("OwnerSpace.user-e2e-1.forApp.pin.response")
        .await
        .unwrap();

    let started = Instant::now();
    let r = app.setup(&sys, "739164").await;
    assert_eq!(r["status"], "vault_ready", "{r}");
    assert_eq!(app.utks.len(), 5);
    assert_eq!(r["event_id"], "evt-pin");
    let echoed = tokio::time::timeout(LIMIT, published.next())
        .await
        .unwrap()
        .unwrap();
    let echoed: Value = serde_json::from_slice(&echoed.payload).unwrap();
    assert_eq!(echoed["status"], "vault_ready");
    eprintln!("pin.setup took {:?}", started.elapsed());

    // Re-running setup on the enrolled vault is refused (G5).
    let r = app.setup(&sys, "111111").await;
    assert_eq!(code(&r), "already_enrolled", "{r}");

    let r = app.utk_op("credential.create", json!({})).await;
    assert_eq!(r["status"], "created", "{r}");
    assert!(r["encrypted_credential"].is_string());

    let r = app.unlock("739164").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    let r = app.unlock("000000").await;
    assert_eq!(
        (code(&r), r["attempts_remaining"].as_u64()),
        ("invalid_pin", Some(9)),
        "{r}"
    );

    let r = app
        .utk_op(
            "secrets.add",
            json!({"name": "bank", "value": "s3cret-value-93"}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    let secret_id = r["id"].as_str().unwrap().to_owned();
    let reply = ReplyKey::generate();
    let r = app
        .utk_op(
            "secrets.retrieve",
            json!({"id": secret_id, "reply_key": reply.public_b64()}),
        )
        .await;
    assert_eq!(r["status"], "retrieved", "{r}");
    let secret = reply.open_json(r["encrypted_secret"].as_str().unwrap());
    assert_eq!(secret["value"], "s3cret-value-93");

    // A used UTK is refused.
    let spent = app.utks.pop().unwrap();
    let plain = json!({"name": "x", "value": "y", "password_hash": app.password_hash});
    let envelope = app::utk_payload(&spent.public_key, &plain);
    let r = app
        .call(
            "secrets.add",
            json!({"utk_id": spent.id, "encrypted_payload": envelope}),
        )
        .await;
    assert_eq!(r["status"], "added", "{r}");
    let r = app
        .call(
            "secrets.add",
            json!({"utk_id": spent.id, "encrypted_payload": envelope}),
        )
        .await;
    assert_eq!(code(&r), "utk_invalid", "{r}");

    // PIN change, then only the new PIN unlocks.
    let utk = app.take_utk();
    let r = app
        .pin_op(
            "pin.change",
            json!({
                "utk_id": utk.id,
                "encrypted_payload": app::legacy_ecies_payload(&app.ecies, &json!({"old_pin": "739164", "new_pin": "2580"})),
            }),
        )
        .await;
    assert_eq!(r["status"], "pin_changed", "{r}");
    app.add_utks(&r);
    assert_eq!(app.unlock("2580").await["status"], "unlocked");
    assert_eq!(code(&app.unlock("739164").await), "invalid_pin");

    // The enclave dies; a new one knows nothing until a cold unlock restores it from storage.
    sys.start_enclave();
    assert!(sys.wait_healthy(LIMIT), "parent did not reconnect");
    let r = app
        .utk_op("secrets.list", json!({"reply_key": reply.public_b64()}))
        .await;
    assert_eq!(code(&r), "vault_locked", "{r}");
    let started = Instant::now();
    let r = app.unlock("0000").await;
    assert_eq!(
        code(&r),
        "invalid_pin",
        "wrong PIN refused on a cold vault too: {r}"
    );
    // The old PIN's failure before the restart still counts: two of ten used.
    assert_eq!(r["attempts_remaining"].as_u64(), Some(8), "{r}");
    let r = app.unlock("2580").await;
    assert_eq!(r["status"], "unlocked", "{r}");
    assert!(r["encrypted_credential"].is_string());
    eprintln!(
        "cold unlock (wrong + right PIN) took {:?}",
        started.elapsed()
    );
    let r = app
        .utk_op("secrets.list", json!({"reply_key": reply.public_b64()}))
        .await;
    assert_eq!(r["count"], 2, "{r}");
    let listed = reply.open_json(r["encrypted_list"].as_str().unwrap());
    assert!(listed.to_string().contains("bank"));
    let r = app
        .utk_op(
            "secrets.retrieve",
            json!({"id": secret_id, "reply_key": reply.public_b64()}),
        )
        .await;
    assert_eq!(
        reply.open_json(r["encrypted_secret"].as_str().unwrap())["value"],
        "s3cret-value-93"
    );

    // What crossed the parent: link frames both ways, and the stored object. Neither holds the
    // PIN, the secret, the password hash, the profile, nor the vault material or the DEK.
    let object = stored_object(&sys, "user-e2e-1");
    let material = kms_plaintext(&sys, &object, "user-e2e-1").await;
    let dek = vettid_vault_crypto::derive_dek(
        &vettid_vault_crypto::Pin::parse("2580").unwrap(),
        &material,
        "user-e2e-1",
        &vettid_vault_crypto::KdfParams::PRODUCTION,
    )
    .unwrap();
    assert!(capture.len() > 10_000, "the capture saw the traffic");
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("old PIN", b"739164".to_vec()),
        ("new PIN JSON", br#""new_pin":"2580""#.to_vec()),
        ("secret", b"s3cret-value-93".to_vec()),
        ("password hash", app.password_hash.as_bytes().to_vec()),
        ("profile", b"Ada".to_vec()),
        ("material", material.expose().to_vec()),
        ("DEK", dek.expose().to_vec()),
    ];
    for (what, needle) in &needles {
        assert!(!capture.contains(needle), "{what} crossed the link");
        assert!(
            !object.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{what} is in the stored object"
        );
    }
}

/// M, obtained the way only a test can: asking the local KMS for the plaintext of the stored
/// blob without a Recipient (the real KMS policy would refuse this to anyone but the enclave).
async fn kms_plaintext(sys: &System, object: &[u8], owner: &str) -> vettid_vault_crypto::Material {
    #[derive(serde::Deserialize)]
    struct Stored {
        #[serde(with = "serde_bytes")]
        material: Vec<u8>,
    }
    let stored: Stored = ciborium::from_reader(object).unwrap();
    let kms = sys.kms.as_ref().unwrap();
    let client = kms.plaintext_client();
    let out = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(stored.material))
        .encryption_context("vettid:vault", owner)
        .encryption_context("vettid:purpose", "vault-material-v2")
        .send()
        .await
        .expect("local KMS decrypt");
    let bytes: [u8; 32] = out.plaintext.unwrap().into_inner().try_into().unwrap();
    vettid_vault_crypto::Material::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_are_counted_across_an_enclave_restart_until_lockout() {
    let mut sys = vault_system(
        &["--pin-free-attempts", "3", "--pin-max-attempts", "3"],
        KmsOptions::default(),
    );
    let mut app = App::new(&sys, "user-e2e-2").await;
    assert_eq!(app.setup(&sys, "4321").await["status"], "vault_ready");
    let r = app.unlock("1111").await;
    assert_eq!(r["attempts_remaining"].as_u64(), Some(2), "{r}");
    sys.start_enclave();
    assert!(sys.wait_healthy(LIMIT));
    let r = app.unlock("2222").await;
    assert_eq!(
        (code(&r), r["attempts_remaining"].as_u64()),
        ("invalid_pin", Some(1)),
        "counted across the restart: {r}"
    );
    let r = app.unlock("3333").await;
    assert_eq!(code(&r), "locked_out", "{r}");
    let r = app.unlock("4321").await;
    assert_eq!(
        code(&r),
        "locked_out",
        "the right PIN is no longer evaluated: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_policy_and_key_state_surface_as_typed_errors() {
    // A key policy that does not list this enclave's PCR0.
    let mut sys = vault_system(
        &[],
        KmsOptions {
            allow_pcr0: Some(vec!["ab".repeat(48)]),
            ..KmsOptions::default()
        },
    );
    let mut app = App::new(&sys, "user-e2e-3").await;
    let r = app.setup(&sys, "1357").await;
    assert_eq!(
        (code(&r), r["error"].as_str()),
        ("KMSAccessDenied", Some("KMS access denied")),
        "{r}"
    );
    assert!(
        wait_log(&sys, "KMSAccessDenied"),
        "operators find KMSAccessDenied in the parent's log"
    );

    // The policy lists it (rolling upgrade: old and new PCR0 together).
    let pcr0 = vettid_tests::kms::dev_enclave_pcr0(sys.dir.path());
    sys.kms.as_mut().unwrap().restart(KmsOptions {
        allow_pcr0: Some(vec!["ab".repeat(48), pcr0]),
        ..KmsOptions::default()
    });
    assert_eq!(app.setup(&sys, "1357").await["status"], "vault_ready");

    // Key disabled: a cold unlock cannot recover the material.
    let kms = sys.kms.as_ref().unwrap();
    let admin = kms.client();
    admin
        .disable_key()
        .key_id(vettid_tests::kms::KEY_ID)
        .send()
        .await
        .unwrap();
    sys.start_enclave();
    assert!(sys.wait_healthy(LIMIT));
    let r = app.unlock("1357").await;
    assert_eq!(code(&r), "KMSKeyDisabled", "{r}");
    assert!(wait_log(&sys, "KMSKeyDisabled"));
    admin
        .enable_key()
        .key_id(vettid_tests::kms::KEY_ID)
        .send()
        .await
        .unwrap();
    assert_eq!(app.unlock("1357").await["status"], "unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_tunnels_only_to_allow_listed_endpoints() {
    let sys = vault_system(
        &[],
        KmsOptions {
            parent_allow: Some(vec!["kms.us-east-1.amazonaws.com:443".into()]),
            ..KmsOptions::default()
        },
    );
    let mut app = App::new(&sys, "user-e2e-4").await;
    let r = app.setup(&sys, "2468").await;
    assert_eq!(code(&r), "KMSUnavailable", "{r}");
    assert!(
        wait_log(&sys, "denied"),
        "the parent logs the refused tunnel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_answers_an_error_keeps_the_state_and_a_retry_succeeds() {
    let sys = vault_system(&[], KmsOptions::default());
    let mut app = App::new(&sys, "user-e2e-5").await;
    assert_eq!(app.setup(&sys, "8642").await["status"], "vault_ready");
    assert_eq!(
        app.utk_op("credential.create", json!({})).await["status"],
        "created"
    );

    // The object store breaks: its root becomes a file.
    let root = sys.dir.path().join("objects");
    let aside = sys.dir.path().join("objects.aside");
    std::fs::rename(&root, &aside).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let utk = app.take_utk();
    let plain =
        json!({"name": "n", "value": "kept-after-retry", "password_hash": app.password_hash});
    let request =
        json!({"utk_id": utk.id, "encrypted_payload": app::utk_payload(&utk.public_key, &plain)});
    let r = app.call("secrets.add", request.clone()).await;
    assert_eq!(code(&r), "storage_unavailable", "{r}");

    // Repaired: the same request (same UTK, not spent) succeeds, and the secret is there.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&aside, &root).unwrap();
    let r = app.call("secrets.add", request).await;
    assert_eq!(r["status"], "added", "{r}");
    app.add_utks(&r);
    let reply = ReplyKey::generate();
    let r = app
        .utk_op("secrets.list", json!({"reply_key": reply.public_b64()}))
        .await;
    assert_eq!(r["count"], 1, "{r}");
}

fn wait_log(sys: &System, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if sys
            .parent
            .as_ref()
            .is_some_and(|p| p.log().contains(needle))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
