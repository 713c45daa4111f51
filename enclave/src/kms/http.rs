//! The SDK's HTTP client: hyper + rustls (aws-lc) with a resolver that knows one name.
//!
//! The enclave has no network. The only way out is the in-enclave forwarder on 127.0.0.1, so the
//! resolver maps the KMS host name to 127.0.0.1 and refuses every other name: nothing else is
//! reachable, and a misconfigured endpoint fails loudly instead of leaking anywhere. Because the
//! URL keeps the real host name, rustls sends it as SNI and verifies the certificate for it: TLS
//! runs end to end between the enclave and KMS, and the parent relays ciphertext only.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use aws_sdk_kms::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// How long an idle TLS connection is kept for reuse. Each one holds a tunnel through the parent;
/// KMS itself closes idle connections after about a minute.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept at most (each is a tunnel the parent holds open).
pub const POOL_MAX_IDLE: usize = 8;

/// How an SDK client in the enclave reaches one endpoint: its loopback forwarder into the
/// parent's tunnel, the URL the SDK calls (the real host name, so TLS verifies it) and the HTTP
/// client whose resolver knows that one name.
pub struct Route {
    /// The forwarder; dropping it stops forwarding.
    pub forwarder: super::forward::Forwarder,
    /// `https://HOST[:forwarder port]`.
    pub url: String,
    /// The HTTP client.
    pub http: SharedHttpClient,
}

/// Why a [`Route`] could not be set up.
#[derive(Debug)]
pub enum RouteError {
    /// The forwarder could not bind 127.0.0.1:`port`.
    Bind {
        /// The port asked for.
        port: u16,
        /// The bind error.
        source: std::io::Error,
    },
    /// The TLS context could not be built (the message of the SDK's error).
    Http(String),
}

/// Sets up the [`Route`] to `host`:`port` (as the parent reaches it) for `service` through
/// `tunnel`.
///
/// # Errors
/// [`RouteError`].
pub async fn route(
    service: super::forward::Service,
    (host, port): (&str, u16),
    forward_port: u16,
    tunnel: vettid_link::Address,
    extra_ca_pem: Option<&[u8]>,
) -> Result<Route, RouteError> {
    let forwarder = super::forward::Forwarder::start_for(
        service,
        forward_port,
        tunnel,
        format!("{host}:{port}"),
    )
    .await
    .map_err(|source| RouteError::Bind {
        port: forward_port,
        source,
    })?;
    let local = forwarder.local_addr().port();
    let url = if local == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{local}")
    };
    let http = client_for(host, extra_ca_pem, service)
        .map_err(|e| RouteError::Http(aws_sdk_kms::error::DisplayErrorContext(e).to_string()))?;
    Ok(Route {
        forwarder,
        url,
        http,
    })
}

/// Resolves exactly one host name, to 127.0.0.1 (the forwarder); every other name fails.
#[derive(Debug, Clone)]
pub struct LoopbackResolver {
    host: String,
    service: super::forward::Service,
}

impl LoopbackResolver {
    /// A resolver for `host` (compared case-insensitively, trailing dot ignored).
    pub fn new(host: &str) -> Self {
        Self::for_service(host, super::forward::Service::KMS)
    }

    /// A resolver for `host` that logs as `service`.
    pub fn for_service(host: &str, service: super::forward::Service) -> Self {
        Self {
            host: host.to_ascii_lowercase(),
            service,
        }
    }

    /// The addresses for `name`: 127.0.0.1 for the KMS host, an error for anything else.
    ///
    /// # Errors
    /// Any name but the KMS host's.
    pub fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, UnknownHost> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.eq_ignore_ascii_case(&self.host) {
            Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        } else {
            Err(UnknownHost)
        }
    }
}

/// A name other than the KMS host was looked up; the enclave reaches nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only the KMS host name resolves inside the enclave")]
pub struct UnknownHost;

