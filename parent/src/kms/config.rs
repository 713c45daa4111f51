//! The optional `[kms]` section of `parent.toml`, parsed strictly and validated with the rest of
//! the file (every problem reported at once, see [`crate::config`]). Without the section the
//! parent opens no tunnel listener and answers the enclave's credential requests with
//! "kms not configured on the parent".
//!
//! ```toml
//! [kms]
//! tunnel_listen = "vsock://any:8000"               # where the enclave connects
//! allow = ["kms.us-east-1.amazonaws.com:443"]      # exact HOST:PORT; empty refuses everything
//! connect_timeout_ms = 5000                        # TCP connect to the target
//! max_tunnels = 64                                 # concurrent tunnels; more get `busy`
//! ```

use std::time::Duration;

use serde::Deserialize;
use vettid_link::Address;

use super::target::{AllowList, Target};

/// Where the enclave connects unless configured otherwise: any CID, port 8000 (the port AWS's
/// own vsock-proxy examples use for KMS).
pub const DEFAULT_TUNNEL_LISTEN: &str = "vsock://any:8000";

/// How long a TCP connect to an allowed target may take unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent tunnels unless configured otherwise: the enclave's KMS client pools a handful of
/// connections; 64 leaves room for bursts without letting a runaway client exhaust descriptors.
pub const DEFAULT_MAX_TUNNELS: usize = 64;

/// Hard ceiling of `kms.max_tunnels` (each tunnel holds two sockets).
pub const MAX_TUNNELS_LIMIT: usize = 4096;

/// Hard ceiling of `kms.allow` entries: a list this long is a mistake, not a policy.
pub const MAX_ALLOW_ENTRIES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KmsFile {
    tunnel_listen: String,
    allow: Vec<String>,
    /// Fixed addresses for allow-listed host names, like `curl --resolve`: for a KMS VPC
    /// endpoint without private DNS, and for tests where the KMS name is not in DNS.
    resolve: std::collections::BTreeMap<String, String>,
    connect_timeout_ms: u64,
    max_tunnels: usize,
}

impl Default for KmsFile {
    fn default() -> Self {
        Self {
            tunnel_listen: DEFAULT_TUNNEL_LISTEN.into(),
            allow: Vec::new(),
            resolve: std::collections::BTreeMap::new(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT.as_millis() as u64,
            max_tunnels: DEFAULT_MAX_TUNNELS,
        }
    }
}

/// Validated `[kms]` settings.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Where the tunnel listener binds (`vsock://any:8000` in production).
    pub tunnel_listen: Address,
    /// The only targets a tunnel may reach.
    pub allow: AllowList,
    /// Bound of one TCP connect to a target (DNS included).
    pub connect_timeout: Duration,
    /// Tunnels open at once; past this a new one is answered `busy`.
    pub max_tunnels: usize,
    /// Fixed addresses for allow-listed host names (lower case), instead of DNS.
    pub resolve: std::collections::BTreeMap<String, std::net::IpAddr>,
}

/// Validates the section; `None` (with problems recorded) when it is unusable.
pub(crate) fn validate(k: &KmsFile, problems: &mut Vec<String>) -> Option<KmsConfig> {
    let start = problems.len();
    let tunnel_listen = k
        .tunnel_listen
        .parse::<Address>()
        .map_err(|e| problems.push(format!("kms.tunnel_listen: {e}")))
        .ok();
    let mut allow = Vec::with_capacity(k.allow.len());
    for entry in &k.allow {
        match entry.parse::<Target>() {
            Ok(t) if allow.contains(&t) => {
                problems.push(format!("kms.allow {entry:?}: listed twice"));
            }
            Ok(t) => allow.push(t),
            Err(e) => problems.push(format!("kms.allow {entry:?}: {e}")),
        }
    }
    if k.allow.len() > MAX_ALLOW_ENTRIES {
        problems.push(format!(
            "kms.allow has {} entries: at most {MAX_ALLOW_ENTRIES}",
            k.allow.len()
        ));
    }
    if !(1..=60_000).contains(&k.connect_timeout_ms) {
        problems.push(format!(
            "kms.connect_timeout_ms = {}: must be between 1 and 60000",
            k.connect_timeout_ms
        ));
    }
    if !(1..=MAX_TUNNELS_LIMIT).contains(&k.max_tunnels) {
        problems.push(format!(
            "kms.max_tunnels = {}: must be between 1 and {MAX_TUNNELS_LIMIT}",
            k.max_tunnels
        ));
    }
    let mut resolve = std::collections::BTreeMap::new();
    for (host, ip) in &k.resolve {
        let host = host.to_ascii_lowercase();
        if !allow.iter().any(|t| t.host() == host) {
            problems.push(format!(
                "kms.resolve {host:?}: not the host of any kms.allow entry"
            ));
        }
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                resolve.insert(host, ip);
            }
            Err(_) => problems.push(format!("kms.resolve {host:?} = {ip:?}: not an IP address")),
        }
    }
    if problems.len() > start {
        return None;
    }
    if allow.is_empty() {
        tracing::warn!("kms.allow is empty: every tunnel the enclave opens will be denied");
    }
    Some(KmsConfig {
        tunnel_listen: tunnel_listen?,
        allow: AllowList::new(allow),
        connect_timeout: Duration::from_millis(k.connect_timeout_ms),
        max_tunnels: k.max_tunnels,
        resolve,
    })
}
