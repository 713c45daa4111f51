//! Child processes with kill-on-drop, and the binaries they run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Directory holding the workspace binaries: the test executable lives in `target/<profile>/deps`
/// (tests) or `target/<profile>` (bench binaries).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, with a clear failure if it was not built.
pub fn bin_path(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first with `cargo build --bins --features vettid-enclave/dev` (scripts/test does this)",
        p.display()
    );
    p
}

/// Checks that the enclave binary is a dev build (mock NSM); a production build refuses to start
/// without /dev/nsm, which tests cannot provide.
pub fn assert_dev_enclave() {
    let out = Command::new(bin_path("vettid-enclave"))
        .arg("--build-info")
        .output()
        .expect("run vettid-enclave");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("build info JSON");
    assert_eq!(
        info["mock_nsm"], true,
        "target/*/vettid-enclave is a production build; rebuild with `cargo build --bins --features vettid-enclave/dev`"
    );
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed (SIGKILL) on drop, with its stderr in a log file.
pub struct Child {
    name: String,
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl Child {
    /// Spawns `cmd`, logging stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log clone");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name: name.into(),
            child: Some(child),
            log: log.into(),
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `limit` for exit; returns the exit code (None if killed by a signal or still running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Some(status.code());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("----- last lines of {} -----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill();
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_tcp(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A `nats-server` on a free loopback port, which tests can stop and restart on the same port.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Someone else's server (a second host on the first host's NATS): never stopped here.
    external: bool,
}

fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join("nats-server");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("nats-server not found: run scripts/test (it installs Debian's nats-server) or set NATS_SERVER_BIN");
}

impl NatsServer {
    /// Starts a server in `dir` (for its log).
    pub fn start(dir: &Path) -> Self {
        let mut s = Self {
            port: free_port(),
            dir: dir.into(),
            child: None,
            external: false,
        };
        s.restart();
        s
    }

    /// A handle on a server another harness object runs (same URL; stop/restart refused).
    pub fn shared(other: &NatsServer) -> Self {
        Self {
            port: other.port,
            dir: other.dir.clone(),
            child: None,
            external: true,
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: clients see the connection drop at once).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// (Re)starts on the same port.
    pub fn restart(&mut self) {
        assert!(
            !self.external,
            "restart the server through the host that started it"
        );
        self.stop();
        let mut cmd = Command::new(nats_server_bin());
        // JetStream on, as deployed NATS runs: v1 clients need the parent's `ENROLLMENT`
        // stream. Its store stays in the test's directory, so a restart finds the stream again.
        let store = self.dir.join("jetstream");
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&store);
        self.child = Some(Child::spawn("nats-server", cmd, &self.dir.join("nats.log")));
        assert!(
            wait_tcp(&format!("127.0.0.1:{}", self.port), Duration::from_secs(10)),
            "nats-server did not start"
        );
    }
}
