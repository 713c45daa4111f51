//! `scripts/dev` (the README's first command) brings up a system that `vettid health` answers,
//! starting its own nats-server when none runs at `NATS_URL`, whose vault works end to end (an app
//! attests, then enrols with `pin.setup`: the enclave's KMS client reaches the script's local KMS
//! through the parent's tunnel), whose enclave reads its trusted store (the script's dynalite,
//! through the same tunnel, signed with the sealed dev credentials), and stops everything on
//! Ctrl-C.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use vettid_attestation::Policy;
use vettid_tests::{app, bin_path, free_port, request_json};

/// The app's test owner space.
const OWNER: &str = "0b6e3c1a-dev-script-vault";

/// Bound of one NATS request. `pin.setup` runs Argon2id with production parameters (a few seconds
/// in a debug build) and, on the first call, the KMS client's TLS handshake through the tunnel.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

#[test]
// Every path reaps the script: try_wait() on early exit, wait() after SIGKILL.
#[allow(clippy::zombie_processes)]
fn dev_script_runs_a_system_whose_vault_works_and_stops_on_ctrl_c() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let http_port = free_port();
    let log = std::fs::File::create(dir.path().join("dev.log")).unwrap();
    let mut script = Command::new(root.join("scripts/dev"))
        .env("NATS_URL", &nats_url)
        .env("VETTID_DEV_DIR", dir.path())
        .env("VETTID_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
        .env("VETTID_KMS_PORT", free_port().to_string())
        .env("VETTID_DYNAMO_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = script.id();
    let started = Instant::now();
    let mut healthy = false;
    // Generous: the script runs `cargo build`, a no-op when the binaries are current.
    while started.elapsed() < Duration::from_secs(240) {
        let out = Command::new(bin_path("vettid"))
            .args(["health", "--timeout-ms", "1000", "--nats", &nats_url])
            .args(["--parent-url", &format!("http://127.0.0.1:{http_port}")])
            .output()
            .unwrap();
        if out.status.success() {
            healthy = true;
            break;
        }
        if let Ok(Some(status)) = script.try_wait() {
            panic!(
                "scripts/dev exited early ({status}): {}",
                std::fs::read_to_string(dir.path().join("dev.log")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Results are collected, not asserted, until the script is stopped: a failed check must not
    // leave the dev system running.
    let (enrolled, trusted) = if healthy {
        let rt = tokio::runtime::Runtime::new().unwrap();
        (
            rt.block_on(enrol_like_an_app(&nats_url, dir.path())),
            rt.block_on(trusted_store_reached(&nats_url)),
        )
    } else {
        (Err("not attempted".into()), Err("not attempted".into()))
    };
    let metrics = vettid_tests::http::get(http_port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = script.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !exited {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = script.wait();
    }
    let log = std::fs::read_to_string(dir.path().join("dev.log")).unwrap();
    assert!(healthy, "vettid health never answered; log:\n{log}");
    if let Err(e) = &enrolled {
        panic!("the dev vault did not enrol: {e}; log:\n{log}");
    }
    if let Err(e) = &trusted {
        panic!("the dev enclave did not reach its trusted store: {e}; log:\n{log}");
    }
    assert!(exited, "scripts/dev did not stop on SIGINT; log:\n{log}");
    // The table lives in VETTID_DEV_DIR (kept across restarts), next to the sealed credentials.
    assert!(
        std::fs::read_dir(dir.path().join("dynamodb")).is_ok_and(|mut d| d.next().is_some()),
        "no dynalite data in VETTID_DEV_DIR/dynamodb"
    );
    assert!(dir
        .path()
        .join("objects/vaults/_trusted-store/credentials.kms@")
        .exists());
    assert!(
        dir.path().join("mock-root.pem").exists(),
        "mock root written to VETTID_DEV_DIR"
    );
    // The material came from the local KMS through the parent's tunnel, signed with the parent's
    // dev credentials, and the sealed vault went to the parent's object store.
    assert!(
        metrics.contains("vettid_kms_tunnels_total{outcome=\"ok\"}"),
        "no KMS tunnel opened; metrics:\n{metrics}"
    );
    assert!(
        metrics.contains("vettid_aws_credentials_served_total{outcome=\"ok\"}"),
        "no credentials lent; metrics:\n{metrics}"
    );
    let stored = dir.path().join("objects/vaults").join(OWNER);
    assert!(
        std::fs::read_dir(&stored).is_ok_and(|mut d| d.next().is_some()),
        "no vault object under {}",
        stored.display()
    );
    assert!(log.contains("dev system stopped"), "{log}");
}

/// What an app does first: attest (verifying the document against the dev mock root and its own
/// nonce), then `pin.setup` with the PIN sealed to the attested key. `Ok` when the vault is ready.
async fn enrol_like_an_app(nats_url: &str, dev_dir: &Path) -> Result<(), String> {
    let client = async_nats::connect(nats_url)
        .await
        .map_err(|e| format!("connect to NATS: {e}"))?;
    let subject = |op: &str| format!("OwnerSpace.{OWNER}.forVault.{op}");
    let nonce = [0x42u8; 32];
    let attested = request_json(
        &client,
        &subject("attestation"),
        json!({"nonce": B64.encode(nonce)}),
        REQUEST_LIMIT,
    )
    .await
    .map_err(|e| format!("attestation: {e}"))?;
    let key = attested_key(&attested, &nonce, dev_dir)?;
    let request = json!({
        "id": "evt-dev-script-setup",
        "type": "pin.setup",
        "payload": app::pin_setup_payload(&key, "482916", None),
    });
    let reply = request_json(&client, &subject("pin"), request, REQUEST_LIMIT)
        .await
        .map_err(|e| format!("pin.setup: {e}"))?;
    if reply["status"] != "vault_ready" || reply["utks"].as_array().is_none_or(Vec::is_empty) {
        return Err(format!("pin.setup answered {reply}"));
    }
    Ok(())
}

/// `enclave.health` until its trusted store has answered (the enclave probes it within seconds of
/// starting): `Ok` when the sealed credentials opened and a read succeeded through the tunnel.
async fn trusted_store_reached(nats_url: &str) -> Result<(), String> {
    let client = async_nats::connect(nats_url)
        .await
        .map_err(|e| format!("connect to NATS: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) =
            request_json(&client, "enclave.health", json!({}), Duration::from_secs(5)).await
        {
            let t = &v["trusted_store"];
            if t["mode"] == "trusted-store"
                && t["credentials_loaded"] == true
                && t["outcomes"]["ok"].as_u64().unwrap_or(0) >= 1
            {
                return Ok(());
            }
            last = t.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("trusted store never answered: {last}"))
}

/// The enclave's key from a verified attestation reply.
fn attested_key(reply: &Value, nonce: &[u8], dev_dir: &Path) -> Result<[u8; 32], String> {
    let doc = reply["attestation"]
        .as_str()
        .and_then(|d| B64.decode(d).ok())
        .ok_or_else(|| format!("no attestation document in {reply}"))?;
    let pem = std::fs::read_to_string(dev_dir.join("mock-root.pem")).map_err(|e| e.to_string())?;
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let policy = Policy::skip_pcr_check_unsafe()
        .with_extra_root(B64.decode(der).map_err(|e| e.to_string())?)
        .map_err(|e| format!("mock root: {e:?}"))?
        .expect_nonce(nonce.to_vec());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let verified = vettid_attestation::verify(&doc, &policy, now_ms)
        .map_err(|e| format!("attestation does not verify: {e:?}"))?;
    let key: [u8; 32] = verified
        .public_key
        .ok_or("attestation carries no public key")?
        .try_into()
        .map_err(|_| "attestation public key is not 32 bytes")?;
    if reply["public_key"] != B64.encode(key) {
        return Err("reply public_key differs from the attested one".into());
    }
    Ok(key)
}
