//! `vettid attest`, and the NATS request/reply every enclave command uses, as a Lambda would.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::{json, Value};

use vettid_attestation::Document;

use crate::error::CliError;
use crate::verify_cmd::{self, PolicyArgs};

/// Connection flags shared by NATS commands.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// NATS .creds file.
    #[arg(long)]
    creds: Option<std::path::PathBuf>,
    /// How long to wait for the reply.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

impl NatsArgs {
    /// How long to wait for one reply (`--timeout-ms`).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `vettid attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Nonce as hex (default: 32 random bytes).
    #[arg(long)]
    nonce: Option<String>,
    /// Use the app subject `OwnerSpace.{GUID}.forVault.attestation` instead of the Lambda subject.
    #[arg(long)]
    owner: Option<String>,
    /// Write the raw document (COSE_Sign1 bytes) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Verify the document (chain, signature, freshness, nonce, PCRs) before printing it.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Connects to NATS (bounded by `--timeout-ms`, at most 5 s).
///
/// # Errors
/// [`CliError::Usage`] for an unreadable `--creds`, [`CliError::Connect`] otherwise.
pub async fn connect(args: &NatsArgs) -> Result<async_nats::Client, CliError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("vettid-cli")
        .connection_timeout(Duration::from_millis(args.timeout_ms.min(5_000)));
    if let Some(creds) = &args.creds {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| CliError::Usage(format!("--creds: {e}")))?;
    }
    opts.connect(args.nats.as_str())
        .await
        .map_err(|e| CliError::Connect {
            url: args.nats.clone(),
            reason: e.to_string(),
        })
}

/// One request/reply on `client`, bounded by `--timeout-ms`; an error reply becomes
/// [`CliError::Enclave`].
///
/// # Errors
/// [`CliError::NoResponders`], [`CliError::Timeout`], [`CliError::BadReply`],
/// [`CliError::Enclave`], [`CliError::Connect`].
pub async fn call(
    client: &async_nats::Client,
    args: &NatsArgs,
    subject: &str,
    payload: Value,
) -> Result<Value, CliError> {
    let call = client.request(subject.to_string(), payload.to_string().into());
    let msg = match tokio::time::timeout(Duration::from_millis(args.timeout_ms), call).await {
        Err(_) => {
            return Err(CliError::Timeout {
                subject: subject.into(),
                ms: args.timeout_ms,
            })
        }
        Ok(Err(e)) => {
            return Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    CliError::NoResponders(subject.into())
                }
                async_nats::RequestErrorKind::TimedOut => CliError::Timeout {
                    subject: subject.into(),
                    ms: args.timeout_ms,
                },
                _ => CliError::Connect {
                    url: args.nats.clone(),
                    reason: e.to_string(),
                },
            })
        }
        Ok(Ok(msg)) => msg,
    };
    let value: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| CliError::BadReply(format!("not JSON: {e}")))?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        let text = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        let code = value.get("code").and_then(Value::as_str).unwrap_or("-");
        return Err(CliError::Enclave(format!("{text} ({code})")));
    }
    Ok(value)
}

/// Runs `vettid attest`.
pub async fn attest(args: &AttestArgs) -> Result<(), CliError> {
    let nonce = match &args.nonce {
        Some(h) => hex::decode(h).map_err(|_| CliError::Usage("--nonce must be hex".into()))?,
        None => random_nonce()?,
    };
    if nonce.is_empty() || nonce.len() > 512 {
        return Err(CliError::Usage("--nonce must be 1 to 512 bytes".into()));
    }
    let client = connect(&args.nats).await?;
    let fetched = fetch_document(&client, &args.nats, &nonce, args.owner.as_deref()).await?;
    let (document, doc) = (fetched.document, fetched.parsed);
    if let Some(path) = &args.out {
        std::fs::write(path, &document)
            .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
    }
    if args.verify {
        let now_ms = verify_cmd::now_ms();
        let policy = args.policy.build(Some(nonce.clone()), now_ms)?;
        vettid_attestation::verify(&document, &policy, now_ms)
            .map_err(|e| CliError::Verify(e.to_string()))?;
    }
    verify_cmd::print_document(&doc, args.json, args.verify);
    Ok(())
}

/// A fresh attestation document, checked for consistency (not yet verified).
pub struct Fetched {
    /// The raw COSE_Sign1 bytes.
    pub document: Vec<u8>,
    /// Its fields, unverified.
    pub parsed: Document,
}

/// Asks the enclave for a document over `nonce`: on the Lambda subject
/// `enclave.attestation.request`, or the app subject of `owner`. Checks that the reply's fields
/// agree with each other and that the document carries our nonce and the reply's public key;
/// verifying the document is the caller's choice of policy.
///
/// # Errors
/// What [`call`] returns; [`CliError::BadReply`] when the reply is inconsistent.
pub async fn fetch_document(
    client: &async_nats::Client,
    args: &NatsArgs,
    nonce: &[u8],
    owner: Option<&str>,
) -> Result<Fetched, CliError> {
    let (subject, payload) = match owner {
        Some(owner) => (
            format!("OwnerSpace.{owner}.forVault.attestation"),
            json!({"id": "vettid-cli", "type": "attestation.request", "nonce": B64.encode(nonce)}),
        ),
        None => (
            "enclave.attestation.request".to_string(),
            json!({"nonce": B64.encode(nonce)}),
        ),
    };
    let reply = call(client, args, &subject, payload).await?;
    let field = |name: &str| -> Result<Vec<u8>, CliError> {
        let s = reply
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| CliError::BadReply(format!("no `{name}` field")))?;
        B64.decode(s)
            .map_err(|_| CliError::BadReply(format!("`{name}` is not base64")))
    };
    let document = field("attestation_document")?;
    let public_key = field("enclave_public_key")?;
    if field("attestation")? != document || field("public_key")? != public_key {
        return Err(CliError::BadReply(
            "legacy fields disagree with the new ones".into(),
        ));
    }
    let parsed = vettid_attestation::parse(&document)
        .map_err(|e| CliError::BadReply(format!("document does not parse: {e}")))?;
    if parsed.nonce.as_deref() != Some(nonce) {
        return Err(CliError::BadReply(
            "document nonce differs from the one sent".into(),
        ));
    }
    if parsed.public_key.as_deref() != Some(&public_key[..]) {
        return Err(CliError::BadReply(
            "document public_key differs from enclave_public_key".into(),
        ));
    }
    Ok(Fetched { document, parsed })
}

/// 32 bytes from the kernel's CSPRNG: the nonce must be unpredictable to the enclave's host.
pub fn random_nonce() -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let mut buf = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| CliError::Other(format!("cannot read /dev/urandom: {e}")))?;
    Ok(buf)
}
