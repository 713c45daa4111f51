//! `vettid control keygen|sign|send`: build Ed25519-signed control commands (docs/CONTROL.md).
//!
//! The signed bytes are `"vettid-control-v1\n"` followed by the RFC 8785 (JCS) form of the command
//! without `signature`, made with the same JCS code the apps' verifier crate uses. VettID's signer
//! and verifier disagreed on canonicalisation so nothing ever verified (G4); the enclave's test
//! vectors and the end-to-end tests (this binary signing, the enclave verifying) keep the two
//! sides in step. The private key is read, used and dropped; it is never printed or logged.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::output;

/// Domain-separation prefix of the signed bytes (the enclave's `control::wire::DOMAIN`).
const DOMAIN: &[u8] = b"vettid-control-v1\n";
/// Longest validity the enclave accepts.
const MAX_TTL_SECS: u64 = 300;

/// `vettid control`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(subcommand)]
    command: ControlCommand,
}

#[derive(Debug, Subcommand)]
enum ControlCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its keys-file entry.
    Keygen(KeygenArgs),
    /// Print a signed command (one JSON line).
    Sign(CommandArgs),
    /// Sign a command, send it on its Control subject and print the reply.
    Send(SendArgs),
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the private key (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Key id for the enclave's keys file (default: `ed25519-` + 16 hex of SHA-256(public key)).
    #[arg(long)]
    key_id: Option<String>,
}

/// What to sign.
#[derive(Debug, Args)]
struct CommandArgs {
    /// Private key: PKCS#8 (v1 or v2), DER or PEM.
    #[arg(long)]
    key: PathBuf,
    /// Command: health.request, drain, vault.reset, credential.delete.
    #[arg(long)]
    command: String,
    /// `global`, `enclave:ID` or `user:GUID`.
    #[arg(long)]
    target: String,
    /// A parameter, `K=V` (string value); repeatable. The enclave accepts `reason`.
    #[arg(long = "param", value_name = "K=V")]
    params: Vec<String>,
    /// Validity from issue, 1 to 300 seconds.
    #[arg(long, default_value_t = 60)]
    ttl_secs: u64,
    /// Who is signing, for the enclave's audit log.
    #[arg(long, default_value = "vettid-cli")]
    issued_by: String,
    /// Command id (default: a random UUID).
    #[arg(long)]
    command_id: Option<String>,
    /// Key id (default: derived from the key as `keygen` does).
    #[arg(long)]
    key_id: Option<String>,
    /// Issue time in ms since the Unix epoch (default: now); for pre-signing and tests.
    #[arg(long)]
    issued_at_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    command: CommandArgs,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// NATS .creds file.
    #[arg(long)]
    creds: Option<PathBuf>,
    /// How long to wait for the reply.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// Runs `vettid control …`.
pub async fn run(args: &ControlArgs) -> Result<(), CliError> {
    match &args.command {
        ControlCommand::Keygen(a) => keygen(a),
        ControlCommand::Sign(a) => {
            let (_, signed) = build(a)?;
            output::line(&signed.to_string());
            Ok(())
        }
        ControlCommand::Send(a) => {
            let (subject, signed) = build(&a.command)?;
            send(a, &subject, &signed).await
        }
    }
}

fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| CliError::Other("key generation failed".into()))?;
    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(doc.as_ref())
        .map_err(|_| CliError::Other("key generation failed".into()))?;
    let pem = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", doc.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", args.out.display())))?;
    let key_id = match &args.key_id {
        Some(id) => checked_id("--key-id", id)?,
        None => derived_key_id(&key),
    };
    let entry = json!({"key_id": key_id, "public_key_b64": B64.encode(key.public_key().as_ref())});
    output::line(&entry.to_string());
    Ok(())
}

/// The subject and the signed command.
fn build(a: &CommandArgs) -> Result<(String, Value), CliError> {
    let key = load_key(&a.key)?;
    let (target, scope) = match a.target.split_once(':') {
        None if a.target == "global" => (json!({"type": "global"}), "global".to_string()),
        Some(("enclave", id)) => (
            json!({"type": "enclave", "id": id}),
            format!("enclave.{id}"),
        ),
        Some(("user", id)) => (json!({"type": "user", "id": id}), format!("user.{id}")),
        _ => return Err(usage("--target must be global, enclave:ID or user:GUID")),
    };
    if scope
        .split('.')
        .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
    {
        return Err(usage("--target id must be one NATS subject token"));
    }
    if a.command.is_empty() || a.command.split('.').any(str::is_empty) {
        return Err(usage("--command must be dot-separated tokens"));
    }
    if a.ttl_secs == 0 || a.ttl_secs > MAX_TTL_SECS {
        return Err(usage("--ttl-secs must be 1 to 300 (the enclave's limit)"));
    }
    let mut params = Map::new();
    for p in &a.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage("--param must be K=V"))?;
        if params.insert(k.to_string(), v.into()).is_some() {
            return Err(usage(&format!("--param {k} given twice")));
        }
    }
    let issued_at = match a.issued_at_ms {
        Some(ms) => ms,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CliError::Other("clock before 1970".into()))?
            .as_millis()
            .try_into()
            .map_err(|_| CliError::Other("clock out of range".into()))?,
    };
    let command_id = match &a.command_id {
        Some(id) => checked_id("--command-id", id)?,
        None => random_uuid()?,
    };
    let key_id = match &a.key_id {
        Some(id) => checked_id("--key-id", id)?,
        None => derived_key_id(&key),
    };
    let mut cmd = json!({
        "command_id": command_id,
        "command": a.command,
        "key_id": key_id,
        "target": target,
        "params": params,
        "issued_at": issued_at,
        "expires_at": issued_at + a.ttl_secs * 1000,
        "issued_by": a.issued_by,
    });
    sign(&key, &mut cmd)?;
    Ok((format!("Control.{scope}.{}", a.command), cmd))
}

