//! The attestation part of `vettid health`: a fresh document over our own random nonce,
//! verified by us with the apps' verifier, against the signed PCR manifest the operator names
//! (`--manifest`, `--manifest-key`), or in dev against the mock NSM root with PCRs unchecked
//! (`--dev-root`, labelled DEV everywhere; with a manifest too, its PCRs are still checked).
//! This is independent of the parent's own check: the parent is untrusted, so its `/health`
//! saying "verified" is a hint, and this is the proof.

use std::path::{Path, PathBuf};

use vettid_attestation::manifest::VerifiedManifest;
use vettid_attestation::Policy;

use super::report::{Section, Status};
use crate::error::CliError;
use crate::nats_cmd::{self, NatsArgs};
use crate::verify_cmd;

/// What a fresh document is verified against, loaded (and the manifest's signature checked)
/// before anything touches the network.
pub struct Trust {
    /// Where the accepted PCRs come from; `None` checks no PCRs (dev root only).
    manifest: Option<(PathBuf, VerifiedManifest)>,
    /// DEV ONLY: the mock NSM root (file, DER), trusted besides the AWS root.
    dev_root: Option<(PathBuf, Vec<u8>)>,
}

impl Trust {
    /// Loads `--manifest` + `--manifest-key` and `--dev-root`. With the manifest alone the
    /// document must chain to the AWS root and match a PCR set valid now; `--dev-root` alone
    /// trusts the mock root and checks no PCRs; both together check the manifest's PCRs on a
    /// document from the mock root (a dev enclave with a manifest built for it).
    ///
    /// # Errors
    /// [`CliError::Usage`] for unreadable or malformed files; [`CliError::Verify`] when the
    /// manifest's signature does not verify with the key.
    pub fn load(
        manifest: Option<&Path>,
        manifest_key: Option<&Path>,
        dev_root: Option<&Path>,
    ) -> Result<Self, CliError> {
        let manifest = match (manifest, manifest_key) {
            (Some(path), Some(key)) => {
                Some((path.to_owned(), verify_cmd::load_manifest(path, key)?))
            }
            (Some(_), None) => {
                return Err(CliError::Usage("--manifest needs --manifest-key".into()))
            }
            (None, _) => None,
        };
        let dev_root = match dev_root {
            Some(root) => {
                let der = verify_cmd::read_root(root)?;
                // Refuse an unusable certificate now rather than after the round trip.
                verify_cmd::trust_root(Policy::skip_pcr_check_unsafe(), &der, "--dev-root")?;
                Some((root.to_owned(), der))
            }
            None => None,
        };
        Ok(Self { manifest, dev_root })
    }

    /// The policy at `now_ms`, without the nonce; `None` when nothing is to be checked.
    fn policy(&self, now_ms: u64) -> Option<Result<Policy, CliError>> {
        let base = match (&self.manifest, &self.dev_root) {
            (None, None) => return None,
            (Some((_, m)), _) => m.policy_at(now_ms),
            (None, Some(_)) => Policy::skip_pcr_check_unsafe(),
        };
        Some(match &self.dev_root {
            Some((_, der)) => verify_cmd::trust_root(base, der, "--dev-root"),
            None => Ok(base),
        })
    }
}

/// Requests and verifies a fresh document. `client` is the NATS connection (or why there is
/// none). DOWN when the document cannot be had or does not verify: an enclave that fails this
/// is not the code the manifest names, and apps will refuse it too.
pub async fn check(
    trust: &Trust,
    client: Result<&async_nats::Client, &str>,
    nats: &NatsArgs,
) -> Section {
    let mode = if trust.manifest.is_some() {
        "manifest"
    } else {
        "dev"
    };
    let down = |e: String| {
        let mut s = Section::new(Status::Down, e.clone())
            .with("mode", mode)
            .with("error", e);
        s.dev = trust.dev_root.is_some();
        s
    };
    let policy = match trust.policy(verify_cmd::now_ms()) {
        None => return not_checked(),
        Some(Ok(p)) => p,
        Some(Err(e)) => return down(e.to_string()),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => return down(format!("cannot ask the enclave: {e}")),
    };
    let nonce = match nats_cmd::random_nonce() {
        Ok(n) => n,
        Err(e) => return down(e.to_string()),
    };
    let fetched = match nats_cmd::fetch_document(client, nats, &nonce, None).await {
        Ok(f) => f,
        Err(e) => return down(e.to_string()),
    };
    let policy = policy.expect_nonce(nonce.clone());
    let verified =
        match vettid_attestation::verify(&fetched.document, &policy, verify_cmd::now_ms()) {
            Ok(v) => v,
            Err(e) => return down(format!("verification failed: {e}")),
        };
    let pcr0 = verified.pcrs.get(&0).map(hex::encode).unwrap_or_default();
    let short = pcr0.get(..16).unwrap_or(&pcr0);
    let mut parts = Vec::new();
    if let Some((root, _)) = &trust.dev_root {
        parts.push(format!("DEV ONLY: mock root {} trusted", root.display()));
    }
    match &trust.manifest {
        Some((path, m)) => parts.push(format!(
            "verified against manifest {} (version {}), set {}",
            path.display(),
            m.version(),
            verified.matched_pcr_set.as_deref().unwrap_or("?")
        )),
        None => parts.push("PCRs NOT checked".into()),
    }
    parts.push(format!("module {}, pcr0 {short}…", verified.module_id));
    let mut section = Section::new(Status::Ok, parts.join("; "))
        .with("mode", mode)
        .with(
            "manifest",
            trust
                .manifest
                .as_ref()
                .map(|(p, _)| p.display().to_string()),
        )
        .with(
            "manifest_version",
            trust.manifest.as_ref().map(|(_, m)| m.version()),
        )
        .with(
            "dev_root",
            trust
                .dev_root
                .as_ref()
                .map(|(p, _)| p.display().to_string()),
        )
        .with("module_id", verified.module_id.clone())
        .with("pcr0", pcr0)
        .with("matched_pcr_set", verified.matched_pcr_set.clone())
        .with("timestamp_ms", verified.timestamp_ms)
        .with("nonce", hex::encode(&nonce));
    section.dev = trust.dev_root.is_some();
    section
}

fn not_checked() -> Section {
    Section::new(Status::NotChecked, "not checked (no --manifest)").with("mode", "none")
}
