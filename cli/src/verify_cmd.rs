//! `vettid verify`: check an attestation document file with the apps' verifier, and the policy
//! flags shared with `vettid attest --verify`.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;
use vettid_attestation::manifest::{Manifest, VerifiedManifest};
use vettid_attestation::{Document, PcrSet, Policy};

use crate::error::CliError;
use crate::output;

/// What to accept.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Extra trusted root certificate (PEM), e.g. the dev mock NSM's `$VETTID_DEV_DIR/mock-root.pem`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Signed PCR manifest (JSON); the document's PCRs must match a set valid at the validation time.
    #[arg(long, requires = "manifest_key")]
    pcrs_manifest: Option<PathBuf>,
    /// Public key (PEM SPKI or hex SEC1) that signs the PCR manifest.
    #[arg(long)]
    manifest_key: Option<PathBuf>,
    /// Accepted PCR0 (hex); with --expect-pcr1/--expect-pcr2 forms one accepted set.
    #[arg(long, conflicts_with = "pcrs_manifest")]
    expect_pcr0: Option<String>,
    /// Accepted PCR1 (hex).
    #[arg(long, requires = "expect_pcr0")]
    expect_pcr1: Option<String>,
    /// Accepted PCR2 (hex).
    #[arg(long, requires = "expect_pcr0")]
    expect_pcr2: Option<String>,
    /// Check chain, signature and freshness only; print the PCRs without judging them.
    #[arg(long, conflicts_with_all = ["pcrs_manifest", "expect_pcr0"])]
    any_pcrs: bool,
    /// Maximum document age in milliseconds.
    #[arg(long)]
    max_age_ms: Option<u64>,
}

/// `vettid verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The document (raw COSE_Sign1 bytes, or base64 of them).
    #[arg(long)]
    doc: PathBuf,
    /// Validation time, ms since the Unix epoch (default: now).
    #[arg(long)]
    at_ms: Option<u64>,
    /// Expected nonce (hex).
    #[arg(long)]
    nonce: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// DER bytes from a PEM file (first block), or the file itself if it is not PEM.
fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    if !text.contains("-----BEGIN") {
        return hex::decode(text.trim())
            .map_err(|_| CliError::Usage("key/certificate is neither PEM nor hex".into()));
    }
    match rustls_pki_types::pem::from_buf(&mut text.as_bytes()) {
        Ok(Some((_, der))) => Ok(der),
        _ => Err(CliError::Usage("bad PEM body".into())),
    }
}

/// Reads a signed PCR manifest and checks its signature with the key in `key_path`.
///
/// # Errors
/// [`CliError::Usage`] for unreadable or malformed files; [`CliError::Verify`] when the
/// signature does not verify.
pub fn load_manifest(path: &Path, key_path: &Path) -> Result<VerifiedManifest, CliError> {
    let key = pem_or_der(&read(key_path)?)?;
    let manifest = Manifest::parse(&read(path)?)
        .map_err(|e| CliError::Usage(format!("manifest {}: {e}", path.display())))?;
    manifest
        .verify(&key)
        .map_err(|e| CliError::Verify(format!("manifest {}: {e}", path.display())))
}

/// Reads an extra trusted root certificate (PEM or DER), such as the dev mock NSM's.
///
/// # Errors
/// [`CliError::Usage`] when the file cannot be read or decoded.
pub fn read_root(path: &Path) -> Result<Vec<u8>, CliError> {
    pem_or_der(&read(path)?)
}

/// Adds `root_der` to `policy`'s trust anchors; `flag` names the option in the error.
///
/// # Errors
/// [`CliError::Usage`] when the certificate is not a usable root.
pub fn trust_root(policy: Policy, root_der: &[u8], flag: &str) -> Result<Policy, CliError> {
    policy
        .with_extra_root(root_der.to_vec())
        .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
}

