//! Transport addresses: `vsock://CID:PORT`, `unix:///path`, `tcp://HOST:PORT`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// `VMADDR_CID_ANY`: listen on whatever CID the enclave was given.
pub const VMADDR_CID_ANY: u32 = u32::MAX;

/// Where a link listens or connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// AF_VSOCK (production). `cid` is [`VMADDR_CID_ANY`] for a listener bound to any CID.
    Vsock {
        /// Context id: 16 for our enclave, 3 for the host.
        cid: u32,
        /// Port, 5000 in production.
        port: u32,
    },
    /// Unix domain socket path (dev and tests).
    Unix(PathBuf),
    /// TCP socket address (dev and tests; loopback only by convention).
    Tcp(SocketAddr),
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme://` or an unknown scheme.
    #[error("unknown scheme in {0:?}: expected vsock://, unix:// or tcp://")]
    Scheme(String),
    /// `vsock://` without `CID:PORT`, or a non-numeric part.
    #[error("bad vsock address {0:?}: expected vsock://CID:PORT (CID a number or `any`)")]
    Vsock(String),
    /// `unix://` with an empty or relative path.
    #[error("bad unix address {0:?}: expected unix:///absolute/path")]
    Unix(String),
    /// `tcp://` with something that is not `IP:PORT`.
    #[error("bad tcp address {0:?}: expected tcp://IP:PORT")]
    Tcp(String),
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, AddressError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| AddressError::Scheme(s.into()))?;
        match scheme {
            "vsock" => parse_vsock(rest).ok_or_else(|| AddressError::Vsock(s.into())),
            "unix" => {
                let path = PathBuf::from(rest);
                if rest.is_empty() || !path.is_absolute() || rest.contains('\0') {
                    return Err(AddressError::Unix(s.into()));
                }
                Ok(Address::Unix(path))
            }
            "tcp" => rest
                .parse()
                .map(Address::Tcp)
                .map_err(|_| AddressError::Tcp(s.into())),
            _ => Err(AddressError::Scheme(s.into())),
        }
    }
}

fn parse_vsock(rest: &str) -> Option<Address> {
    let (cid, port) = rest.split_once(':')?;
    let cid = match cid {
        "any" | "-1" => VMADDR_CID_ANY,
        n => n.parse().ok()?,
    };
    // Port u32::MAX is VMADDR_PORT_ANY, meaningless for a fixed service.
    let port: u32 = port.parse().ok().filter(|p| *p != u32::MAX)?;
    Some(Address::Vsock { cid, port })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Vsock {
                cid: VMADDR_CID_ANY,
                port,
            } => write!(f, "vsock://any:{port}"),
            Address::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_vsock_addresses_parse() {
        assert_eq!(
            "vsock://16:5000".parse(),
            Ok(Address::Vsock {
                cid: 16,
                port: 5000
            })
        );
        assert_eq!(
            "vsock://any:5000".parse(),
            Ok(Address::Vsock {
                cid: VMADDR_CID_ANY,
                port: 5000
            })
        );
        assert_eq!(
            "vsock://-1:5000".parse::<Address>().unwrap().to_string(),
            "vsock://any:5000"
        );
    }

    #[test]
    fn addresses_round_trip_through_display() {
        for s in [
            "vsock://16:5000",
            "vsock://3:8000",
            "unix:///run/vettid/enclave.sock",
            "tcp://127.0.0.1:5000",
            "tcp://[::1]:9",
        ] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        type Check = fn(&AddressError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("16:5000", |e| matches!(e, AddressError::Scheme(_))),
            ("http://x", |e| matches!(e, AddressError::Scheme(_))),
            ("vsock://16", |e| matches!(e, AddressError::Vsock(_))),
            ("vsock://x:5000", |e| matches!(e, AddressError::Vsock(_))),
            ("vsock://16:port", |e| matches!(e, AddressError::Vsock(_))),
            ("vsock://16:4294967295", |e| {
                matches!(e, AddressError::Vsock(_))
            }),
            ("vsock://16:99999999999", |e| {
                matches!(e, AddressError::Vsock(_))
            }),
            ("unix://", |e| matches!(e, AddressError::Unix(_))),
            ("unix://relative.sock", |e| {
                matches!(e, AddressError::Unix(_))
            }),
            ("tcp://localhost", |e| matches!(e, AddressError::Tcp(_))),
            ("tcp://127.0.0.1", |e| matches!(e, AddressError::Tcp(_))),
        ];
        for (s, ok) in cases {
            let err = s.parse::<Address>().unwrap_err();
            assert!(ok(&err), "{s}: {err}");
        }
    }
}
