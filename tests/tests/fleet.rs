//! The fleet (issue 12): hosts behind one queue group, one bucket, one KMS and one trusted-store
//! table. Each rollback test plays the host: it restarts enclaves, routes users to hosts that
//! never saw their vault, replays signed commands and puts back old objects (the fs object store
//! is the host's, so writing its files is exactly what a host can do). Each failed before the
//! trusted store anchored vaults: the older object was used and the PIN counter went back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_tests::kms::KmsOptions;
use vettid_tests::replies::Requester;
use vettid_tests::vault_client::{Answer, VaultUser};
use vettid_tests::{app, bin_path, request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(30);

fn anchored() -> SystemOptions {
    SystemOptions {
        kms: Some(KmsOptions::default()),
        trusted_store: true,
        ..SystemOptions::default()
    }
}

/// `n` anchored hosts, each on its own nats-server so the test decides where a request goes.
fn addressable_fleet(n: usize, extra: SystemOptions) -> Vec<System> {
    System::start_fleet(
        n,
        SystemOptions {
            separate_nats: true,
            ..extra
        },
    )
}

/// Where the fs object store keeps `owner`'s vault object.
fn object_path(sys: &System, owner: &str) -> PathBuf {
    fn find(dir: &Path, owner: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                if let Some(p) = find(&path, owner) {
                    return Some(p);
                }
            } else if path.file_name().is_some_and(|n| n == "vault.v2@")
                && path.to_string_lossy().contains(owner)
            {
                return Some(path);
            }
        }
        None
    }
    find(&sys.storage_root(), owner).expect("the vault object is stored")
}

async fn user(sys: &System, owner: &str) -> VaultUser {
    let requester = Requester::new(sys.client().await).await;
    VaultUser::new(requester, owner, &app::phc_password_hash("fleet"), LIMIT)
}

fn code(a: &Answer) -> String {
    a.code()
}

fn remaining(a: &Answer) -> u64 {
    match a {
        Answer::Error(v) => v["attempts_remaining"]
            .as_u64()
            .unwrap_or_else(|| panic!("expected invalid_pin, got {v}")),
        other => panic!("expected invalid_pin, got {other:?}"),
    }
}