impl PolicyArgs {
    /// Builds the verifier policy.
    ///
    /// # Errors
    /// [`CliError::Usage`] for unreadable files or bad values; [`CliError::Verify`] when the
    /// manifest's own signature fails.
    pub fn build(&self, nonce: Option<Vec<u8>>, at_ms: u64) -> Result<Policy, CliError> {
        let mut policy = if let Some(path) = &self.pcrs_manifest {
            let key_path = self
                .manifest_key
                .as_ref()
                .ok_or_else(|| CliError::Usage("--pcrs-manifest needs --manifest-key".into()))?;
            load_manifest(path, key_path)?.policy_at(at_ms)
        } else if let Some(pcr0) = &self.expect_pcr0 {
            let (Some(pcr1), Some(pcr2)) = (&self.expect_pcr1, &self.expect_pcr2) else {
                return Err(CliError::Usage(
                    "--expect-pcr0 needs --expect-pcr1 and --expect-pcr2".into(),
                ));
            };
            let set = PcrSet::from_hex("cli", pcr0, pcr1, pcr2)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            Policy::new([set])
        } else if self.any_pcrs {
            Policy::skip_pcr_check_unsafe()
        } else {
            return Err(CliError::Usage(
                "say which PCRs to accept: --pcrs-manifest, --expect-pcr0/1/2, or --any-pcrs"
                    .into(),
            ));
        };
        if let Some(root) = &self.root {
            policy = trust_root(policy, &read_root(root)?, "--root")?;
        }
        if let Some(ms) = self.max_age_ms {
            policy = policy.with_max_age_ms(ms);
        }
        if let Some(n) = nonce {
            policy = policy.expect_nonce(n);
        }
        Ok(policy)
    }
}

/// Runs `vettid verify`.
pub fn run(args: &VerifyArgs) -> Result<(), CliError> {
    let raw = read(&args.doc)?;
    // Accept base64 text as written by tools that store documents in JSON.
    let document = match std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| B64.decode(t.trim()).ok())
    {
        Some(decoded) => decoded,
        None => raw,
    };
    let nonce = args
        .nonce
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|_| CliError::Usage("--nonce must be hex".into()))?;
    let at_ms = args.at_ms.unwrap_or_else(now_ms);
    let policy = args.policy.build(nonce, at_ms)?;
    let verified = vettid_attestation::verify(&document, &policy, at_ms)
        .map_err(|e| CliError::Verify(e.to_string()))?;
    let doc = vettid_attestation::parse(&document).map_err(|e| CliError::Verify(e.to_string()))?;
    if args.json {
        let mut v = document_json(&doc);
        v["verified"] = true.into();
        v["matched_pcr_set"] = verified.matched_pcr_set.into();
        output::line(&v.to_string());
    } else {
        print_document(&doc, false, true);
        if let Some(set) = verified.matched_pcr_set {
            output::line(&format!("matched set:  {set}"));
        }
    }
    Ok(())
}

fn document_json(doc: &Document) -> serde_json::Value {
    let pcrs: serde_json::Map<String, serde_json::Value> = doc
        .pcrs
        .iter()
        .map(|(i, v)| (i.to_string(), hex::encode(v).into()))
        .collect();
    json!({
        "module_id": doc.module_id,
        "timestamp_ms": doc.timestamp_ms,
        "digest": doc.digest,
        "pcrs": pcrs,
        "public_key": doc.public_key.as_ref().map(hex::encode),
        "user_data": doc.user_data.as_ref().map(hex::encode),
        "nonce": doc.nonce.as_ref().map(hex::encode),
        "cabundle_len": doc.cabundle.len(),
    })
}

/// Prints a document's fields.
pub fn print_document(doc: &Document, as_json: bool, verified: bool) {
    if as_json {
        let mut v = document_json(doc);
        v["verified"] = verified.into();
        output::line(&v.to_string());
        return;
    }
    output::line(&format!(
        "verified:     {}",
        if verified { "yes" } else { "no (fields only)" }
    ));
    output::line(&format!("module_id:    {}", doc.module_id));
    output::line(&format!("timestamp_ms: {}", doc.timestamp_ms));
    for (i, v) in &doc.pcrs {
        if *i <= 2 || *i == 8 || v.iter().any(|b| *b != 0) {
            output::line(&format!("pcr{i:<2}        {}", hex::encode(v)));
        }
    }
    let opt = |v: &Option<Vec<u8>>| v.as_ref().map(hex::encode).unwrap_or_else(|| "null".into());
    output::line(&format!("public_key:   {}", opt(&doc.public_key)));
    output::line(&format!("user_data:    {}", opt(&doc.user_data)));
    output::line(&format!("nonce:        {}", opt(&doc.nonce)));
}
