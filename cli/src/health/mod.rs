//! `vettid health`: the runbook's single health check. One command asks every part of the
//! system at once and prints one line per check and a verdict:
//!
//! - **parent**: its `/health` and `/ready` (NATS, enclave link, the parent's own attestation
//!   check and what it is against, subscriptions, drain, last link error);
//! - **enclave**: `enclave.health` over NATS, as a Lambda asks it;
//! - **attestation**: a fresh document over our nonce, verified here against `--manifest` (or,
//!   in dev, the `--dev-root` mock NSM root, with PCRs unchecked unless a manifest is given too);
//! - **storage**: the object store's reachability, as the parent probes it;
//! - **kms**: the enclave's KMS client and the parent's tunnel.
//!
//! Verdict: the worst section (`OK`, `DEGRADED`, `DOWN`); checks not run do not count. Exit 0 on
//! OK, 1 on DEGRADED or DOWN. One exception keeps the CLI's older codes: when `enclave.health`
//! itself cannot be asked (no responders 2, timeout 3, bad reply 4, error reply 5, NATS
//! unreachable 6), that code is the exit code, after the report. Bad flags or files are 64,
//! checked before anything touches the network.

mod attest;
mod parent;
mod report;
mod sections;

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::error::CliError;
use crate::nats_cmd::{self, NatsArgs};
use crate::output;
use parent::ParentUrl;
use report::{Report, Section, Status};

/// `vettid health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// The parent's HTTP endpoint (`[http] listen` in parent.toml), for /health and /ready.
    #[arg(
        long,
        env = "VETTID_PARENT_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    parent_url: String,
    /// Do not ask the parent (then storage and the KMS tunnel are not checked either).
    #[arg(long)]
    no_parent: bool,
    /// Signed PCR manifest (JSON): verify a fresh attestation against it.
    #[arg(long, value_name = "FILE", requires = "manifest_key")]
    manifest: Option<PathBuf>,
    /// Public key (PEM SPKI or hex SEC1) the manifest is signed with.
    #[arg(long, value_name = "PEM", requires = "manifest")]
    manifest_key: Option<PathBuf>,
    /// DEV ONLY: also trust this mock NSM root (`mock-root.pem`); without --manifest the PCRs
    /// are not checked. Reported as DEV.
    #[arg(long, value_name = "PEM")]
    dev_root: Option<PathBuf>,
    /// Print one JSON object (`parent`, `enclave`, `attestation`, `storage`, `kms`, `verdict`,
    /// `reasons`).
    #[arg(long)]
    json: bool,
}

/// Runs `vettid health`.
///
/// # Errors
/// [`CliError::Usage`] for bad flags or files; [`CliError::Unhealthy`] when the verdict is not
/// OK; the enclave request's own error when `enclave.health` could not be asked.
pub async fn run(args: &HealthArgs) -> Result<(), CliError> {
    // Every flag and file first: a typo must not cost a network round trip, or half a report.
    let parent_url = match args.no_parent {
        true => None,
        false => Some(ParentUrl::parse(&args.parent_url)?),
    };
    let trust = attest::Trust::load(
        args.manifest.as_deref(),
        args.manifest_key.as_deref(),
        args.dev_root.as_deref(),
    )?;

    // Then everything at once, each part bounded by --timeout-ms.
    let limit = args.nats.timeout();
    let ask_parent = async {
        match &parent_url {
            Some(url) => Some(parent::fetch(url, limit).await),
            None => None,
        }
    };
    let ask_enclave = async {
        match nats_cmd::connect(&args.nats).await {
            Ok(client) => {
                tokio::join!(
                    nats_cmd::call(&client, &args.nats, "enclave.health", json!({})),
                    attest::check(&trust, Ok(&client), &args.nats),
                )
            }
            Err(e) => {
                let why = e.to_string();
                let attestation = attest::check(&trust, Err(&why), &args.nats).await;
                (Err(e), attestation)
            }
        }
    };
    let (parent_reply, (enclave_reply, attestation)) = tokio::join!(ask_parent, ask_enclave);

    let parent_health = match &parent_reply {
        Some(Ok(r)) => Some(&r.health),
        _ => None,
    };
    let report = Report {
        parent: match (&parent_url, &parent_reply) {
            (Some(url), Some(reply)) => parent::section(url, reply),
            _ => Section::new(Status::NotChecked, "not checked (--no-parent)"),
        },
        enclave: sections::enclave(&enclave_reply),
        attestation,
        storage: parent::storage(parent_reply.as_ref()),
        kms: sections::kms(
            enclave_reply.as_ref().ok(),
            parent_health.map(|h| &h["kms"]).filter(|k| !k.is_null()),
        ),
    };
    if args.json {
        output::line(&report.json().to_string());
    } else {
        for line in report.table() {
            output::line(&line);
        }
    }
    match (report.verdict(), enclave_reply) {
        (Status::NotChecked | Status::Ok, _) => Ok(()),
        (_, Err(e)) => Err(e),
        (verdict, Ok(_)) => Err(CliError::Unhealthy(format!(
            "health {}: {}",
            report::verdict_label(verdict),
            report.reasons().join("; ")
        ))),
    }
}
