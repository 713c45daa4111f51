//! Optional TLS, so the enclave's KMS client can be tested the way it talks to AWS: HTTPS verified
//! for a host name, through the parent's tunnel.
//!
//! Two sources: PEM files (`--tls-cert`, `--tls-key`), or a dev CA made on the spot
//! (`--tls-self-signed DIR --tls-hostname NAME`): `DIR/ca.pem` + `DIR/ca.key` are created on first use
//! and reused afterwards (so an enclave started with `--kms-ca-file DIR/ca.pem` keeps trusting a
//! restarted server), and a fresh server certificate for NAME is issued by that CA at every start.
//! rustls runs on aws-lc (the SDK's provider; never ring). Plain HTTP stays the default.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSource;
use crate::error::StartError;
use crate::store::write_private;

/// File name of the dev CA certificate in the `--tls-self-signed` directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the dev CA's private key (mode 0600) in the `--tls-self-signed` directory.
pub const CA_KEY_FILE: &str = "ca.key";

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

/// File names [`issue_files`] writes: the chain (server certificate, then the CA) and its key.
pub const ISSUED_CERT_FILE: &str = "cert.pem";
/// See [`ISSUED_CERT_FILE`] (mode 0600).
pub const ISSUED_KEY_FILE: &str = "key.pem";

/// Issues a server certificate for `hostname` from the dev CA in `ca_dir` (created on first use,
/// as for `--tls-self-signed`) and writes it to `out/cert.pem` (chain, leaf first) and
/// `out/key.pem` (PKCS#8, mode 0600): for another dev server that clients verify against the same
/// `ca.pem`, e.g. the DynamoDB stand-in for `dynamodb.vettid.test`.
///
/// # Errors
/// [`StartError::Tls`] for an unusable CA directory, host name or output directory.
pub fn issue_files(ca_dir: &Path, hostname: &str, out: &Path) -> Result<(), StartError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| StartError::Tls(format!("{what}: {e}"));
    crate::config::check_hostname(hostname).map_err(|e| tls("--name", &e))?;
    let (chain, key) = self_signed(ca_dir, hostname)?;
    std::fs::create_dir_all(out).map_err(|e| tls(&out.display().to_string(), &e))?;
    let mut pem = String::new();
    for cert in &chain {
        pem.push_str(&pem_block("CERTIFICATE", cert.as_ref()));
    }
    std::fs::write(out.join(ISSUED_CERT_FILE), pem)
        .map_err(|e| tls(&out.join(ISSUED_CERT_FILE).display().to_string(), &e))?;
    let key_pem = match &key {
        PrivateKeyDer::Pkcs8(k) => pem_block("PRIVATE KEY", k.secret_pkcs8_der()),
        _ => return Err(tls("server key", &"not PKCS#8")),
    };
    write_private(&out.join(ISSUED_KEY_FILE), key_pem.as_bytes())
        .map_err(|e| tls(&out.join(ISSUED_KEY_FILE).display().to_string(), &e))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
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
    use rustls::client::danger::ServerCertVerifier;

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
    fn a_certificate_for_another_name_comes_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dynamodb");
        issue_files(&dir.path().join("ca"), "dynamodb.vettid.test", &out).unwrap();
        let files = TlsSource::Files {
            cert: out.join(ISSUED_CERT_FILE),
            key: out.join(ISSUED_KEY_FILE),
        };
        server_config(&files).unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(out.join(ISSUED_CERT_FILE))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let ca = CertificateDer::from_pem_file(dir.path().join("ca").join(CA_CERT_FILE)).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca);
        // The leaf verifies for its name under the CA, and only for it.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let now = rustls_pki_types::UnixTime::now();
        let name = rustls_pki_types::ServerName::try_from("dynamodb.vettid.test").unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .unwrap();
        let other = rustls_pki_types::ServerName::try_from("kms.vettid.test").unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
            .is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(ISSUED_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A bad name is refused before anything is written.
        assert!(issue_files(&dir.path().join("ca"), "not a name", &dir.path().join("x")).is_err());
        assert!(!dir.path().join("x").exists());
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
