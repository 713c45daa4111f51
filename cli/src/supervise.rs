//! `vettid supervise-enclave`: the host-side supervisor that `vettid-enclave.service` runs.
//!
//! VettID v1 started the enclave from a `oneshot` + `RemainAfterExit` unit, so systemd never
//! noticed a dead enclave (G12). This supervisor is the unit's main process (`Type=notify`):
//!
//! 1. **Clear the way.** If `describe-enclaves` still lists an enclave of ours (a previous run
//!    that crashed, or one still terminating), terminate it and poll until it is gone (bounded by
//!    `terminate_timeout_ms`), then wait `settle_ms`. Launching straight after a terminate is a
//!    known race: the driver may not have returned the CPUs and huge pages yet and `run-enclave`
//!    fails (`E29` ioctl failure, aws-nitro-enclaves-cli#433).
//! 2. **Launch** with `nitro-cli run-enclave` (debug mode only when both the config and the
//!    `--debug-mode` flag ask for it, and then with a loud warning).
//! 3. **Ready** once the enclave answers a `Ping` on `enclave_address`; then `READY=1`.
//! 4. **Watch** every `probe_interval_ms`: `describe-enclaves` must list our enclave `RUNNING`, and
//!    the ping must answer (`max_missed_probes` misses in a row are tolerated). On loss exit
//!    non-zero, so `Restart=on-failure` brings it back.
//! 5. **Stop** on SIGTERM/SIGINT: `STOPPING=1`, `terminate-enclave --enclave-id ID`, wait until it
//!    is gone, exit 0. The unit uses `KillMode=mixed` so systemd signals only us and the enclave
//!    process is not killed under our feet mid-terminate.
//!
//! Exit codes are distinct per cause (see [`SuperviseError::exit_code`] and docs/OPERATIONS.md).
//! Configuration errors return through the CLI's usual `Usage` error (exit 64). Runtime failures
//! need codes `CliError` does not have, so [`run`] logs them and exits the process itself,
//! after every child and connection has been dropped.

mod config;
mod nitro;
mod probe;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use tokio::signal::unix::{signal, SignalKind};

use crate::error::CliError;
use crate::output;
use config::{EnclaveConfig, MAX_CONFIG_BYTES};
use nitro::{NitroCli, NitroError};
use probe::Prober;

/// How often `describe-enclaves` is polled while waiting for a terminated enclave to go.
const TERMINATE_POLL: Duration = Duration::from_millis(500);
/// How often the enclave is pinged while it boots.
const STARTUP_POLL: Duration = Duration::from_millis(500);

/// `vettid supervise-enclave`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Enclave configuration (TOML).
    #[arg(long, default_value = "/etc/vettid/enclave.toml")]
    config: PathBuf,
    /// The nitro-cli binary.
    #[arg(long, default_value = "/usr/bin/nitro-cli")]
    nitro_cli: PathBuf,
    /// Start the enclave in debug mode (console readable, attestation PCRs zeroed). Takes effect
    /// only if the config also says `debug_mode = true`. Never in production.
    #[arg(long)]
    debug_mode: bool,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the /etc/nitro_enclaves/allocator.yaml matching the configuration, and exit.
    #[arg(long)]
    print_allocator_yaml: bool,
}

/// Why the supervisor stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A nitro-cli command failed.
    #[error(transparent)]
    NitroCli(#[from] NitroError),
    /// A previous enclave of ours did not leave `describe-enclaves` in time.
    #[error("stale enclave(s) {ids:?} still listed {limit:?} after terminate-enclave")]
    StaleEnclave {
        /// Their ids.
        ids: Vec<String>,
        /// The bound.
        limit: Duration,
    },
    /// The enclave started but never answered a ping.
    #[error("enclave {id} did not answer on {address} within {limit:?}: {last_error}")]
    NotReady {
        /// Enclave id.
        id: String,
        /// Probe address.
        address: String,
        /// `start_timeout_ms`.
        limit: Duration,
        /// Last probe failure.
        last_error: String,
    },
    /// `describe-enclaves` no longer lists our enclave as running.
    #[error("enclave {id} is gone (describe-enclaves: {state})")]
    EnclaveLost {
        /// Enclave id.
        id: String,
        /// What describe-enclaves said.
        state: String,
    },
    /// Listed as running but stopped answering pings.
    #[error("enclave {id} missed {missed} pings in a row: {last_error}")]
    Unresponsive {
        /// Enclave id.
        id: String,
        /// Misses.
        missed: u32,
        /// Last probe failure.
        last_error: String,
    },
}