fn restart_enclave(sys: &mut System) {
    sys.kill_enclave();
    sys.start_enclave();
    assert!(sys.wait_healthy(Duration::from_secs(20)), "enclave back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_object_served_after_an_enclave_restart_is_refused_and_the_counter_stays() {
    let mut sys = System::start(anchored());
    let owner = "fleet-restart";
    let mut u = user(&sys, owner).await;
    u.setup("2468").await.expect_ok("setup");
    let path = object_path(&sys, owner);
    let before = std::fs::read(&path).unwrap();
    for expected in [9, 8, 7, 6] {
        assert_eq!(remaining(&u.unlock_with("0000").await), expected);
    }
    let after = std::fs::read(&path).unwrap();
    // The review's experiment: restart the enclave, put back the object from before the guesses.
    restart_enclave(&mut sys);
    std::fs::write(&path, &before).unwrap();
    let mut u = user(&sys, owner).await.with_keys_of(&u);
    let r = u.unlock_with("0000").await;
    assert_eq!(code(&r), "stale_vault", "before the anchor: 9 again; {r:?}");
    // The host gives up: the counter is where the guesses left it (four failures: the
    // back-off that starts after the free attempts is on).
    std::fs::write(&path, &after).unwrap();
    let r = u.unlock_with("0000").await;
    assert_eq!(code(&r), "pin_backoff", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_saw_the_vault_refuses_an_older_object() {
    let fleet = addressable_fleet(2, anchored());
    let owner = "fleet-fresh-host";
    let mut on_a = user(&fleet[0], owner).await;
    on_a.setup("2468").await.expect_ok("setup on A");
    let path = object_path(&fleet[0], owner);
    let before = std::fs::read(&path).unwrap();
    for expected in [9, 8, 7] {
        assert_eq!(remaining(&on_a.unlock_with("0000").await), expected);
    }
    // B has never loaded this vault; the host serves it the object from before the guesses.
    std::fs::write(&path, &before).unwrap();
    let mut on_b = user(&fleet[1], owner).await.with_keys_of(&on_a);
    let r = on_b.unlock_with("0000").await;
    assert_eq!(code(&r), "stale_vault", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fleet_restart_still_refuses_the_older_object() {
    let mut fleet = addressable_fleet(2, anchored());
    let owner = "fleet-full-restart";
    let mut u = user(&fleet[0], owner).await;
    u.setup("2468").await.expect_ok("setup");
    let path = object_path(&fleet[0], owner);
    let before = std::fs::read(&path).unwrap();
    assert_eq!(remaining(&u.unlock_with("0000").await), 9);
    for host in &mut fleet {
        restart_enclave(host);
    }
    std::fs::write(&path, &before).unwrap();
    for host in &fleet {
        let mut u = user(host, owner).await.with_keys_of(&u);
        let r = u.unlock_with("0000").await;
        assert_eq!(code(&r), "stale_vault", "{r:?}");
    }
}

/// A signed `vault.reset` for `owner`, with control keys every host trusts.
struct Control {
    keys: tempfile::TempDir,
}

impl Control {
    fn new() -> Self {
        let keys = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(bin_path("vettid"))
            .args(["control", "keygen", "--out"])
            .arg(keys.path().join("ops.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
        std::fs::write(
            keys.path().join("control-keys.json"),
            json!([entry]).to_string(),
        )
        .unwrap();
        Self { keys }
    }

    fn enclave_args(&self, id: &str) -> Vec<String> {
        vec![
            "--control-keys".into(),
            self.keys
                .path()
                .join("control-keys.json")
                .display()
                .to_string(),
            "--enclave-id".into(),
            id.into(),
        ]
    }

    fn reset(&self, owner: &str) -> Value {
        let out = std::process::Command::new(bin_path("vettid"))
            .args(["control", "sign", "--command", "vault.reset", "--target"])
            .arg(format!("user:{owner}"))
            .arg("--key")
            .arg(self.keys.path().join("ops.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_reset_replayed_on_a_second_host_is_refused() {
    let control = Control::new();
    let first = System::start(SystemOptions {
        enclave_args: control.enclave_args("host-a"),
        ..anchored()
    });
    let second = System::start_second_host(
        &first,
        SystemOptions {
            enclave_args: control.enclave_args("host-b"),
            storage_root: Some(first.storage_root()),
            separate_nats: true,
            ..anchored()
        },
    );
    let owner = "fleet-reset";
    let mut u = user(&first, owner).await;
    u.setup("2468").await.expect_ok("setup");
    let reset = control.reset(owner);
    let subject = format!("Control.user.{owner}.vault.reset");
    let a = first.client().await;
    let r = request_json(&a, &subject, reset.clone(), LIMIT)
        .await
        .unwrap();
    assert_eq!(r["status"], "reset", "{r}");
    // The user enrols again, then the host replays the recorded reset on the other host.
    let mut again = user(&first, owner).await;
    again.setup("1357").await.expect_ok("enrol again");
    let b = second.client().await;
    let r = request_json(&b, &subject, reset, LIMIT).await.unwrap();
    assert_eq!(r["code"], "control_rejected", "{r}");
    assert!(r["error"].as_str().unwrap().contains("replayed"), "{r}");
    // The new vault is untouched.
    let r = again.unlock_with("1357").await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_leaves_a_tombstone_the_old_object_cannot_come_back_from() {
    let control = Control::new();
    let sys = System::start(SystemOptions {
        enclave_args: control.enclave_args("host-a"),
        ..anchored()
    });
    let owner = "fleet-tombstone";
    let mut u = user(&sys, owner).await;
    u.setup("2468").await.expect_ok("setup");
    let path = object_path(&sys, owner);
    let old = std::fs::read(&path).unwrap();
    let c = sys.client().await;
    let subject = format!("Control.user.{owner}.vault.reset");
    let r = request_json(&c, &subject, control.reset(owner), LIMIT)
        .await
        .unwrap();
    assert_eq!(r["status"], "reset", "{r}");
    // The host puts the deleted object back: it is not a vault any more.
    std::fs::write(&path, &old).unwrap();
    let mut u = user(&sys, owner).await.with_keys_of(&u);
    let r = u.unlock_with("2468").await;
    assert_eq!(code(&r), "not_enrolled", "{r:?}");
}

/// Attestation on one host, `pin.setup` on another: the fleet key carries the attestation key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_on_one_host_enrols_on_another_once() {
    let fleet = addressable_fleet(2, anchored());
    let owner = "fleet-cross-enrol";
    let on_a = user(&fleet[0], owner).await;
    let key: [u8; 32] = match on_a.attest().await {
        Answer::Ok(r) => B64
            .decode(r["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        other => panic!("{other:?}"),
    };
    let payload = app::pin_setup_payload(&key, "2468", None);
    let on_b = user(&fleet[1], owner).await;
    let r = on_b.call("pin", "pin.setup", payload.clone()).await;
    assert_eq!(r.clone().expect_ok("setup on B")["status"], "vault_ready");
    // The same envelope again, on either host: the key was single use.
    for u in [&on_a, &on_b] {
        let r = u.call("pin", "pin.setup", payload.clone()).await;
        assert!(
            ["attestation_key_required", "already_enrolled"].contains(&code(&r).as_str()),
            "{r:?}"
        );
    }
}

/// Reads are fresh (the example: `credential.get` stayed stale up to 15 min on other
/// hosts after a delete): after a change on one host, another host that holds the vault unlocked
/// in memory does not answer from its old copy, because every request reads the vault's mark and
/// a copy the mark has moved past is reloaded. Bound: zero, for one table read per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_host_is_seen_at_once_by_another_that_cached_the_vault() {
    let fleet = addressable_fleet(2, anchored());
    let owner = "fleet-fresh-reads";
    let mut on_a = user(&fleet[0], owner).await;
    on_a.setup("2468").await.expect_ok("setup on A");
    on_a.create_credential().await.expect_ok("credential on A");
    // B unlocks and reads the credential: it now holds the vault, unlocked, in memory.
    let mut on_b = user(&fleet[1], owner).await.with_keys_of(&on_a);
    on_b.unlock().await.expect_ok("unlock on B");
    let r = on_b
        .call("credential.get", "credential.get", json!({}))
        .await;
    assert!(r.is_ok(), "{r:?}");
    // The user deletes the credential through A.
    let mut on_a = user(&fleet[0], owner).await.with_keys_of(&on_b);
    on_a.utk_op("credential.delete", json!({}))
        .await
        .expect_ok("delete on A");
    // B answers from what is stored now, not from its copy.
    let r = on_b
        .call("credential.get", "credential.get", json!({}))
        .await;
    assert_eq!(
        code(&r),
        "no_credential",
        "B answered from its old copy: {r:?}"
    );
}
