//! `vettid-enclave`: parse flags, open the NSM, bind, serve until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vettid_enclave::control::{self, ControlState, Verifier, VerifyingKeys};
use vettid_enclave::{clock, server, EnclaveConfig, EnclaveState, Processor};
use vettid_link::{Address, LinkConfig, Listener};
use vettid_protocol::Role;

/// The VettID vault and attestation service (runs inside the Nitro Enclave).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where the parent connects: vsock://any:5000 in production; unix:///path or tcp://127.0.0.1:PORT in dev.
    #[arg(
        long,
        env = "VETTID_ENCLAVE_LISTEN",
        default_value = "vsock://any:5000"
    )]
    listen: String,
    /// Requests served at once; beyond this the parent is told `busy`.
    #[arg(long, default_value_t = 4096)]
    max_concurrent: usize,
    /// Link connections accepted at once (the parent, its reconnect, the supervisor's probe and
    /// its reconnect); more are refused at accept.
    #[arg(long, default_value_t = vettid_enclave::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Vault operations running at once; beyond this a vault request is answered `busy`.
    #[arg(long, default_value_t = vettid_enclave::config::DEFAULT_MAX_VAULT_TASKS)]
    max_vault_tasks: usize,
    /// Dev builds: directory holding the mock NSM root (mock-root.pem) so it survives restarts.
    #[arg(long, env = "VETTID_DEV_DIR")]
    dev_dir: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Runtime worker threads; 0 runs all I/O on one thread (CPU-heavy work always goes to the
    /// blocking pool). One thread avoids cross-thread wake-ups, which dominate a relay's cost.
    #[arg(long, env = "VETTID_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
    /// JSON list of `{key_id, public_key_b64}`: the Ed25519 keys allowed to sign control commands
    /// (docs/CONTROL.md). Baked into the EIF with this path on the measured command line. Without
    /// it every control command is refused.
    #[arg(long)]
    control_keys: Option<std::path::PathBuf>,
    /// This enclave's id, as in `Control.enclave.{id}.*`; must equal the parent's `enclave_id`.
    /// Default: `dev-{hostname}`, the parent's own dev default.
    #[arg(long)]
    enclave_id: Option<String>,
    /// Vault settings (PIN policy, cache, Argon2 concurrency).
    #[command(flatten)]
    vault: vettid_enclave::vault::flags::VaultFlags,
    /// KMS (sealing vault material): all of --kms-endpoint, --kms-region, --kms-key-id and
    /// --kms-tunnel, or none (then vault operations answer KMSNotConfigured).
    #[command(flatten)]
    kms: vettid_enclave::kms::KmsFlags,
    /// The trusted state store (DynamoDB, issue 12): all of --trusted-store-endpoint, -region and
    /// -table (and the --kms-* flags), or none (single-host mode, as health reports).
    #[command(flatten)]
    trusted: vettid_enclave::trusted::TrustedFlags,
    /// Print build facts (version, whether the mock NSM is compiled in) as JSON and exit.
    #[arg(long)]
    build_info: bool,
}

