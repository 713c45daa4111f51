//! `vettid supervise-enclave` driven by a stand-in `nitro-cli`.
//!
//! The stand-in is a shell script written into each test's temp dir. `run-enclave` starts the
//! real dev `vettid-enclave` on a Unix socket (`$FAKE_ENCLAVE_SOCKET`), records its pid and id in
//! `$FAKE_NITRO_STATE/enclave` and prints JSON shaped like nitro-cli's; `describe-enclaves`
//! lists it as RUNNING while the pid is alive; `terminate-enclave` stops it. Every call is
//! appended to `calls.log`, so tests can check what the supervisor asked for and in which order.
//! The supervisor probes `unix://…`: nothing here opens a vsock socket.
//!
//! systemd is played by a Unix datagram socket passed as `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vettid_tests::proc::assert_dev_enclave;
use vettid_tests::{bin_path, Child};

/// Bound on the supervisor reaching READY=1 (a debug enclave boots in about a second).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Bound on the supervisor exiting after a signal or a loss.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// Exit codes documented in cli/src/supervise.rs and docs/OPERATIONS.md.
const EXIT_ENCLAVE_LOST: i32 = 10;
const EXIT_UNRESPONSIVE: i32 = 11;
const EX_USAGE: i32 = 64;

const STAND_IN: &str = r#"#!/bin/sh
# Stand-in nitro-cli for tests: one enclave at a time, a real dev vettid-enclave process.
state="${FAKE_NITRO_STATE:?}"
sock="${FAKE_ENCLAVE_SOCKET:?}"
echo "$*" >> "$state/calls.log"
cmd="$1"; shift
alive() {
    # A zombie (state Z) counts as dead: nothing may reap it in a test container.
    s=$(sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ]
}
case "$cmd" in
run-enclave)
    name=vettid-enclave; cid=16; mem=0; cpus=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --enclave-name) name="$2"; shift 2 ;;
            --enclave-cid) cid="$2"; shift 2 ;;
            --memory) mem="$2"; shift 2 ;;
            --cpu-count) cpus="$2"; shift 2 ;;
            *) shift ;;
        esac
    done
    rm -f "$sock"
    "__ENCLAVE_BIN__" --listen "unix://$sock" --dev-dir "$state/dev" >> "$state/enclave.log" 2>&1 < /dev/null &
    pid=$!
    id="i-0fake-enc$(printf '%016x' "$pid")"
    echo "$pid $id $name $cid" > "$state/enclave"
    echo "Start allocating memory..."
    echo "Started enclave with enclave-cid: $cid, memory: $mem MiB, cpu-ids: [1, 3]"
    printf '{\n  "EnclaveName": "%s",\n  "EnclaveID": "%s",\n  "ProcessID": %s,\n  "EnclaveCID": %s,\n  "NumberOfCPUs": %s,\n  "CPUIDs": [1, 3],\n  "MemoryMiB": %s\n}\n' \
        "$name" "$id" "$pid" "$cid" "$cpus" "$mem"
    ;;
describe-enclaves)
    if [ -f "$state/enclave" ]; then
        read -r pid id name cid < "$state/enclave"
        if alive "$pid"; then
            printf '[\n  {\n    "EnclaveName": "%s",\n    "EnclaveID": "%s",\n    "ProcessID": %s,\n    "EnclaveCID": %s,\n    "NumberOfCPUs": 2,\n    "CPUIDs": [1, 3],\n    "MemoryMiB": 512,\n    "State": "RUNNING",\n    "Flags": "NONE"\n  }\n]\n' \
                "$name" "$id" "$pid" "$cid"
            exit 0
        fi
        rm -f "$state/enclave"
    fi
    echo "[]"
    ;;
terminate-enclave)
    [ "$1" = "--enclave-id" ] || { echo "usage: terminate-enclave --enclave-id ID" >&2; exit 2; }
    want="$2"
    if [ -f "$state/enclave" ]; then
        read -r pid id name cid < "$state/enclave"
        if [ "$id" = "$want" ]; then
            kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
            n=0
            while alive "$pid" && [ $n -lt 30 ]; do sleep 0.1; n=$((n + 1)); done
            kill -KILL "$pid" 2>/dev/null
            rm -f "$state/enclave"
            printf '{\n  "EnclaveID": "%s",\n  "Terminated": true\n}\n' "$id"
            exit 0
        fi
    fi
    echo "[ E11 ] no enclave with id $want" >&2
    exit 1
    ;;
*)
    echo "stand-in nitro-cli: unsupported command $cmd" >&2
    exit 2
    ;;
esac
"#;

/// A temp dir with the stand-in nitro-cli, its state, a config and a NOTIFY_SOCKET. On drop it
/// SIGKILLs any enclave the stand-in started (they outlive the script that spawned them).
struct Rig {
    dir: tempfile::TempDir,
    notify: UnixDatagram,
}

