//! `eif-build manifest add|sign|verify`: maintain the signed PCR manifest.
//!
//! The format, the exact signed bytes (RFC 8785 canonical JSON without `signature`), the signature encoding
//! and every validity rule belong to `vettid_attestation::manifest`; this module only edits the JSON and calls
//! that crate, so the tool can never sign something the apps would parse differently. Publishing rules kept
//! here:
//! - `version` goes up by one on every `add` and never decreases;
//! - adding a `--current` set ends the window of the set(s) it supersedes: their `valid_until` becomes the
//!   new set's `valid_from` (earlier `valid_until`s are kept) and their `is_current` becomes false;
//! - editing a signed manifest drops its signature (it would no longer verify); `sign` again.

use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde::Serialize;
use serde_json::{json, Value};
use vettid_attestation::jcs;
use vettid_attestation::manifest::{sign_manifest, Manifest, ManifestPcrSet, MAX_MANIFEST_BYTES};
use vettid_attestation::PcrSet;

/// Scalar of a throwaway key used only to dry-run [`sign_manifest`], which applies every format rule; the
/// signature is discarded. (`vettid-attestation` has no public "validate unsigned manifest" call.)
const VALIDATION_KEY: [u8; 32] = [0x11; 32];

/// A set to add.
#[derive(Debug, Clone)]
pub struct NewSet {
    /// Unique id (for example `2026-01-18-v1`).
    pub id: String,
    /// PCR0/1/2 as hex.
    pub pcrs: [String; 3],
    /// Start of validity; `now` when absent.
    pub valid_from: Option<String>,
    /// Optional end of validity.
    pub valid_until: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether this set becomes the current build (supersedes the current one).
    pub current: bool,
}

/// Result of an edit: the new unsigned manifest and what happened, for the operator.
#[derive(Debug)]
pub struct Edited {
    /// Pretty-printed unsigned manifest.
    pub json: Vec<u8>,
    /// Human-readable notes (dropped signature, superseded sets).
    pub notes: Vec<String>,
}

/// Add a set to `existing` (or start a manifest), at time `now`.
///
/// # Errors
/// On malformed input JSON, invalid PCRs or times, a duplicate id, a new current set that starts before the
/// set it supersedes, or a result `vettid-attestation` would not accept.
pub fn add(existing: Option<&[u8]>, set: &NewSet, now: DateTime<Utc>) -> Result<Edited> {
    let mut notes = Vec::new();
    let mut root = match existing {
        Some(bytes) => parse(bytes)?,
        None => json!({ "version": 0, "pcr_sets": [] }),
    };
    let obj = root
        .as_object_mut()
        .context("manifest is not a JSON object")?;
    if obj.remove("signature").is_some() {
        notes.push("removed the old signature: run `eif-build manifest sign` again".into());
    }
    let version = obj
        .get("version")
        .and_then(Value::as_u64)
        .context("manifest `version` is missing or not a non-negative integer")?;
    let version = version
        .checked_add(1)
        .context("manifest version overflow")?;

    let [p0, p1, p2] = &set.pcrs;
    PcrSet::from_hex(set.id.clone(), p0, p1, p2).map_err(|e| anyhow!("invalid PCR set: {e}"))?;
    let valid_from = match &set.valid_from {
        Some(s) => parse_time("--valid-from", s)?,
        None => now,
    };
    let valid_until = set
        .valid_until
        .as_deref()
        .map(|s| parse_time("--valid-until", s))
        .transpose()?;
    if let Some(until) = valid_until {
        ensure!(
            until > valid_from,
            "--valid-until must be after --valid-from"
        );
    }

    let sets = obj
        .get_mut("pcr_sets")
        .and_then(Value::as_array_mut)
        .context("manifest `pcr_sets` is missing or not an array")?;
    ensure!(
        !sets
            .iter()
            .any(|s| s.get("id").and_then(Value::as_str) == Some(&set.id)),
        "a PCR set with id {:?} already exists",
        set.id
    );
    if set.current {
        for old in sets
            .iter_mut()
            .filter(|s| s["is_current"] == Value::Bool(true))
        {
            supersede(old, valid_from, &mut notes)?;
        }
    }
    sets.push(json!({
        "id": set.id,
        "pcr0": p0.to_ascii_lowercase(),
        "pcr1": p1.to_ascii_lowercase(),
        "pcr2": p2.to_ascii_lowercase(),
        "valid_from": format_time(valid_from),
        "valid_until": valid_until.map(format_time),
        "is_current": set.current,
        "description": set.description,
    }));
    obj.insert("version".into(), version.into());
    obj.insert("timestamp".into(), format_time(now).into());

    validate(&serde_json::to_vec(&root)?).context("the edited manifest is invalid")?;
    Ok(Edited {
        json: pretty(&root)?,
        notes,
    })
}

