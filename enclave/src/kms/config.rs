//! KMS settings: the `--kms-*` flags, validated once into a [`KmsConfig`] before anything binds.
//!
//! All or nothing: an enclave either has a KMS (endpoint, region, key id and tunnel all given) or
//! none (then every vault operation answers `KMSNotConfigured`). Half a configuration is a usage
//! error, reported with every other problem at once (STYLE rule 13).

use std::path::PathBuf;

use vettid_link::Address;

use super::arn::KeyArn;
use crate::flag_group::FlagGroup;

/// Largest `--kms-ca-file` accepted: a handful of PEM certificates.
pub const MAX_CA_FILE_LEN: usize = 256 * 1024;
/// Longest host name in `--kms-endpoint` (DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// The `--kms-*` flags as given (flattened into the binary's arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KmsFlags {
    /// KMS endpoint as the parent reaches it: `https://kms.us-east-1.amazonaws.com` in production,
    /// `https://kms.vettid.test:PORT` against the local KMS. TLS is verified for this host name
    /// inside the enclave.
    #[arg(long, env = "VETTID_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// AWS region the requests are signed for (e.g. `us-east-1`).
    #[arg(long, env = "VETTID_KMS_REGION")]
    pub kms_region: Option<String>,
    /// The KMS key sealing vault material: its full key ARN,
    /// `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`, in `--kms-region`. Aliases and bare key ids
    /// are refused: they resolve in the account of whoever lends the credentials (the host). On
    /// the measured command line, so the key is bound to PCR0.
    #[arg(long, env = "VETTID_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// The parent's KMS byte tunnel: `vsock://3:8000` in production, `tcp://127.0.0.1:PORT` or
    /// `unix:///path` in dev.
    #[arg(long, env = "VETTID_KMS_TUNNEL")]
    pub kms_tunnel: Option<String>,
    /// Another PCR0 (96 hex digits) the key policy may let decrypt besides this enclave's own:
    /// the neighbouring release during a rolling upgrade. Repeatable. A policy that lets any
    /// other measurement decrypt is refused before anything is sealed. Measured like every flag.
    #[arg(long = "kms-policy-pcr0", value_name = "HEX")]
    pub kms_policy_pcr0: Vec<String>,
    /// Extra PEM CA certificate(s) trusted for the KMS endpoint besides the embedded public roots
    /// (dev: the local KMS's `ca.pem`).
    #[arg(long, env = "VETTID_KMS_CA_FILE")]
    pub kms_ca_file: Option<PathBuf>,
    /// Loopback port of the in-enclave forwarder the SDK connects to. Default: the endpoint's port
    /// (443 in production). 0 picks a free port (dev, where the local KMS already holds the
    /// endpoint's port on the same loopback).
    #[arg(long, env = "VETTID_KMS_FORWARD_PORT")]
    pub kms_forward_port: Option<u16>,
}

/// The KMS endpoint: a DNS host name and a port, over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower-case DNS name, verified by TLS and named in the tunnel preamble.
    pub host: String,
    /// The port the parent connects to (443 unless the URL says otherwise).
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://HOST[:PORT][/]`. IP literals, user info, paths and queries are refused: the
    /// host name is what TLS verifies and the only name the enclave resolves (to its forwarder).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("must start with https:// (TLS ends inside the enclave)")?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err("only https://HOST[:PORT] (no path, query or user info)".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or("port must be 1-65535")?;
                (host, port)
            }
            None => (authority, 443),
        };
        check_host(host)?;
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `HOST:PORT`, as named in the tunnel preamble.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A DNS host name (letters, digits, `-`, dots between labels, at least two labels), not an IP.
fn check_host(host: &str) -> Result<(), String> {
    let bad = || format!("{host:?} is not a DNS host name");
    if host.is_empty() || host.len() > MAX_HOST_LEN || !host.contains('.') {
        return Err(bad());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    // A name whose last label is numeric would be read as an IPv4 address by resolvers and TLS.
    if host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{host:?} is an IP address; a host name is required"
        ));
    }
    Ok(())
}

