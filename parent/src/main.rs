//! `vettid-parent`: load and validate all configuration, bind, run until SIGTERM, drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vettid_parent::{Config, Overrides};

/// The VettID host daemon: bridges NATS to the enclave and reports health.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Default: /etc/vettid/parent.toml if it exists, else built-in defaults.
    #[arg(long, env = "VETTID_PARENT_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server URL (overrides nats.url).
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
    /// NATS .creds file (overrides nats.credentials_file).
    #[arg(long)]
    nats_creds: Option<PathBuf>,
    /// Enclave address, e.g. vsock://16:5000 or unix:///path (overrides enclave.address).
    #[arg(long, env = "VETTID_ENCLAVE_ADDR")]
    enclave: Option<String>,
    /// Health/metrics listen address, e.g. 127.0.0.1:8080 (overrides http.listen).
    #[arg(long, env = "VETTID_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// This instance's enclave id (overrides enclave_id).
    #[arg(long)]
    enclave_id: Option<String>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Runtime worker threads; 0 runs all I/O on one thread (CPU-heavy work always goes to the
    /// blocking pool). One thread avoids cross-thread wake-ups, which dominate a relay's cost.
    #[arg(long, env = "VETTID_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    check_config: bool,
}

const DEFAULT_CONFIG: &str = "/etc/vettid/parent.toml";
/// EX_USAGE: bad flags or configuration.
const EX_USAGE: u8 = 64;
/// EX_OSERR: cannot bind or start.
const EX_OSERR: u8 = 71;
/// EX_UNAVAILABLE: NATS cannot be set up.
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(&args.log_format);
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{e}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    if args.check_config {
        #[allow(clippy::print_stdout)]
        {
            println!("{config:#?}");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match vettid_link::runtime(args.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EX_OSERR);
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.http_listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %config.http_listen, error = %e, "cannot bind the health endpoint");
                return ExitCode::from(EX_OSERR);
            }
        };
        match vettid_parent::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "parent failed");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    })
}

fn load(args: &Args) -> Result<Config, String> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
    };
    let text = match &path {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let overrides = Overrides {
        nats_url: args.nats_url.clone(),
        nats_creds: args.nats_creds.clone(),
        enclave_address: args.enclave.clone(),
        http_listen: args.http_listen.clone(),
        enclave_id: args.enclave_id.clone(),
    };
    Config::load(text.as_deref(), &overrides).map_err(|e| e.to_string())
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