impl ResolveDns for LoopbackResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::ready(self.lookup(name).map_err(|e| {
            tracing::error!(
                code = self.service.unavailable,
                service = self.service.name,
                "client looked up a host other than its endpoint"
            );
            ResolveDnsError::new(e)
        }))
    }
}

/// The roots the KMS endpoint's certificate must chain to: the Mozilla set compiled in (the
/// enclave has no certificate store), plus `extra_ca_pem` (already checked by [`check_ca_pem`]).
pub fn trust_store(extra_ca_pem: Option<&[u8]>) -> TrustStore {
    let mut store = TrustStore::empty().with_native_roots(false);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(to_pem(cert.as_ref()));
    }
    if let Some(pem) = extra_ca_pem {
        store.add_pem_certificate(pem.to_vec());
    }
    store
}

/// The SDK HTTP client: rustls on aws-lc, our trust store, our resolver, bounded pool.
///
/// # Errors
/// The TLS context cannot be built (not expected with checked certificates).
pub fn client(
    host: &str,
    extra_ca_pem: Option<&[u8]>,
) -> Result<SharedHttpClient, aws_smithy_http_client::HttpClientError> {
    client_for(host, extra_ca_pem, super::forward::Service::KMS)
}

/// [`client`] for another endpoint than KMS (its resolver logs as `service`).
///
/// # Errors
/// The TLS context cannot be built.
pub fn client_for(
    host: &str,
    extra_ca_pem: Option<&[u8]>,
    service: super::forward::Service,
) -> Result<SharedHttpClient, aws_smithy_http_client::HttpClientError> {
    let context = TlsContext::builder()
        .with_trust_store(trust_store(extra_ca_pem))
        .build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_with_resolver(LoopbackResolver::for_service(host, service)))
}

/// Checks a PEM file of CA certificates: at least one `CERTIFICATE` block, each a trust anchor
/// webpki accepts (what rustls will do with it later, where failure would panic).
///
/// # Errors
/// What is wrong, without echoing the file.
pub fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM file of certificates".to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    for (i, cert) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(cert)
            .map_err(|_| format!("certificate {} is not a valid X.509 certificate", i + 1))?;
    }
    Ok(())
}

/// DER → PEM (64-column base64, LF), the form the SDK's trust store takes.
fn to_pem(der: &[u8]) -> Vec<u8> {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kms_host_resolves_and_only_to_loopback() {
        let resolver = LoopbackResolver::new("kms.us-east-1.amazonaws.com");
        let ips = resolver.lookup("kms.us-east-1.amazonaws.com").unwrap();
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(
            resolver.lookup("KMS.us-east-1.amazonaws.com.").unwrap(),
            ips
        );
        for other in [
            "sts.amazonaws.com",
            "kms.us-east-1.amazonaws.com.evil.test",
            "169.254.169.254",
            "localhost",
            "",
        ] {
            assert_eq!(resolver.lookup(other), Err(UnknownHost), "{other}");
        }
    }

    #[tokio::test]
    async fn the_resolver_answers_through_the_sdk_trait() {
        let resolver = LoopbackResolver::new("kms.vettid.test");
        let ips = resolver.resolve_dns("kms.vettid.test").await.unwrap();
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert!(resolver.resolve_dns("example.com").await.is_err());
    }

    #[test]
    fn embedded_roots_all_pass_the_ca_check() {
        let mut all = Vec::new();
        for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            all.extend(to_pem(cert.as_ref()));
        }
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 50);
        check_ca_pem(&all).unwrap();
        // The exact shape: 64 columns, LF line ends (as the hand-written encoder produced).
        let expected = format!(
            "-----BEGIN CERTIFICATE-----\n{}\nAA==\n-----END CERTIFICATE-----\n",
            "A".repeat(64)
        );
        assert_eq!(to_pem(&[0u8; 49]), expected.into_bytes());
    }

    #[test]
    fn bad_ca_files_are_refused() {
        assert!(check_ca_pem(b"").is_err());
        assert!(check_ca_pem(b"hello").is_err());
        assert!(check_ca_pem(
            b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }
}