/// Validated KMS settings.
#[derive(Clone)]
pub struct KmsConfig {
    /// Where KMS is (as the parent reaches it).
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// The key's full ARN (the only form accepted; see [`super::arn`]).
    pub key_id: KeyArn,
    /// The parent's tunnel.
    pub tunnel: Address,
    /// Extra trusted CA certificates (PEM), from `--kms-ca-file`.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Forwarder port on 127.0.0.1 (0: ephemeral).
    pub forward_port: u16,
    /// `--kms-policy-pcr0`, lower-case hex.
    pub policy_pcr0: Vec<String>,
}

impl std::fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("key_id", &self.key_id)
            .field("tunnel", &self.tunnel)
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .field("forward_port", &self.forward_port)
            .field("policy_pcr0", &self.policy_pcr0)
            .finish()
    }
}

impl KmsConfig {
    /// Validates `flags`: `Ok(None)` when no KMS flag is given, `Ok(Some)` when the four required
    /// ones are and every value is valid.
    ///
    /// # Errors
    /// Every problem at once, one message each (the binary exits 64).
    pub fn from_flags(flags: &KmsFlags) -> Result<Option<Self>, Vec<String>> {
        let required = [
            ("--kms-endpoint", flags.kms_endpoint.as_deref()),
            ("--kms-region", flags.kms_region.as_deref()),
            ("--kms-key-id", flags.kms_key_id.as_deref()),
            ("--kms-tunnel", flags.kms_tunnel.as_deref()),
        ];
        let optional_given = flags.kms_ca_file.is_some()
            || flags.kms_forward_port.is_some()
            || !flags.kms_policy_pcr0.is_empty();
        let Some(mut group) = FlagGroup::given("--kms-*", &required, optional_given) else {
            return Ok(None);
        };
        let endpoint = group.value("--kms-endpoint", flags.kms_endpoint.as_deref(), |url| {
            Endpoint::parse(url)
        });
        let region = group.value("--kms-region", flags.kms_region.as_deref(), check_region);
        // The region check needs a valid --kms-region; a bad one is reported on its own.
        let key_id = group.quiet("--kms-key-id", flags.kms_key_id.as_deref(), |k| {
            KeyArn::parse(k, region.as_deref())
        });
        let tunnel = group.quiet("--kms-tunnel", flags.kms_tunnel.as_deref(), |t| {
            t.parse::<Address>()
        });
        let extra_ca_pem = flags.kms_ca_file.as_ref().and_then(|path| {
            read_ca_file(path)
                .map_err(|e| group.push(format!("--kms-ca-file {}: {e}", path.display())))
                .ok()
        });
        let mut policy_pcr0 = Vec::new();
        for value in &flags.kms_policy_pcr0 {
            policy_pcr0.extend(group.value("--kms-policy-pcr0", Some(value), check_pcr0));
        }
        group.finish()?;
        let (Some(endpoint), Some(region), Some(key_id), Some(tunnel)) =
            (endpoint, region, key_id, tunnel)
        else {
            unreachable!("every missing or invalid value pushed an error");
        };
        Ok(Some(Self {
            forward_port: flags.kms_forward_port.unwrap_or(endpoint.port),
            endpoint,
            region,
            key_id,
            tunnel,
            extra_ca_pem,
            policy_pcr0,
        }))
    }
}

/// A SHA-384 PCR0: 96 hex digits, not all zero (a debug enclave's), returned in lower case.
fn check_pcr0(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if lower.len() != 96 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 96 hex digits (SHA-384)".into());
    }
    if lower.bytes().all(|b| b == b'0') {
        return Err("all zeros is a debug enclave's PCR0".into());
    }
    Ok(lower)
}

/// `us-east-1`-shaped: lower-case letters, digits and `-`.
pub(crate) fn check_region(region: &str) -> Result<String, String> {
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("expected a region name such as us-east-1".into());
    }
    Ok(region.to_owned())
}

/// Reads and checks a PEM file of CA certificates: at least one, every one a usable trust anchor.
/// (The SDK's client panics on a certificate it cannot parse, so nothing unchecked reaches it.)
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    if pem.len() > MAX_CA_FILE_LEN {
        return Err(format!("larger than {MAX_CA_FILE_LEN} bytes"));
    }
    super::http::check_ca_pem(&pem)?;
    Ok(pem)
}
