//! `HOST:PORT` tunnel targets and the allow-list they are checked against.
//!
//! One parser serves both the configuration (`kms.allow`) and the enclave's preamble, so an entry
//! and a request can only match when they name the same thing the same way. Hosts are compared
//! lowercased and exactly: no wildcards, no suffix matching, no trailing dot, no IPv6 (AWS KMS
//! endpoints are DNS names; a literal IPv4 address is accepted for tests and local endpoints).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Longest DNS name (RFC 1035, without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;

/// A connection target: a lowercase DNS name or IPv4 literal, and a non-zero port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    host: String,
    port: u16,
}

/// Why a `HOST:PORT` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// No `:PORT` part.
    #[error("expected HOST:PORT")]
    Shape,
    /// A `*` anywhere: the allow-list takes exact names only.
    #[error("wildcards are not allowed: list each exact HOST:PORT")]
    Wildcard,
    /// The host is neither a DNS name nor an IPv4 literal.
    #[error("host must be a DNS name or an IPv4 address")]
    Host,
    /// The port is not a decimal number in 1..=65535.
    #[error("port must be a number between 1 and 65535")]
    Port,
}

impl Target {
    /// The host, lowercase.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, TargetError> {
        if s.contains('*') {
            return Err(TargetError::Wildcard);
        }
        let (host, port) = s.rsplit_once(':').ok_or(TargetError::Shape)?;
        // Digits only: `u16::from_str` alone would take "+443". No leading zero, so one port
        // has one spelling.
        let port = Some(port)
            .filter(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .filter(|p| !p.starts_with('0'))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or(TargetError::Port)?;
        let host = host.to_ascii_lowercase();
        if !(host.parse::<Ipv4Addr>().is_ok() || valid_dns_name(&host)) {
            return Err(TargetError::Host);
        }
        Ok(Target { host, port })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A lowercase DNS name: labels of `a-z0-9-`, 1–63 bytes, not starting or ending with `-`, and
/// a last label that is not all digits (so `1.2.3` or `999.1.1.1` is not mistaken for a name).
fn valid_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=MAX_HOST_LEN).contains(&host.len())
        && host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// The exact targets the enclave may reach. Empty refuses everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(BTreeSet<Target>);

impl AllowList {
    /// An allow-list of exactly `targets`.
    pub fn new(targets: impl IntoIterator<Item = Target>) -> Self {
        Self(targets.into_iter().collect())
    }

    /// Whether `target` is listed.
    pub fn allows(&self, target: &Target) -> bool {
        self.0.contains(target)
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The listed targets, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, TargetError> {
        s.parse()
    }

    #[test]
    fn names_and_ipv4_literals_parse_lowercased() {
        let k = t("KMS.us-east-1.AmazonAWS.com:443").unwrap();
        assert_eq!(k.host(), "kms.us-east-1.amazonaws.com");
        assert_eq!(k.port(), 443);
        assert_eq!(k.to_string(), "kms.us-east-1.amazonaws.com:443");
        assert_eq!(t("127.0.0.1:65535").unwrap().port(), 65535);
        assert_eq!(t("localhost:1").unwrap().host(), "localhost");
    }

    #[test]
    fn malformed_targets_are_refused_with_a_reason() {
        for (input, want) in [
            ("*.amazonaws.com:443", TargetError::Wildcard),
            ("kms.*:443", TargetError::Wildcard),
            ("kms.amazonaws.com", TargetError::Shape),
            ("", TargetError::Shape),
            ("kms.amazonaws.com:", TargetError::Port),
            ("kms.amazonaws.com:0", TargetError::Port),
            ("kms.amazonaws.com:0443", TargetError::Port),
            ("kms.amazonaws.com:+443", TargetError::Port),
            ("kms.amazonaws.com:65536", TargetError::Port),
            ("kms.amazonaws.com:443 ", TargetError::Port),
            (":443", TargetError::Host),
            ("kms .com:443", TargetError::Host),
            ("kms.amazonaws.com.:443", TargetError::Host),
            ("-kms.com:443", TargetError::Host),
            ("kms..com:443", TargetError::Host),
            ("[::1]:443", TargetError::Host),
            ("::1:443", TargetError::Host),
            ("1.2.3:443", TargetError::Host),
            ("999.1.1.1:443", TargetError::Host),
            ("kms_x.com:443", TargetError::Host),
        ] {
            assert_eq!(t(input), Err(want), "{input:?}");
        }
        let long = format!("{}.com:443", "a.".repeat(130));
        assert_eq!(t(&long), Err(TargetError::Host));
    }

    #[test]
    fn allow_list_matches_exactly() {
        let list = AllowList::new([t("kms.us-east-1.amazonaws.com:443").unwrap()]);
        assert!(list.allows(&t("KMS.US-EAST-1.AMAZONAWS.COM:443").unwrap()));
        assert!(!list.allows(&t("kms.us-east-1.amazonaws.com:80").unwrap()));
        assert!(!list.allows(&t("evil.kms.us-east-1.amazonaws.com:443").unwrap()));
        assert!(!list.allows(&t("us-east-1.amazonaws.com:443").unwrap()));
        assert!(AllowList::default().is_empty());
    }
}
