//! `vettid-local-kms`: flags → validated configuration and key file → bind → serve until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vettid_local_kms::{Config, Kms, Settings, StartError};

/// `EX_USAGE`: bad flags or configuration.
const EXIT_USAGE: u8 = 64;

/// A local AWS KMS stand-in (dev and tests only) with the attested Recipient flow.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Listen address; loopback only. Port 0 picks a free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON key file (created on first write, mode 0600).
    #[arg(long)]
    key_file: PathBuf,
    /// PEM root certificate trusted for attestation documents besides the AWS root (the dev mock NSM's
    /// `$VETTID_DEV_DIR/mock-root.pem`).
    #[arg(long)]
    attestation_root: Option<PathBuf>,
    /// PCR0 (hex) accepted from attested requests for keys without their own list; repeat for several.
    #[arg(long = "allow-pcr0")]
    allow_pcr0: Vec<String>,
    /// Ignore `Recipient` and return `Plaintext`, like moto (to test the enclave's downgrade refusal).
    #[arg(long)]
    ignore_recipient: bool,
    /// Refuse Decrypt, GenerateDataKey and GenerateRandom that carry no `Recipient`.
    #[arg(long)]
    require_recipient: bool,
    /// Create a key with this id at start-up unless it exists: `ID` (in --account) or `ID@ACCOUNT`;
    /// repeatable. Its policy is the default one (GetKeyPolicy shows it) until PutKeyPolicy.
    #[arg(long = "ensure-key")]
    ensure_key: Vec<String>,
    /// `ACCESS_KEY_ID=ACCOUNT`: requests signed with that access key id come from ACCOUNT (others from
    /// --account); repeatable. Bare key ids and aliases resolve in the caller's account.
    #[arg(long = "credential-account")]
    credential_account: Vec<String>,
    /// Test misbehaviour: answer Encrypt, Decrypt and GenerateDataKey with this KeyId instead of the key's
    /// ARN (a real KMS never does).
    #[arg(long)]
    misreport_key_id: Option<String>,
    /// Region used in ARNs.
    #[arg(long, default_value = vettid_local_kms::config::DEFAULT_REGION)]
    region: String,
    /// Account id used in ARNs.
    #[arg(long, default_value = vettid_local_kms::config::DEFAULT_ACCOUNT)]
    account: String,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate for --tls-hostname issued by a dev CA kept in this directory
    /// (`ca.pem`, `ca.key`; created on first use). Give the enclave `--kms-ca-file DIR/ca.pem`.
    #[arg(long, value_name = "DIR")]
    tls_self_signed: Option<PathBuf>,
    /// Host name for the --tls-self-signed certificate (e.g. kms.vettid.test).
    #[arg(long, value_name = "NAME")]
    tls_hostname: Option<String>,
}

/// `vettid-local-kms issue-cert`: a server certificate for another dev host name from the dev CA.
#[derive(Debug, Parser)]
#[command(name = "vettid-local-kms issue-cert")]
struct IssueCert {
    /// The dev CA's directory (as given to --tls-self-signed; created on first use).
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The DNS name the certificate is for (e.g. dynamodb.vettid.test).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Where to write cert.pem (chain, leaf first) and key.pem (mode 0600).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    // A subcommand without turning the server's flags into one: the dev DynamoDB stand-in serves
    // TLS with a certificate from the same CA the enclave already trusts for KMS.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "issue-cert")
    {
        let args = IssueCert::parse_from(std::env::args_os().skip(1));
        return match vettid_local_kms::tls::issue_files(&args.ca_dir, &args.name, &args.out) {
            Ok(()) => {
                eprintln!(
                    "issued {} for {} from {}",
                    args.out
                        .join(vettid_local_kms::tls::ISSUED_CERT_FILE)
                        .display(),
                    args.name,
                    args.ca_dir
                        .join(vettid_local_kms::tls::CA_CERT_FILE)
                        .display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vettid-local-kms issue-cert: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "vettid_local_kms=info".into()),
        )
        .init();
    let args = Args::parse();
    let settings = Settings {
        listen: Some(args.listen),
        key_file: args.key_file,
        attestation_root: args.attestation_root,
        allow_pcr0: args.allow_pcr0,
        ignore_recipient: args.ignore_recipient,
        require_recipient: args.require_recipient,
        ensure_keys: args.ensure_key,
        credential_accounts: args.credential_account,
        misreport_key_id: args.misreport_key_id,
        region: Some(args.region),
        account: Some(args.account),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_self_signed: args.tls_self_signed,
        tls_hostname: args.tls_hostname,
    };
    let started = Config::from_settings(settings).and_then(|config| {
        let tls = config
            .tls
            .as_ref()
            .map(vettid_local_kms::tls::server_config)
            .transpose()?;
        Ok((Kms::new(config)?, tls))
    });
    let (kms, tls) = match started {
        Ok(started) => started,
        Err(e @ StartError::Config(_)) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match run(kms, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "local KMS failed");
            ExitCode::FAILURE
        }
    }
}

fn run(kms: Kms, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(kms.listen_addr()).await?;
        // The tests and dev scripts parse this exact line.
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("listening on {scheme}://{}", listener.local_addr()?);
        vettid_local_kms::serve_tls(listener, Arc::new(kms), tls, shutdown_signal()).await;
        Ok(())
    })
}

/// SIGTERM or SIGINT, whichever comes first.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