/// Check an unsigned manifest against every rule of the format, by signing it with a throwaway key.
///
/// # Errors
/// The format error, as `vettid-attestation` words it.
pub fn validate(unsigned: &[u8]) -> Result<()> {
    let key = SigningKey::from_bytes(&VALIDATION_KEY.into())
        .map_err(|e| anyhow!("validation key: {e}"))?;
    sign_manifest(unsigned, &key)
        .map(drop)
        .map_err(|e| anyhow!("{e}"))
}

/// End `old`'s window at `from` and clear its `is_current`.
fn supersede(old: &mut Value, from: DateTime<Utc>, notes: &mut Vec<String>) -> Result<()> {
    let id = old["id"].as_str().unwrap_or("?").to_owned();
    let old_from = old["valid_from"]
        .as_str()
        .map(|s| parse_time("valid_from", s))
        .transpose()?
        .with_context(|| format!("set {id:?} has no valid_from"))?;
    ensure!(
        from > old_from,
        "the new current set must start after the set it supersedes ({id:?} starts {})",
        format_time(old_from)
    );
    let old_until = match &old["valid_until"] {
        Value::String(s) => Some(parse_time("valid_until", s)?),
        _ => None,
    };
    if old_until.is_none_or(|u| u > from) {
        old["valid_until"] = format_time(from).into();
    }
    old["is_current"] = false.into();
    notes.push(format!(
        "set {id:?} superseded: valid_until = {}",
        old["valid_until"].as_str().unwrap_or("?")
    ));
    Ok(())
}

/// Sign with a local P-256 key (`vettid_attestation::manifest::sign_manifest`, RFC 6979: deterministic).
///
/// # Errors
/// On an invalid manifest or key.
pub fn sign_local(manifest: &[u8], key_pem: &str) -> Result<Edited> {
    let key = SigningKey::from_pkcs8_pem(key_pem).map_err(|e| {
        anyhow!(
            "the key is not a P-256 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): {e}"
        )
    })?;
    let (unsigned, notes) = unsigned(manifest)?;
    let signed = sign_manifest(&unsigned, &key).map_err(|e| anyhow!("cannot sign: {e}"))?;
    check_signed(
        &signed,
        &VerifyingKey::from(&key).to_encoded_point(false).to_bytes(),
    )?;
    Ok(Edited {
        json: signed,
        notes,
    })
}

/// The manifest without `signature`, re-serialised, plus a note when one was dropped.
pub(crate) fn unsigned(manifest: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
    let mut value = parse(manifest)?;
    let mut notes = Vec::new();
    if let Some(obj) = value.as_object_mut() {
        if obj.remove("signature").is_some() {
            notes.push("replaced the existing signature".into());
        }
    }
    Ok((serde_json::to_vec(&value)?, notes))
}

/// Parse our own output back and verify it with `public_key` (SPKI DER or SEC1), so a signature the apps
/// would reject is never written.
pub(crate) fn check_signed(signed: &[u8], public_key: &[u8]) -> Result<()> {
    Manifest::parse(signed)
        .and_then(|m| m.verify(public_key))
        .map(drop)
        .map_err(|e| anyhow!("the signed manifest does not verify with the signing key: {e}"))
}

/// One set as `verify` prints it.
#[derive(Debug, Serialize)]
pub struct SetOut {
    id: String,
    pcrs: std::collections::BTreeMap<String, String>,
    valid_from: String,
    valid_until: Option<String>,
    is_current: bool,
    description: Option<String>,
}

/// What `verify` prints.
#[derive(Debug, Serialize)]
pub struct Verified {
    /// The manifest version.
    pub version: u64,
    /// The manifest timestamp.
    pub timestamp: String,
    /// The time the sets were checked at.
    pub at: String,
    /// The sets valid at `at`.
    pub valid_sets: Vec<SetOut>,
}