/// Adds `signature`: Ed25519 over `DOMAIN || JCS(cmd)`.
fn sign(key: &Ed25519KeyPair, cmd: &mut Value) -> Result<(), CliError> {
    let canonical = vettid_attestation::jcs::canonicalize(cmd)
        .map_err(|e| CliError::Other(format!("cannot canonicalise: {e}")))?;
    let mut message = DOMAIN.to_vec();
    message.extend_from_slice(canonical.as_bytes());
    cmd["signature"] = B64.encode(key.sign(&message).as_ref()).into();
    Ok(())
}

async fn send(a: &SendArgs, subject: &str, signed: &Value) -> Result<(), CliError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("vettid-cli")
        .connection_timeout(Duration::from_millis(a.timeout_ms.min(5_000)));
    if let Some(creds) = &a.creds {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| CliError::Usage(format!("--creds: {e}")))?;
    }
    let connect_err = |e: &dyn std::fmt::Display| CliError::Connect {
        url: a.nats.clone(),
        reason: e.to_string(),
    };
    let client = opts
        .connect(a.nats.as_str())
        .await
        .map_err(|e| connect_err(&e))?;
    let timeout = || CliError::Timeout {
        subject: subject.into(),
        ms: a.timeout_ms,
    };
    let call = client.request(subject.to_string(), signed.to_string().into());
    let msg = match tokio::time::timeout(Duration::from_millis(a.timeout_ms), call).await {
        Err(_) => return Err(timeout()),
        Ok(Err(e)) => {
            return Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    CliError::NoResponders(subject.into())
                }
                async_nats::RequestErrorKind::TimedOut => timeout(),
                _ => connect_err(&e),
            })
        }
        Ok(Ok(msg)) => msg,
    };
    let reply: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| CliError::BadReply(format!("not JSON: {e}")))?;
    output::line(&reply.to_string());
    if reply.get("type").and_then(Value::as_str) == Some("error") {
        let text = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        let code = reply.get("code").and_then(Value::as_str).unwrap_or("-");
        return Err(CliError::Enclave(format!("{text} ({code})")));
    }
    Ok(())
}

fn load_key(path: &PathBuf) -> Result<Ed25519KeyPair, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("--key {}: {e}", path.display())))?;
    let der = if bytes
        .windows(27)
        .any(|w| w == b"-----BEGIN PRIVATE KEY-----")
    {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&bytes)
            .map_err(|_| usage("--key: PEM body is not base64"))?
            .secret_pkcs8_der()
            .to_vec()
    } else {
        bytes
    };
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|_| usage("--key is not an Ed25519 PKCS#8 private key (DER or PEM)"))
}

/// `ed25519-` + the first 16 hex digits of SHA-256 of the raw public key.
fn derived_key_id(key: &Ed25519KeyPair) -> String {
    let h = digest(&SHA256, key.public_key().as_ref());
    format!("ed25519-{}", &hex::encode(h.as_ref())[..16])
}

/// The enclave's id rule for `command_id` and `key_id`: `[A-Za-z0-9._:-]{1,64}`.
fn checked_id(flag: &str, id: &str) -> Result<String, CliError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| id.to_string())
        .ok_or_else(|| usage(&format!("{flag} must be 1 to 64 of [A-Za-z0-9._:-]")))
}

/// A version-4 UUID from the kernel's CSPRNG.
fn random_uuid() -> Result<String, CliError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| CliError::Other(format!("cannot read /dev/urandom: {e}")))?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

fn usage(msg: &str) -> CliError {
    CliError::Usage(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_version_4_uuids_and_keys_round_trip_through_pem() {
        let id = random_uuid().unwrap();
        let parsed = uuid::Uuid::try_parse(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!((id.len(), id.as_bytes()[14]), (36, b'4'));
        assert_ne!(random_uuid().unwrap(), id);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k.pem");
        keygen(&KeygenArgs {
            out: out.clone(),
            key_id: None,
        })
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n") && !text.contains('\r'));
        load_key(&out).unwrap();
        std::fs::write(
            &out,
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(load_key(&out), Err(CliError::Usage(_))));
    }

    /// The enclave's test vectors, signed by this (separate) signer: same bytes, same signature.
    #[test]
    fn cli_signer_reproduces_the_enclave_vectors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../enclave/tests/vectors/control");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let v: Value =
                serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            let seed = hex::decode(v["seed_hex"].as_str().unwrap()).unwrap();
            let key = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
            let mut cmd = v["unsigned"].clone();
            sign(&key, &mut cmd).unwrap();
            assert_eq!(cmd, v["signed"]);
            n += 1;
        }
        assert!(n >= 3);
    }
}
