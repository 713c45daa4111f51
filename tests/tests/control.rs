//! Signed control commands end to end: `vettid control` signs and sends, NATS and the untrusted
//! parent relay, the enclave verifies and acts (or refuses, naming the reason).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_tests::{bin_path, request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(10);

/// A running system whose enclave trusts `ops.pem` (its key id derived from the public key, as
/// `vettid control keygen` and `sign` both do), and an untrusted `other.pem`.
struct Fixture {
    _sys: System,
    keys: tempfile::TempDir,
    client: async_nats::Client,
    nats: String,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(kms: Option<vettid_tests::kms::KmsOptions>) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let entry = vettid(
            &["control", "keygen", "--out"],
            &[&keys.path().join("ops.pem")],
        )
        .await;
        assert_eq!(entry.code, 0, "{}", entry.stderr);
        let entry: Value = serde_json::from_str(entry.stdout.trim()).unwrap();
        let other = vettid(
            &["control", "keygen", "--out"],
            &[&keys.path().join("other.pem")],
        )
        .await;
        assert_eq!(other.code, 0, "{}", other.stderr);
        let file = keys.path().join("control-keys.json");
        std::fs::write(&file, json!([entry]).to_string()).unwrap();
        let sys = System::start(SystemOptions {
            enclave_args: vec![
                "--control-keys".into(),
                file.display().to_string(),
                "--enclave-id".into(),
                "test-host".into(),
            ],
            kms,
            ..Default::default()
        });
        let client = sys.client().await;
        let nats = sys.nats.url();
        Self {
            _sys: sys,
            keys,
            client,
            nats,
        }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.keys.path().join(name)
    }

    /// `vettid control sign|send` with the trusted key and `args`.
    async fn control(&self, verb: &str, args: &[&str]) -> Run {
        let key = self.key("ops.pem");
        let mut all = vec!["control", verb];
        if verb == "send" {
            all.extend(["--nats", &self.nats, "--timeout-ms", "5000"]);
        }
        all.extend(args);
        all.push("--key");
        vettid(&all, &[&key]).await
    }

    /// A signed command as JSON (from `vettid control sign`).
    async fn signed(&self, args: &[&str]) -> Value {
        let run = self.control("sign", args).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(run.stdout.trim()).unwrap()
    }

    async fn raw(&self, subject: &str, payload: &Value) -> Value {
        request_json(&self.client, subject, payload.clone(), LIMIT)
            .await
            .unwrap()
    }

    async fn keys_held(&self) -> u64 {
        let h = self.raw("enclave.health", &json!({})).await;
        h["attestation_keys_held"].as_u64().unwrap()
    }

    /// Enrols `owner`'s vault (attestation, then `pin.setup`); returns the setup reply.
    async fn enrol(&self, owner: &str) -> Value {
        let doc = self.attest(owner).await;
        let key: [u8; 32] = B64
            .decode(doc["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let setup = json!({"type": "pin.setup", "payload": vettid_tests::app::pin_setup_payload(&key, "1234", None)});
        request_json(
            &self.client,
            &format!("OwnerSpace.{owner}.forVault.pin"),
            setup,
            Duration::from_secs(30),
        )
        .await
        .unwrap()
    }

    async fn attest(&self, owner: &str) -> Value {
        let nonce = json!({"nonce": B64.encode([9u8; 32])});
        self.raw(&format!("OwnerSpace.{owner}.forVault.attestation"), &nonce)
            .await
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI with a bounded wait (the harness kills it on timeout).
async fn vettid(args: &[&str], paths: &[&Path]) -> Run {
    let mut cmd = tokio::process::Command::new(bin_path("vettid"));
    cmd.args(args).args(paths).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("vettid did not finish within 20 s")
        .expect("run vettid");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn assert_refused(reply: &Value, reason: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "control_rejected", "{reply}");
    assert_eq!(
        reply["error"],
        format!("control command rejected: {reason}"),
        "{reply}"
    );
}

/// `vettid control send` refused by the enclave: exit 5, the reply on stdout names the reason.
fn assert_cli_refused(run: &Run, reason: &str) {
    assert_eq!(run.code, 5, "exit code; stderr: {}", run.stderr);
    assert_refused(&serde_json::from_str(run.stdout.trim()).unwrap(), reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_vault_reset_removes_only_that_users_keys() {
    let f = Fixture::start().await;
    for owner in ["user-u", "user-u", "user-v"] {
        assert!(f.attest(owner).await["attestation_document"].is_string());
    }
    assert_eq!(f.keys_held().await, 3);
    let run = f
        .control(
            "send",
            &[
                "--command",
                "vault.reset",
                "--target",
                "user:user-u",
                "--param",
                "reason=e2e",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    let reply: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(reply["status"], "reset", "{reply}");
    assert_eq!(reply["user"], "user-u");
    assert_eq!(reply["removed"], 2);
    assert_eq!(f.keys_held().await, 1, "user-v's key stays");
    let run = f
        .control(
            "send",
            &["--command", "credential.delete", "--target", "user:user-v"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(f.keys_held().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_vault_reset_wipes_that_users_stored_vault_only() {
    let f = Fixture::start_with(Some(Default::default())).await;
    for owner in ["user-w", "user-x"] {
        assert_eq!(f.enrol(owner).await["status"], "vault_ready");
    }
    assert_eq!(f.enrol("user-w").await["code"], "already_enrolled");
    // The unsigned v1 reset does nothing (G6).
    let r = f
        .raw("enclave.vault.reset", &json!({"user_guid": "user-w"}))
        .await;
    assert_eq!(r["code"], "unsigned_reset_refused", "{r}");
    assert_eq!(f.enrol("user-w").await["code"], "already_enrolled");
    let run = f
        .control(
            "send",
            &["--command", "vault.reset", "--target", "user:user-w"],
        )
        .await;
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    // Wiped: enrolment starts again; the other user's vault is untouched.
    assert_eq!(f.enrol("user-w").await["status"], "vault_ready");
    assert_eq!(f.enrol("user-x").await["code"], "already_enrolled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_name_their_reason_and_change_nothing() {
    let f = Fixture::start().await;
    f.attest("user-u").await;
    let reset_u = ["--command", "vault.reset", "--target", "user:user-u"];
    let subject_u = "Control.user.user-u.vault.reset";

    let mut unsigned = f.signed(&reset_u).await;
    unsigned.as_object_mut().unwrap().remove("signature");
    assert_refused(&f.raw(subject_u, &unsigned).await, "unsigned");

    let mut tampered = f
        .signed(&[&reset_u[..], &["--param", "reason=ticket 1"]].concat())
        .await;
    tampered["params"]["reason"] = "ticket 2".into();
    assert_refused(&f.raw(subject_u, &tampered).await, "bad signature");

    let expired = (now_ms() - 120_000).to_string();
    let args = [
        &reset_u[..],
        &["--issued-at-ms", &expired, "--ttl-secs", "60"],
    ]
    .concat();
    assert_cli_refused(&f.control("send", &args).await, "expired");

    let future = (now_ms() + 600_000).to_string();
    let args = [&reset_u[..], &["--issued-at-ms", &future]].concat();
    assert_cli_refused(&f.control("send", &args).await, "issued in the future");

    let other_key = f.key("other.pem");
    let mut args = vec!["control", "send", "--nats", &f.nats, "--timeout-ms", "5000"];
    args.extend(reset_u);
    args.push("--key");
    assert_cli_refused(&vettid(&args, &[&other_key]).await, "unknown key");

    // A reset signed for user-u, replayed on another user's subject.
    let for_u = f.signed(&reset_u).await;
    assert_refused(
        &f.raw("Control.user.user-v.vault.reset", &for_u).await,
        "wrong target",
    );
    // A command for another enclave, delivered to this one.
    let elsewhere = f
        .signed(&["--command", "drain", "--target", "enclave:other-host"])
        .await;
    assert_refused(
        &f.raw("Control.enclave.test-host.drain", &elsewhere).await,
        "wrong target",
    );
    // The subject's command token must be the signed one.
    assert_refused(
        &f.raw("Control.user.user-u.credential.delete", &for_u).await,
        "command does not match subject",
    );
    // No parent subscribes for another enclave id: the CLI says so (exit 2).
    let run = f
        .control(
            "send",
            &["--command", "drain", "--target", "enclave:other-host"],
        )
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    assert_eq!(
        f.keys_held().await,
        1,
        "nothing was reset by a refused command"
    );
    // The valid command runs once; the same bytes again are a replay.
    assert_eq!(f.raw(subject_u, &for_u).await["status"], "reset");
    assert_refused(&f.raw(subject_u, &for_u).await, "replayed");
    assert_eq!(f.keys_held().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_request_answers_on_control_global() {
    let f = Fixture::start().await;
    let run = f
        .control(
            "send",
            &["--command", "health.request", "--target", "global"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reply: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(reply["healthy"], true, "{reply}");
    assert_eq!(reply["mock_nsm"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_vault_work_while_health_answers() {
    let f = Fixture::start().await;
    assert!(f.attest("user-u").await["attestation_document"].is_string());
    let run = f
        .control(
            "send",
            &["--command", "drain", "--target", "enclave:test-host"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reply: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(reply["status"], "draining", "{reply}");
    let refused = f.attest("user-u").await;
    assert_eq!(refused["code"], "draining", "{refused}");
    let lambda = json!({"nonce": B64.encode([1u8; 16])});
    assert_eq!(
        f.raw("enclave.attestation.request", &lambda).await["code"],
        "draining"
    );
    assert_eq!(f.raw("enclave.health", &json!({})).await["healthy"], true);
    let run = f
        .control(
            "send",
            &["--command", "health.request", "--target", "global"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}