impl SuperviseError {
    /// Process exit code. Non-zero for every variant so `Restart=on-failure` restarts; 64 (bad
    /// configuration) is handled by the CLI and listed in the unit's `RestartPreventExitStatus=`.
    pub fn exit_code(&self) -> u8 {
        match self {
            SuperviseError::EnclaveLost { .. } => 10,
            SuperviseError::Unresponsive { .. } => 11,
            SuperviseError::NotReady { .. } => 12,
            SuperviseError::StaleEnclave { .. } => 13,
            SuperviseError::NitroCli(NitroError::Failed { .. } | NitroError::Timeout { .. }) => 14,
            SuperviseError::NitroCli(NitroError::Output { .. }) => 15,
            SuperviseError::NitroCli(NitroError::Spawn { .. }) => 16,
            SuperviseError::Signals(_) => 71,
        }
    }
}

/// Runs the subcommand.
///
/// # Errors
/// [`CliError::Usage`] for a bad configuration; runtime failures exit the process with
/// [`SuperviseError::exit_code`].
pub async fn run(args: &Args) -> Result<(), CliError> {
    init_tracing(&args.log_format);
    let config = load(&args.config).map_err(CliError::Usage)?;
    if args.print_allocator_yaml {
        output::line(config.allocator_yaml().trim_end());
        return Ok(());
    }
    if args.check_config {
        output::line(&format!("{config:#?}"));
        return Ok(());
    }
    let debug = match (config.debug_mode, args.debug_mode) {
        (true, true) => {
            tracing::warn!(
                "DEBUG MODE: the enclave starts with --debug-mode. Its console is readable from the host and its \
                 attestation documents carry all-zero PCRs, so KMS and clients will refuse it. NEVER IN PRODUCTION."
            );
            true
        }
        (true, false) => {
            tracing::warn!(
                "debug_mode = true in the config is ignored without the --debug-mode flag"
            );
            false
        }
        (false, true) => {
            tracing::warn!("--debug-mode is ignored: the config does not set debug_mode = true");
            false
        }
        (false, false) => false,
    };
    let nitro = NitroCli {
        path: args.nitro_cli.clone(),
        timeout: config.nitro_cli_timeout,
    };
    let result = supervise(&config, &nitro, debug).await;
    match result {
        Ok(()) => {
            tracing::info!("supervisor stopped");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, exit_code = e.exit_code(), "supervisor failed");
            output::error(&e.to_string());
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&e.to_string())]);
            std::process::exit(i32::from(e.exit_code()));
        }
    }
}

fn load(path: &std::path::Path) -> Result<EnclaveConfig, String> {
    let display = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {display}: {e}"))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{display}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {display}: {e}"))?;
    EnclaveConfig::parse(&display, &text).map_err(|e| e.to_string())
}

/// The whole lifecycle; returns Ok only after a signal-initiated clean stop.
async fn supervise(
    c: &EnclaveConfig,
    nitro: &NitroCli,
    debug_mode: bool,
) -> Result<(), SuperviseError> {
    let mut term = signal(SignalKind::terminate()).map_err(SuperviseError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SuperviseError::Signals)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    tokio::pin!(shutdown);

    status("clearing stale enclaves");
    tokio::select! {
        r = clear_ours(c, nitro) => r?,
        _ = &mut shutdown => return Ok(()),
    }
    if !c.settle.is_zero() {
        tracing::info!(settle = ?c.settle, "letting the driver settle before run-enclave");
        tokio::select! {
            _ = tokio::time::sleep(c.settle) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }

    status("starting the enclave");
    tracing::info!(eif = %c.eif_path.display(), cid = c.cid, cpus = c.cpu_count, memory_mib = c.memory_mib, debug_mode, "nitro-cli run-enclave");
    let run = tokio::select! {
        r = nitro.run_enclave(c, debug_mode) => r?,
        _ = &mut shutdown => {
            // nitro-cli was killed mid-launch; the enclave may exist anyway.
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            return clear_ours(c, nitro).await;
        }
    };
    let id = run.enclave_id.clone();
    tracing::info!(enclave_id = %id, process_id = ?run.process_id, cid = ?run.enclave_cid, "enclave launched");

    let mut prober = Prober::new(c.enclave_address.clone(), c.probe_timeout);
    let outcome = tokio::select! {
        r = ready_then_watch(c, nitro, &id, &mut prober) => r,
        _ = &mut shutdown => Ok(()),
    };
    prober.close().await;
    match outcome {
        Ok(()) => {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            status("terminating the enclave");
            stop(c, nitro, &id).await
        }
        Err(e) => {
            // Best effort, so the restart starts clean; a lost enclave is usually gone already.
            if !matches!(e, SuperviseError::EnclaveLost { .. }) {
                if let Err(t) = stop(c, nitro, &id).await {
                    tracing::warn!(error = %t, "could not terminate the failed enclave");
                }
            }
            Err(e)
        }
    }
}

/// Waits for the first answered ping, reports READY, then watches until the enclave is lost.
async fn ready_then_watch(
    c: &EnclaveConfig,
    nitro: &NitroCli,
    id: &str,
    prober: &mut Prober,
) -> Result<(), SuperviseError> {
    let started = Instant::now();
    loop {
        let last_error = match prober.ping().await {
            Ok(()) => break,
            Err(e) => e,
        };
        check_running(nitro, id).await?;
        if started.elapsed() >= c.start_timeout {
            return Err(SuperviseError::NotReady {
                id: id.into(),
                address: c.enclave_address.to_string(),
                limit: c.start_timeout,
                last_error,
            });
        }
        tokio::time::sleep(STARTUP_POLL).await;
    }
    tracing::info!(enclave_id = %id, boot = ?started.elapsed(), address = %c.enclave_address, "enclave answers; ready");
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("enclave {id} running")),
    ]);

    let mut missed = 0u32;
    loop {
        tokio::time::sleep(c.probe_interval).await;
        check_running(nitro, id).await?;
        match prober.ping().await {
            Ok(()) => missed = 0,
            Err(last_error) => {
                missed += 1;
                tracing::warn!(enclave_id = %id, missed, error = %last_error, "enclave did not answer a ping");
                if missed >= c.max_missed_probes {
                    return Err(SuperviseError::Unresponsive {
                        id: id.into(),
                        missed,
                        last_error,
                    });
                }
            }
        }
    }
}