impl Rig {
    fn new() -> Self {
        assert_dev_enclave();
        let dir = tempfile::Builder::new()
            .prefix("sv")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let script = STAND_IN.replace(
            "__ENCLAVE_BIN__",
            &bin_path("vettid-enclave").display().to_string(),
        );
        let nitro = dir.path().join("nitro-cli");
        std::fs::write(&nitro, script).expect("write stand-in");
        std::fs::set_permissions(&nitro, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir_all(dir.path().join("dev")).expect("dev dir");
        let notify =
            UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind NOTIFY_SOCKET");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Self { dir, notify }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes enclave.toml with test-sized bounds plus `extra` lines.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            r#"eif_path = "/opt/vettid/enclave/test.eif"
cpu_count = 2
memory_mib = 512
enclave_address = "unix://{sock}"
settle_ms = 50
probe_interval_ms = 200
probe_timeout_ms = 1000
max_missed_probes = 2
start_timeout_ms = 20000
terminate_timeout_ms = 5000
nitro_cli_timeout_ms = 10000
{extra}
"#,
            sock = self.path("enclave.sock").display()
        );
        let p = self.path("enclave.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    fn command(&self, config: &Path, extra_args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("vettid"));
        cmd.arg("supervise-enclave")
            .arg("--config")
            .arg(config)
            .arg("--nitro-cli")
            .arg(self.path("nitro-cli"))
            .args(extra_args)
            .env("NOTIFY_SOCKET", self.path("notify.sock"))
            .env("FAKE_NITRO_STATE", self.dir.path())
            .env("FAKE_ENCLAVE_SOCKET", self.path("enclave.sock"))
            .env("RUST_LOG", "info");
        cmd
    }

    fn start(&self, extra_config: &str, extra_args: &[&str]) -> Child {
        let config = self.config(extra_config);
        Child::spawn(
            "vettid supervise-enclave",
            self.command(&config, extra_args),
            &self.path("supervisor.log"),
        )
    }

    /// Waits for a notify datagram containing `needle`; returns every message seen so far.
    fn wait_notify(&self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == needle);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!("no {needle} on NOTIFY_SOCKET within {limit:?}; got {seen:?}");
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// (pid, enclave id) of the enclave the stand-in last started, if it is recorded.
    fn enclave(&self) -> Option<(u32, String)> {
        let s = std::fs::read_to_string(self.path("enclave")).ok()?;
        let mut it = s.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_string()))
    }

    /// Runs the stand-in directly, as an earlier crashed supervisor would have.
    fn nitro(&self, args: &[&str]) -> String {
        let out = Command::new(self.path("nitro-cli"))
            .args(args)
            .env("FAKE_NITRO_STATE", self.dir.path())
            .env("FAKE_ENCLAVE_SOCKET", self.path("enclave.sock"))
            .output()
            .expect("run stand-in");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some((pid, _)) = self.enclave() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[test]
fn supervisor_reports_ready_and_terminates_enclave_on_sigterm() {
    let rig = Rig::new();
    let mut sup = rig.start("", &[]);
    rig.wait_notify("READY=1", READY_WITHIN);
    let (pid, id) = rig.enclave().expect("the stand-in recorded an enclave");
    assert!(alive(pid), "enclave process should run after READY");
    let run = rig
        .calls()
        .into_iter()
        .find(|c| c.starts_with("run-enclave"))
        .expect("run-enclave called");
    for arg in [
        "--eif-path /opt/vettid/enclave/test.eif",
        "--enclave-cid 16",
        "--cpu-count 2",
        "--memory 512",
    ] {
        assert!(run.contains(arg), "{arg} missing from {run}");
    }
    assert!(
        !run.contains("--debug-mode"),
        "debug mode without the flag: {run}"
    );

    sup.signal("TERM");
    assert_eq!(
        sup.wait_exit(EXIT_WITHIN),
        Some(Some(0)),
        "clean stop must exit 0\n{}",
        sup.log()
    );
    rig.wait_notify("STOPPING=1", Duration::from_secs(1));
    assert!(
        rig.calls()
            .contains(&format!("terminate-enclave --enclave-id {id}")),
        "terminate-enclave not called: {:?}",
        rig.calls()
    );
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "enclave still running after stop"
    );
}

#[test]
fn supervisor_exits_non_zero_when_enclave_process_dies() {
    let rig = Rig::new();
    let mut sup = rig.start("", &[]);
    rig.wait_notify("READY=1", READY_WITHIN);
    let (pid, _) = rig.enclave().expect("enclave recorded");
    kill(pid, "KILL");
    let code = sup
        .wait_exit(EXIT_WITHIN)
        .expect("supervisor must notice the dead enclave");
    assert_eq!(code, Some(EXIT_ENCLAVE_LOST), "{}", sup.log());
    assert!(sup.log().contains("is gone"), "{}", sup.log());
}

