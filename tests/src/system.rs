//! The whole system on one machine: nats-server, a dev enclave on a Unix socket, a parent.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proc::{assert_dev_enclave, bin_path, free_port, Child, NatsServer};

/// Knobs for [`System::start`].
#[derive(Debug, Clone, Default)]
pub struct SystemOptions {
    /// Extra arguments for `vettid-parent`.
    pub parent_args: Vec<String>,
    /// Extra TOML appended to the parent's config file.
    pub parent_toml: String,
    /// Replaces the default `[attestation]` section (dev mode: mock root, any PCRs). The text
    /// `{MOCK_ROOT}` is replaced with the path of the mock NSM root certificate.
    pub attestation_toml: Option<String>,
    /// Return from `start` once the parent answers `/health`, healthy or not (for tests of a
    /// parent that refuses the enclave).
    pub allow_unhealthy: bool,
    /// Object-store root shared with another host (default: this system's own directory).
    pub storage_root: Option<PathBuf>,
    /// Extra environment for `vettid-parent` (e.g. NOTIFY_SOCKET).
    pub parent_env: Vec<(String, String)>,
    /// Extra arguments for `vettid-enclave` (e.g. `--control-keys FILE --enclave-id test-host`).
    pub enclave_args: Vec<String>,
}

/// A running system. Everything is killed when it is dropped.
pub struct System {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub enclave: Option<Child>,
    pub parent: Option<Child>,
    pub http_port: u16,
    opts: SystemOptions,
}

impl System {
    /// Starts nats-server, the enclave and the parent, and waits until the parent is healthy.
    pub fn start(opts: SystemOptions) -> Self {
        Self::start_on(None, opts)
    }

    /// A second host: its own enclave and parent, on `first`'s nats-server (same queue group).
    pub fn start_second_host(first: &System, opts: SystemOptions) -> Self {
        Self::start_on(Some(&first.nats), opts)
    }

    fn start_on(shared_nats: Option<&NatsServer>, opts: SystemOptions) -> Self {
        assert_dev_enclave();
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = match shared_nats {
            Some(n) => NatsServer::shared(n),
            None => NatsServer::start(dir.path()),
        };
        let mut s = Self {
            dir,
            nats,
            enclave: None,
            parent: None,
            http_port: free_port(),
            opts,
        };
        s.start_enclave();
        s.start_parent();
        if s.opts.allow_unhealthy {
            let deadline = Instant::now() + Duration::from_secs(15);
            while s.health().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            assert!(
                s.wait_healthy(Duration::from_secs(15)),
                "system did not become healthy"
            );
        }
        s
    }

    /// The enclave's socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("enclave.sock")
    }

    /// `unix://…` address of the enclave.
    pub fn enclave_addr(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The mock NSM root certificate (PEM) the dev enclave wrote.
    pub fn mock_root_pem(&self) -> PathBuf {
        self.dir.path().join("mock-root.pem")
    }

    /// Starts (or restarts) the enclave and waits for its socket.
    pub fn start_enclave(&mut self) {
        if let Some(mut old) = self.enclave.take() {
            old.kill();
        }
        let mut cmd = Command::new(bin_path("vettid-enclave"));
        cmd.arg("--listen")
            .arg(self.enclave_addr())
            .arg("--dev-dir")
            .arg(self.dir.path())
            .args(&self.opts.enclave_args);
        let started = Instant::now();
        let child = Child::spawn("vettid-enclave", cmd, &self.dir.path().join("enclave.log"));
        self.enclave = Some(child);
        while started.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("enclave socket did not appear");
    }

    /// SIGKILLs the enclave.
    pub fn kill_enclave(&mut self) {
        if let Some(mut e) = self.enclave.take() {
            e.kill();
        }
    }

    /// Starts (or restarts) the parent.
    pub fn start_parent(&mut self) {
        if let Some(mut old) = self.parent.take() {
            old.kill();
        }
        let config = self.dir.path().join("parent.toml");
        let attestation = self
            .opts
            .attestation_toml
            .clone()
            .unwrap_or_else(|| {
                "[attestation]\ndev_mode = true\ndev_trust_root = \"{MOCK_ROOT}\"\ndev_accept_any_pcrs = true\n"
                    .into()
            })
            .replace("{MOCK_ROOT}", &self.mock_root_pem().display().to_string());
        let toml = format!(
            "enclave_id = \"test-host\"\n[nats]\nurl = \"{}\"\n[enclave]\naddress = \"{}\"\nrequest_timeout_ms = 5000\n[http]\nlisten = \"127.0.0.1:{}\"\n[storage]\nbackend = \"fs\"\nfs.root = \"{}\"\n{}\n{}\n",
            self.nats.url(),
            self.enclave_addr(),
            self.http_port,
            self.opts.storage_root.clone().unwrap_or_else(|| self.dir.path().join("objects")).display(),
            self.opts.parent_toml,
            attestation,
        );
        std::fs::write(&config, toml).expect("write parent.toml");
        let mut cmd = Command::new(bin_path("vettid-parent"));
        cmd.arg("--config")
            .arg(&config)
            .args(&self.opts.parent_args)
            .envs(self.opts.parent_env.iter().map(|(k, v)| (k, v)));
        self.parent = Some(Child::spawn(
            "vettid-parent",
            cmd,
            &self.dir.path().join("parent.log"),
        ));
    }

    /// The parent's `/health` as (status, JSON).
    pub fn health(&self) -> Option<(u16, Value)> {
        let (status, body) = crate::http::get(self.http_port, "/health").ok()?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// Waits until `/health` answers 200 and the parent is subscribed.
    pub fn wait_healthy(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some((200, v)) = self.health() {
                if v["subscribed"] == true {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A NATS client connected to this system's server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.nats.url())
            .await
            .expect("connect to test nats-server")
    }
}

/// Sends a request and parses the JSON reply, with a bounded wait.
pub async fn request_json(
    client: &async_nats::Client,
    subject: &str,
    payload: Value,
    limit: Duration,
) -> Result<Value, String> {
    let call = client.request(subject.to_string(), payload.to_string().into());
    match tokio::time::timeout(limit, call).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => Err(format!("request error: {e}")),
        Ok(Ok(msg)) => {
            serde_json::from_slice(&msg.payload).map_err(|e| format!("reply not JSON: {e}"))
        }
    }
}