/// EX_USAGE: bad flags or configuration.
const EX_USAGE: u8 = 64;
/// EX_UNAVAILABLE: a required service (the NSM) is missing.
const EX_UNAVAILABLE: u8 = 69;
/// EX_OSERR: binding the listener failed.
const EX_OSERR: u8 = 71;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.build_info {
        let mut info = serde_json::json!({
            "version": vettid_enclave::VERSION,
            "mock_nsm": vettid_nsm::MOCK_COMPILED_IN,
            "protocol_version": vettid_protocol::PROTOCOL_VERSION,
        });
        // Dev builds: the PCR0 this binary will report and (with --dev-dir) the mock root, created
        // if missing, so a local KMS can be configured before the enclave starts.
        if let Some(dev) = dev_build_info(&args) {
            info["dev"] = dev;
        }
        #[allow(clippy::print_stdout)]
        {
            println!("{info}");
        }
        return ExitCode::SUCCESS;
    }
    let logs = init_tracing(&args.log_format);
    let listen: Address = match args.listen.parse() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "invalid --listen");
            return ExitCode::from(EX_USAGE);
        }
    };
    let control = match control_state(&args) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                tracing::error!(error = %e, "invalid control configuration");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    let vault = match args.vault.config() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "invalid vault configuration");
            return ExitCode::from(EX_USAGE);
        }
    };
    let kms = match vettid_enclave::kms::KmsConfig::from_flags(&args.kms) {
        Ok(k) => k,
        Err(errors) => {
            for e in errors {
                tracing::error!(error = %e, "invalid KMS configuration");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    let trusted =
        match vettid_enclave::trusted::TrustedConfig::from_flags(&args.trusted, kms.is_some()) {
            Ok(t) => t,
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %e, "invalid trusted store configuration");
                }
                return ExitCode::from(EX_USAGE);
            }
        };
    let nsm = match open_nsm(&args) {
        Ok(nsm) => nsm,
        Err(e) => {
            tracing::error!(error = %e, "cannot start without an NSM");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let mut config = EnclaveConfig::new(listen);
    config.max_concurrent_requests = args.max_concurrent.max(1);
    config.max_connections = args.max_connections.max(1);
    config.max_vault_tasks = args.max_vault_tasks.max(1);
    let runtime = match vettid_link::runtime(args.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EX_OSERR);
        }
    };
    runtime.block_on(run(config, vault, kms, trusted, nsm, control, logs))
}

/// The control verifier from `--control-keys` and `--enclave-id`, reporting every error at once.
fn control_state(args: &Args) -> Result<ControlState, Vec<String>> {
    let mut errors = Vec::new();
    let enclave_id = args
        .enclave_id
        .clone()
        .unwrap_or_else(vettid_link::dev_enclave_id);
    if !control::wire::is_enclave_id(&enclave_id) {
        errors.push(format!(
            "--enclave-id {enclave_id:?}: must be one NATS subject token"
        ));
    }
    let keys = match &args.control_keys {
        Some(path) => VerifyingKeys::load(path).unwrap_or_else(|e| {
            errors.push(format!("--control-keys: {e}"));
            VerifyingKeys::none()
        }),
        None => VerifyingKeys::none(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    if keys.is_empty() {
        tracing::warn!("no --control-keys: every signed control command will be refused");
    }
    tracing::info!(enclave_id = %enclave_id, control_keys = ?keys.ids(), "control commands");
    Ok(ControlState::new(Verifier::new(
        keys,
        enclave_id,
        clock::now_ms(),
        control::replay::DEFAULT_REPLAY_CAPACITY,
    )))
}

async fn run(
    config: EnclaveConfig,
    vault: vettid_enclave::vault::VaultConfig,
    kms: Option<vettid_enclave::kms::KmsConfig>,
    trusted: Option<vettid_enclave::trusted::TrustedConfig>,
    nsm: Arc<dyn vettid_nsm::Nsm>,
    control: ControlState,
    logs: tokio::sync::mpsc::Receiver<vettid_protocol::LogEvent>,
) -> ExitCode {
    let state = match EnclaveState::new(config.clone(), nsm) {
        Ok(s) => s.with_control(control).with_vault_config(vault),
        Err(e) => {
            tracing::error!(error = %e, "the NSM cannot describe itself");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let state = match kms {
        None => {
            tracing::warn!(
                code = "KMSNotConfigured",
                "no --kms-* flags: vault operations will be refused"
            );
            state
        }
        Some(kms) => {
            let tunnel = kms.tunnel.clone();
            // Credentials come from whichever parent connection is up when the SDK needs them.
            let credentials = Arc::new(vettid_enclave::kms::ParentCredentials::new(
                state.parent().clone(),
            ));
            let kms = match vettid_enclave::kms::Kms::start(kms, state.nsm().clone(), credentials)
                .await
            {
                Ok(kms) => Arc::new(kms),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the KMS client");
                    return ExitCode::from(EX_OSERR);
                }
            };
            let state = state.with_sealer(kms.clone());
            match trusted {
                None => {
                    tracing::warn!(
                        mode = "single-host",
                        "no --trusted-store-* flags: rollback protection is this enclave's memory only"
                    );
                    state
                }
                Some(trusted) => {
                    // The table's credentials: sealed in the vault bucket, opened by this KMS.
                    let source = Arc::new(vettid_enclave::trusted::ParentObject::new(
                        state.parent().clone(),
                    ));
                    match vettid_enclave::trusted::TrustedStore::start(trusted, tunnel, source, kms)
                        .await
                    {
                        Ok(store) => {
                            let store = Arc::new(store);
                            store.spawn_probe();
                            state.with_trusted(store)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the trusted store client");
                            return ExitCode::from(EX_OSERR);
                        }
                    }
                }
            }
        }
    };
    let state = Arc::new(state);
    let listener = match Listener::bind(&config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e, "cannot listen");
            return ExitCode::from(EX_OSERR);
        }
    };
    let mut link = LinkConfig::new(Role::Enclave);
    link.max_concurrent_serve = config.max_concurrent_requests;
    link.max_frame_len = config.max_frame_len;
    link.capabilities = vec!["nats".into(), "vault".into()];
    tracing::info!(
        listen = %config.listen,
        version = vettid_enclave::VERSION,
        module_id = %state.description().module_id,
        mock_nsm = state.description().is_mock,
        "enclave listening"
    );
    let processor = Arc::new(Processor::new(state));
    server::serve(
        listener,
        processor,
        link,
        config.drain_grace,
        logs,
        shutdown_signal(),
    )
    .await;
    tracing::info!("enclave stopped");
    ExitCode::SUCCESS
}

#[cfg(feature = "dev")]
fn open_nsm(args: &Args) -> Result<Arc<dyn vettid_nsm::Nsm>, String> {
    use vettid_nsm::{MockNsm, MockPcrs};
    // PCRs derive from this very binary, so a rebuilt enclave reports new PCRs as it would in an EIF.
    let exe = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(|e| format!("cannot read own binary: {e}"))?;
    let pcrs = MockPcrs::from_measurement(&exe);
    let nsm = match &args.dev_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            MockNsm::load_or_create(dir, pcrs)
        }
        None => MockNsm::ephemeral(pcrs),
    }
    .map_err(|e| e.to_string())?;
    tracing::warn!(
        "DEV BUILD: using the MOCK NSM. Attestation documents are signed by a local CA and prove nothing. Never deploy this binary."
    );
    Ok(Arc::new(nsm))
}

