//! `scripts/dev` (the README's first command) brings up a system that `vettid health` answers,
//! starting its own nats-server when none runs at `NATS_URL`, and stops everything on Ctrl-C.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vettid_tests::{bin_path, free_port};

#[test]
// Every path reaps the script: try_wait() on early exit, wait() after SIGKILL.
#[allow(clippy::zombie_processes)]
fn dev_script_runs_a_system_that_vettid_health_answers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("dev.log")).unwrap();
    let mut script = Command::new(root.join("scripts/dev"))
        .env("NATS_URL", &nats_url)
        .env("VETTID_DEV_DIR", dir.path())
        .env("VETTID_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
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
    assert!(exited, "scripts/dev did not stop on SIGINT; log:\n{log}");
    assert!(
        dir.path().join("mock-root.pem").exists(),
        "mock root written to VETTID_DEV_DIR"
    );
    assert!(log.contains("dev system stopped"), "{log}");
}
