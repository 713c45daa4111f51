//! `eif-build` command line: parses flags ([`cli`]), calls the library, prints JSON. See `README.md`.

mod cli;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use cli::{Cli, Command, ManifestCommand};
use eif_build::eif;
use eif_build::manifest_cmd as mf;
use eif_build::pcr::BuildOutput;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eif-build: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build { image, out } => {
            let m = eif::build(&image.into_spec(), &out)?;
            emit(&BuildOutput { measurements: &m })
        }
        Command::Pcrs { image } => {
            let m = eif::measure(&image.into_spec())?;
            emit(&BuildOutput { measurements: &m })
        }
        Command::Describe { eif } => describe(&eif),
        Command::DevPcrs { binary } => emit(&eif_build::pcr::dev_pcrs(&binary)?),
        Command::Manifest(cmd) => manifest(cmd),
    }
}

fn manifest(cmd: ManifestCommand) -> Result<()> {
    let now = chrono::Utc::now();
    match cmd {
        ManifestCommand::Add {
            manifest,
            id,
            pcr0,
            pcr1,
            pcr2,
            valid_from,
            valid_until,
            description,
            current,
        } => {
            let existing = match std::fs::read(&manifest) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", manifest.display()))
                }
            };
            let set = mf::NewSet {
                id,
                pcrs: [pcr0, pcr1, pcr2],
                valid_from,
                valid_until,
                description,
                current,
            };
            let edited = mf::add(existing.as_deref(), &set, now)?;
            mf::write_atomic(&manifest, &edited.json)?;
            notes(&edited.notes);
            Ok(())
        }
        ManifestCommand::Sign {
            manifest,
            key,
            kms_key_id,
            kms_region,
            out,
        } => {
            let bytes = read("manifest", &manifest)?;
            let edited = match (key, kms_key_id) {
                (Some(key), _) => {
                    let pem = String::from_utf8(read("key", &key)?)
                        .with_context(|| format!("key {} is not PEM text", key.display()))?;
                    mf::sign_local(&bytes, &pem)
                        .with_context(|| format!("signing with {}", key.display()))?
                }
                (None, Some(id)) => eif_build::kms::sign_kms(&bytes, &id, kms_region)?,
                (None, None) => anyhow::bail!("give --key or --kms-key-id"),
            };
            mf::write_atomic(out.as_deref().unwrap_or(&manifest), &edited.json)?;
            notes(&edited.notes);
            Ok(())
        }
        ManifestCommand::Verify {
            manifest,
            pubkey,
            at,
            min_version,
        } => {
            let at = at
                .map(|s| mf::parse_time("--at", &s))
                .transpose()?
                .unwrap_or(now);
            let verified = mf::verify(
                &read("manifest", &manifest)?,
                &read("public key", &pubkey)?,
                at,
                min_version,
            )
            .with_context(|| format!("verifying {}", manifest.display()))?;
            emit(&verified)
        }
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} file {}", path.display()))
}

fn notes(notes: &[String]) {
    for n in notes {
        eprintln!("eif-build: {n}");
    }
}

fn describe(path: &Path) -> Result<()> {
    let d = eif_build::describe::describe(path)?;
    if !d.crc_check {
        eprintln!("eif-build: warning: {}: CRC check failed", path.display());
    }
    emit(&d)
}

/// The JSON result goes to stdout; everything else goes to stderr.
fn emit<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("writing JSON to stdout")?;
    writeln!(out).context("writing to stdout")?;
    Ok(())
}