#[test]
fn supervisor_exits_non_zero_when_enclave_stops_answering() {
    let rig = Rig::new();
    let mut sup = rig.start("", &[]);
    rig.wait_notify("READY=1", READY_WITHIN);
    let (pid, id) = rig.enclave().expect("enclave recorded");
    // Frozen: still listed RUNNING by describe-enclaves, but no answer to pings.
    kill(pid, "STOP");
    let code = sup
        .wait_exit(EXIT_WITHIN)
        .expect("supervisor must notice the wedged enclave");
    assert_eq!(code, Some(EXIT_UNRESPONSIVE), "{}", sup.log());
    // It terminates the wedged enclave itself, so the restart starts clean.
    assert!(
        rig.calls()
            .contains(&format!("terminate-enclave --enclave-id {id}")),
        "{:?}",
        rig.calls()
    );
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "wedged enclave left running"
    );
}

#[test]
fn supervisor_clears_stale_enclave_before_launch() {
    let rig = Rig::new();
    rig.config("");
    let out = rig.nitro(&[
        "run-enclave",
        "--enclave-name",
        "vettid-enclave",
        "--enclave-cid",
        "16",
    ]);
    assert!(
        out.contains("EnclaveID"),
        "stand-in run-enclave printed {out}"
    );
    let (stale_pid, stale_id) = rig.enclave().expect("stale enclave recorded");

    let mut sup = rig.start("", &[]);
    rig.wait_notify("READY=1", READY_WITHIN);
    let calls = rig.calls();
    let terminate = calls
        .iter()
        .position(|c| c == &format!("terminate-enclave --enclave-id {stale_id}"))
        .unwrap_or_else(|| panic!("stale enclave not terminated: {calls:?}"));
    let run = calls
        .iter()
        .rposition(|c| c.starts_with("run-enclave"))
        .expect("run-enclave");
    assert!(
        terminate < run,
        "terminate must come before the new run-enclave: {calls:?}"
    );
    assert!(
        calls[terminate..run]
            .iter()
            .any(|c| c == "describe-enclaves"),
        "must confirm the stale enclave is gone before relaunching: {calls:?}"
    );
    assert!(!alive(stale_pid), "stale enclave still running");
    let (new_pid, new_id) = rig.enclave().expect("new enclave");
    assert_ne!(new_id, stale_id);
    assert!(alive(new_pid));

    sup.signal("TERM");
    assert_eq!(sup.wait_exit(EXIT_WITHIN), Some(Some(0)), "{}", sup.log());
}

#[test]
fn debug_mode_needs_both_flag_and_config_and_is_loud() {
    let rig = Rig::new();
    let mut sup = rig.start("debug_mode = true", &["--debug-mode"]);
    rig.wait_notify("READY=1", READY_WITHIN);
    let run = rig
        .calls()
        .into_iter()
        .find(|c| c.starts_with("run-enclave"))
        .expect("run-enclave");
    assert!(run.ends_with("--debug-mode"), "{run}");
    assert!(
        sup.log().contains("DEBUG MODE"),
        "debug mode must be logged loudly:\n{}",
        sup.log()
    );
    sup.signal("TERM");
    assert_eq!(sup.wait_exit(EXIT_WITHIN), Some(Some(0)), "{}", sup.log());
}

#[test]
fn supervisor_refuses_bad_config_with_every_problem() {
    let rig = Rig::new();
    let config = rig.path("bad.toml");
    std::fs::write(&config, "eif_path = \"/x.eif\"\ncpu_count = 0\nmemory_mib = 1\nenclave_address = \"vsock://17:5000\"\n")
        .expect("write");
    let out = rig.command(&config, &[]).output().expect("run supervisor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_USAGE), "{stderr}");
    for problem in ["cpu_count", "memory_mib", "enclave_address"] {
        assert!(
            stderr.contains(problem),
            "{problem} not reported:\n{stderr}"
        );
    }

    std::fs::write(
        &config,
        "eif_path = \"/x.eif\"\ncpu_count = 2\nmemory_mib = 512\ncpu_cuont = 4\n",
    )
    .expect("write");
    let out = rig.command(&config, &[]).output().expect("run supervisor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_USAGE), "{stderr}");
    assert!(
        stderr.contains("cpu_cuont"),
        "unknown key not named:\n{stderr}"
    );
    assert!(
        rig.calls().is_empty(),
        "nitro-cli must not run with a bad config: {:?}",
        rig.calls()
    );
}