/// Fails unless `describe-enclaves` lists `id` as running.
async fn check_running(nitro: &NitroCli, id: &str) -> Result<(), SuperviseError> {
    let list = nitro.describe().await?;
    match list.iter().find(|e| e.enclave_id == id) {
        Some(e) if e.is_running() => Ok(()),
        Some(e) => Err(SuperviseError::EnclaveLost {
            id: id.into(),
            state: e.state.clone(),
        }),
        None => Err(SuperviseError::EnclaveLost {
            id: id.into(),
            state: "not listed".into(),
        }),
    }
}

/// Terminates our enclave and waits until it has left `describe-enclaves`.
async fn stop(c: &EnclaveConfig, nitro: &NitroCli, id: &str) -> Result<(), SuperviseError> {
    tracing::info!(enclave_id = %id, "nitro-cli terminate-enclave");
    if let Err(e) = nitro.terminate(id).await {
        // It may have died on its own meanwhile; what counts is that it is gone below.
        tracing::warn!(enclave_id = %id, error = %e, "terminate-enclave failed");
    }
    wait_gone(c, nitro, |e| e.enclave_id == id).await?;
    tracing::info!(enclave_id = %id, "enclave terminated");
    Ok(())
}

/// Terminates every enclave of ours that `describe-enclaves` lists and waits until none is left.
async fn clear_ours(c: &EnclaveConfig, nitro: &NitroCli) -> Result<(), SuperviseError> {
    let stale: Vec<_> = nitro
        .describe()
        .await?
        .into_iter()
        .filter(|e| e.is_ours(c))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    for e in &stale {
        tracing::warn!(enclave_id = %e.enclave_id, state = %e.state, flags = ?e.flags, "stale enclave from an earlier run; terminating it");
        if let Err(err) = nitro.terminate(&e.enclave_id).await {
            tracing::warn!(enclave_id = %e.enclave_id, error = %err, "terminate-enclave failed");
        }
    }
    wait_gone(c, nitro, |e| e.is_ours(c)).await
}

/// Polls `describe-enclaves` until no enclave matches `matches`, for at most `terminate_timeout`.
async fn wait_gone(
    c: &EnclaveConfig,
    nitro: &NitroCli,
    matches: impl Fn(&nitro::EnclaveInfo) -> bool,
) -> Result<(), SuperviseError> {
    let deadline = Instant::now() + c.terminate_timeout;
    loop {
        let left: Vec<String> = nitro
            .describe()
            .await?
            .into_iter()
            .filter(|e| matches(e))
            .map(|e| e.enclave_id)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SuperviseError::StaleEnclave {
                ids: left,
                limit: c.terminate_timeout,
            });
        }
        tokio::time::sleep(TERMINATE_POLL).await;
    }
}

fn status(s: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(s)]);
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