/// Verify `manifest` with the public key (PEM SPKI, or DER), and list the sets valid at `at`.
///
/// # Errors
/// On a bad key, a bad or missing signature, a version below `min_version`, or no set valid at `at`.
pub fn verify(
    manifest: &[u8],
    pubkey: &[u8],
    at: DateTime<Utc>,
    min_version: Option<u64>,
) -> Result<Verified> {
    let key = load_public_key(pubkey)?;
    let verified = Manifest::parse(manifest)
        .map_err(|e| anyhow!("invalid manifest: {e}"))?
        .verify(&key)
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(min) = min_version {
        verified
            .ensure_version_at_least(min)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let at_ms = u64::try_from(at.timestamp_millis()).context("--at is before 1970")?;
    let valid_sets: Vec<SetOut> = verified
        .sets_valid_at(at_ms)
        .into_iter()
        .map(set_out)
        .collect::<Result<_>>()?;
    ensure!(
        !valid_sets.is_empty(),
        "signature OK, but no PCR set is valid at {}",
        format_time(at)
    );
    Ok(Verified {
        version: verified.version(),
        timestamp: ms_to_time(verified.timestamp_ms())?,
        at: format_time(at),
        valid_sets,
    })
}

fn set_out(s: &ManifestPcrSet) -> Result<SetOut> {
    Ok(SetOut {
        id: s.id().to_owned(),
        pcrs: s
            .pcr_set
            .pcrs()
            .iter()
            .map(|(i, v)| (format!("pcr{i}"), hex::encode(v)))
            .collect(),
        valid_from: ms_to_time(s.valid_from_ms)?,
        valid_until: s.valid_until_ms.map(ms_to_time).transpose()?,
        is_current: s.is_current,
        description: s.description.clone(),
    })
}

/// A P-256 public key from PEM (`-----BEGIN PUBLIC KEY-----`) or DER SPKI, as SEC1 bytes.
fn load_public_key(bytes: &[u8]) -> Result<Vec<u8>> {
    let key = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => VerifyingKey::from_public_key_pem(text),
        _ => VerifyingKey::from_public_key_der(bytes),
    }
    .map_err(|e| anyhow!("the public key is not a P-256 SubjectPublicKeyInfo (PEM or DER): {e}"))?;
    Ok(key.to_encoded_point(false).as_bytes().to_vec())
}

/// Strict JSON (duplicate keys refused), size-capped before parsing.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value> {
    ensure!(
        bytes.len() <= MAX_MANIFEST_BYTES,
        "manifest is {} bytes (limit {MAX_MANIFEST_BYTES})",
        bytes.len()
    );
    let value = jcs::parse_strict(bytes).map_err(|e| anyhow!("manifest is not valid JSON: {e}"))?;
    ensure!(value.is_object(), "manifest is not a JSON object");
    Ok(value)
}

/// RFC 3339, any offset, normalised to UTC.
pub fn parse_time(what: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{what}: {s:?} is not an RFC 3339 date-time"))
}

/// `2026-01-18T00:00:00Z` (milliseconds only when non-zero).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn ms_to_time(ms: u64) -> Result<String> {
    let ms = i64::try_from(ms).context("time out of range")?;
    DateTime::from_timestamp_millis(ms)
        .map(format_time)
        .context("time out of range")
}

fn pretty(v: &Value) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

/// Write `bytes` to `path` atomically (temporary file in the same directory, then rename).
///
/// # Errors
/// On any I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "aa";

    fn set(id: &str, current: bool, from: &str) -> NewSet {
        NewSet {
            id: id.into(),
            pcrs: [H.repeat(48), "BB".repeat(48), "cc".repeat(48)],
            valid_from: Some(from.into()),
            valid_until: None,
            description: None,
            current,
        }
    }

    fn now() -> DateTime<Utc> {
        parse_time("now", "2026-02-01T00:00:00Z").unwrap()
    }

    #[test]
    fn add_supersedes_the_current_set_and_bumps_version() {
        let a = add(None, &set("v1", true, "2026-01-01T00:00:00Z"), now()).unwrap();
        let b = add(
            Some(&a.json),
            &set("v2", true, "2026-01-10T00:00:00Z"),
            now(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b.json).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["pcr_sets"][0]["valid_until"], "2026-01-10T00:00:00Z");
        assert_eq!(v["pcr_sets"][0]["is_current"], false);
        assert_eq!(v["pcr_sets"][1]["is_current"], true);
        assert_eq!(v["pcr_sets"][1]["pcr1"], "bb".repeat(48), "hex normalised");
        assert!(b.notes.iter().any(|n| n.contains("superseded")));
    }

    #[test]
    fn add_refuses_bad_input() {
        let a = add(None, &set("v1", true, "2026-01-01T00:00:00Z"), now()).unwrap();
        assert!(add(
            Some(&a.json),
            &set("v1", false, "2026-01-02T00:00:00Z"),
            now()
        )
        .is_err());
        // A current set that would start before the one it supersedes.
        assert!(add(
            Some(&a.json),
            &set("v0", true, "2025-12-01T00:00:00Z"),
            now()
        )
        .is_err());
        let mut bad = set("x", false, "2026-01-01T00:00:00Z");
        bad.pcrs[0] = "zz".into();
        assert!(add(None, &bad, now()).is_err());
        bad.pcrs[0] = "00".repeat(48);
        assert!(
            add(None, &bad, now()).is_err(),
            "all-zero PCR0 is a debug enclave"
        );
        assert!(add(None, &set("y", false, "yesterday"), now()).is_err());
    }
}
