//! `vettid`: the operator CLI the runbooks call. Talks to the enclave through NATS exactly as
//! Lambdas do, and verifies attestation documents with the same verifier crate the apps use.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod control;
mod error;
mod health;
mod nats_cmd;
mod output;
mod supervise;
mod verify_cmd;

use error::CliError;

/// VettID operator CLI.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One health view: parent, enclave, attestation, storage, KMS; verdict OK/DEGRADED/DOWN.
    Health(health::HealthArgs),
    /// Request a fresh attestation document through NATS and print (or verify) it.
    Attest(nats_cmd::AttestArgs),
    /// Verify an attestation document from a file.
    Verify(verify_cmd::VerifyArgs),
    /// Signed control commands: keygen, sign, send (docs/CONTROL.md).
    Control(control::ControlArgs),
    /// Run and watch the enclave with nitro-cli (ExecStart of vettid-enclave.service).
    SuperviseEnclave(supervise::Args),
}

fn main() -> ExitCode {
    // Flag errors exit 64 (EX_USAGE) like every other usage error, not clap's 2, which this
    // CLI already uses for "no responders".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(error::EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Verify(args) => verify_cmd::run(&args),
        command => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(async {
                match command {
                    Command::Health(args) => health::run(&args).await,
                    Command::Attest(args) => nats_cmd::attest(&args).await,
                    Command::SuperviseEnclave(args) => supervise::run(&args).await,
                    Command::Control(args) => control::run(&args).await,
                    Command::Verify(_) => unreachable!("handled above"),
                }
            }),
            Err(e) => Err(CliError::Other(format!("cannot start the runtime: {e}"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e.to_string());
            ExitCode::from(e.exit_code())
        }
    }
}
