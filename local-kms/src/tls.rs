//! Optional TLS, so the enclave's KMS client can be tested the way it talks to AWS: HTTPS verified
//! for a host name, through the parent's tunnel.
//!
//! Two sources: PEM files (`--tls-cert`, `--tls-key`), or a dev CA made on the spot
//! (`--tls-self-signed DIR --tls-hostname NAME`): `DIR/ca.pem` + `DIR/ca.key` are created on first use
//! and reused afterwards (so an enclave started with `--kms-ca-file DIR/ca.pem` keeps trusting a
//! restarted server), and a fresh server certificate for NAME is issued by that CA at every start.
//! rustls runs on aws-lc (the SDK's provider; never ring). Plain HTTP stays the default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::StartError;
use crate::store::write_private;

/// File name of the dev CA certificate in the `--tls-self-signed` directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the dev CA's private key (mode 0600) in the `--tls-self-signed` directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A PEM certificate chain and its PEM private key.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// PKCS#8, PKCS#1 or SEC1 private key.
        key: PathBuf,
    },
    /// A dev CA in `dir` and a server certificate for `hostname` issued at start-up.
    SelfSigned {
        /// Holds `ca.pem` and `ca.key`.
        dir: PathBuf,
        /// The DNS name the certificate is for (what clients verify).
        hostname: String,
    },
}

/// The rustls server configuration for `source` (HTTP/1.1 only, TLS 1.2 and 1.3).
///
/// # Errors
/// [`StartError::Tls`] when a file cannot be read or written, or the certificate and key do not fit.
pub fn server_config(source: &TlsSource) -> Result<Arc<ServerConfig>, StartError> {
    let (chain, key) = match source {
        TlsSource::Files { cert, key } => load_files(cert, key)?,
        TlsSource::SelfSigned { dir, hostname } => self_signed(dir, hostname)?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| StartError::Tls(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_files(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StartError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(StartError::Tls(format!(
            "--tls-cert {}: no CERTIFICATE block",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("--tls-key {}: {e}", key.display())))?;
    Ok((chain, key))
}

/// Loads or creates the dev CA in `dir`, writes nothing else, and issues a server certificate for
/// `hostname`. Returns the chain (server, CA) and the server key.
fn self_signed(
    dir: &Path,
    hostname: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StartError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| StartError::Tls(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| tls(&dir.display().to_string(), &e))?;
    let (ca_pem_path, ca_key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    // The issuer is rebuilt from the same parameters and the stored key, so its name and key identifier
    // match the stored ca.pem exactly and the chain verifies against it.
    let (ca_der, ca_key) = if ca_pem_path.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_pem_path)
            .map_err(|e| tls(&ca_pem_path.display().to_string(), &e))?;
        let key = std::fs::read_to_string(&ca_key_path)
            .map_err(|e| tls(&ca_key_path.display().to_string(), &e))?;
        let key =
            KeyPair::from_pem(&key).map_err(|e| tls(&ca_key_path.display().to_string(), &e))?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| tls(&ca_pem_path.display().to_string(), &e))?;
        (der, key)
    } else {
        let key = KeyPair::generate().map_err(|e| tls("CA key", &e))?;
        let ca = ca_params()
            .map_err(|e| tls("CA", &e))?
            .self_signed(&key)
            .map_err(|e| tls("CA", &e))?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())
            .map_err(|e| tls(&ca_key_path.display().to_string(), &e))?;
        std::fs::write(&ca_pem_path, ca.pem())
            .map_err(|e| tls(&ca_pem_path.display().to_string(), &e))?;
        (ca.der().clone(), key)
    };
    let issuer = Issuer::new(ca_params().map_err(|e| tls("CA", &e))?, ca_key);
    let server_key = KeyPair::generate().map_err(|e| tls("server key", &e))?;
    let mut params =
        CertificateParams::new(vec![hostname.to_owned()]).map_err(|e| tls("--tls-hostname", &e))?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let server = params
        .signed_by(&server_key, &issuer)
        .map_err(|e| tls("server certificate", &e))?;
    let key =
        PrivateKeyDer::try_from(server_key.serialize_der()).map_err(|e| tls("server key", &e))?;
    Ok((vec![server.der().clone(), ca_der], key))
}

/// The dev CA's parameters (the same at creation and at every reuse).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        "vettid-local-kms dev CA (never trust outside dev)",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = TlsSource::SelfSigned {
            dir: dir.path().to_owned(),
            hostname: "kms.vettid.test".into(),
        };
        server_config(&source).unwrap();
        let first = std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        server_config(&source).unwrap();
        assert_eq!(std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_or_mismatched_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSource::Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        assert!(matches!(server_config(&missing), Err(StartError::Tls(_))));

        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), a.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), b.signing_key.serialize_pem()).unwrap();
        assert!(matches!(server_config(&missing), Err(StartError::Tls(_))));
        std::fs::write(dir.path().join("key.pem"), a.signing_key.serialize_pem()).unwrap();
        server_config(&missing).unwrap();
    }
}