#[cfg(feature = "dev")]
fn dev_build_info(args: &Args) -> Option<serde_json::Value> {
    let nsm = open_nsm(args).ok()?;
    let description = nsm.describe().ok()?;
    let pcr0 = description.pcrs.get(&0).map(hex::encode);
    let root = args
        .dev_dir
        .as_ref()
        .map(|d| d.join("mock-root.pem").display().to_string());
    Some(serde_json::json!({"pcr0": pcr0, "mock_root": root}))
}

#[cfg(not(feature = "dev"))]
fn dev_build_info(_args: &Args) -> Option<serde_json::Value> {
    None
}

#[cfg(not(feature = "dev"))]
fn open_nsm(args: &Args) -> Result<Arc<dyn vettid_nsm::Nsm>, String> {
    if args.dev_dir.is_some() {
        tracing::warn!("--dev-dir is ignored: this is a production build without the mock NSM");
    }
    vettid_nsm::RealNsm::open()
        .map(|n| Arc::new(n) as Arc<dyn vettid_nsm::Nsm>)
        .map_err(|e| e.to_string())
}

/// Logs to stderr (the enclave console in production, the terminal in dev) and queues allow-listed
/// events for the parent; returns the queue the server drains.
fn init_tracing(format: &str) -> tokio::sync::mpsc::Receiver<vettid_protocol::LogEvent> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (forward, logs, _dropped) = vettid_enclave::logfwd::ForwardLayer::new();
    let json = format == "json";
    tracing_subscriber::registry()
        .with(filter)
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
        }))
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
        }))
        .with(forward)
        .init();
    logs
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    // Give log lines a moment to reach the parent before connections close.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
