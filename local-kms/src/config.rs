//! Validated configuration: everything is checked before the server binds, and every problem is reported at
//! once (the binary exits 64 on any).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::StartError;

/// Default AWS region in ARNs (what the tests and dev scripts configure the SDK with).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default account id in ARNs; moto and localstack use the same placeholder.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// Settings as given (flags or a test's literal values), before validation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Where to listen; must be a loopback address (plain HTTP, no authentication).
    pub listen: Option<SocketAddr>,
    /// The JSON key file (created on first write).
    pub key_file: PathBuf,
    /// PEM file of an extra attestation root (the dev mock NSM's `mock-root.pem`).
    pub attestation_root: Option<PathBuf>,
    /// Hex PCR0 values accepted for keys without their own list.
    pub allow_pcr0: Vec<String>,
    /// Behave like moto: ignore `Recipient` and key policies, and return `Plaintext`.
    pub ignore_recipient: bool,
    /// Refuse Decrypt, GenerateDataKey and GenerateRandom without a `Recipient`, for every key.
    pub require_recipient: bool,
    /// Key ids to create at start-up if the key file lacks them: `ID` (in `account`) or
    /// `ID@ACCOUNT`.
    pub ensure_keys: Vec<String>,
    /// `ACCESS_KEY_ID=ACCOUNT`: requests signed with this access key id come from ACCOUNT (others from
    /// `account`). Lets a test play a host lending credentials of its own account.
    pub credential_accounts: Vec<String>,
    /// Misbehave: answer every Encrypt, Decrypt and GenerateDataKey with this `KeyId` instead of the key's
    /// ARN (a real KMS never does; tests the enclave's KeyId check).
    pub misreport_key_id: Option<String>,
    /// Region in ARNs.
    pub region: Option<String>,
    /// Account id in ARNs.
    pub account: Option<String>,
    /// PEM certificate chain to serve HTTPS with (needs `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Directory of a dev CA (`ca.pem`, `ca.key`; created if absent) that issues the server certificate for
    /// `tls_hostname` at start-up (needs `tls_hostname`).
    pub tls_self_signed: Option<PathBuf>,
    /// Host name the self-signed server certificate is for (what the enclave's endpoint URL names).
    pub tls_hostname: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (loopback).
    pub listen: SocketAddr,
    /// The key file.
    pub key_file: PathBuf,
    /// The extra trusted root, DER (the AWS root is always trusted by `vettid-attestation`).
    pub attestation_root_der: Option<Vec<u8>>,
    /// Global PCR0 allow-list (raw bytes).
    pub allow_pcr0: Vec<Vec<u8>>,
    /// See [`Settings::ignore_recipient`].
    pub ignore_recipient: bool,
    /// See [`Settings::require_recipient`].
    pub require_recipient: bool,
    /// See [`Settings::ensure_keys`]: (key id, account).
    pub ensure_keys: Vec<(String, Option<String>)>,
    /// See [`Settings::credential_accounts`]: (access key id, account).
    pub credential_accounts: Vec<(String, String)>,
    /// See [`Settings::misreport_key_id`].
    pub misreport_key_id: Option<String>,
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs.
    pub account: String,
    /// HTTPS, when configured; plain HTTP otherwise.
    pub tls: Option<TlsSource>,
}

impl Config {
    /// Validates `settings`, reading the attestation root file.
    ///
    /// # Errors
    /// [`StartError::Config`] listing every invalid value.
    pub fn from_settings(settings: Settings) -> Result<Self, StartError> {
        let mut errors = Vec::new();
        let listen = settings
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        if !listen.ip().is_loopback() {
            errors.push(format!(
                "--listen {listen}: only loopback addresses (plain HTTP, no authentication)"
            ));
        }
        let attestation_root_der = match &settings.attestation_root {
            None => None,
            Some(path) => match std::fs::read_to_string(path) {
                Ok(pem) => pem_certificate(&pem)
                    .map_err(|e| errors.push(format!("--attestation-root {}: {e}", path.display())))
                    .ok(),
                Err(e) => {
                    errors.push(format!("--attestation-root {}: {e}", path.display()));
                    None
                }
            },
        };
        let mut allow_pcr0 = Vec::new();
        for value in &settings.allow_pcr0 {
            match parse_pcr(value) {
                Ok(pcr) => allow_pcr0.push(pcr),
                Err(e) => errors.push(format!("--allow-pcr0 {value}: {e}")),
            }
        }
        let mut ensure_keys = Vec::new();
        for spec in &settings.ensure_keys {
            let (id, account) = match spec.split_once('@') {
                Some((id, account)) => (id, Some(account)),
                None => (spec.as_str(), None),
            };
            let checked = check_key_id(id).and(account.map_or(Ok(()), check_account));
            match checked {
                Ok(()) => ensure_keys.push((id.to_owned(), account.map(str::to_owned))),
                Err(e) => errors.push(format!("--ensure-key {spec}: {e}")),
            }
        }
        let mut credential_accounts = Vec::new();
        for spec in &settings.credential_accounts {
            match spec.split_once('=') {
                Some((akid, account)) if !akid.is_empty() && check_account(account).is_ok() => {
                    credential_accounts.push((akid.to_owned(), account.to_owned()))
                }
                _ => errors.push(format!(
                    "--credential-account {spec}: expected ACCESS_KEY_ID=ACCOUNT (12 digits)"
                )),
            }
        }
        if let Some(account) = &settings.account {
            if let Err(e) = check_account(account) {
                errors.push(format!("--account {account}: {e}"));
            }
        }
        if settings.ignore_recipient && settings.require_recipient {
            errors.push("--ignore-recipient and --require-recipient contradict each other".into());
        }
        if settings.key_file.as_os_str().is_empty() {
            errors.push("--key-file is required".into());
        }
        let tls = tls_source(&settings, &mut errors);
        if !errors.is_empty() {
            return Err(StartError::Config(errors));
        }
        Ok(Self {
            listen,
            key_file: settings.key_file,
            attestation_root_der,
            allow_pcr0,
            ignore_recipient: settings.ignore_recipient,
            require_recipient: settings.require_recipient,
            ensure_keys,
            credential_accounts,
            misreport_key_id: settings.misreport_key_id,
            region: settings.region.unwrap_or_else(|| DEFAULT_REGION.into()),
            account: settings.account.unwrap_or_else(|| DEFAULT_ACCOUNT.into()),
            tls,
        })
    }
}

/// The TLS flags as one source: `--tls-cert` with `--tls-key`, or `--tls-self-signed` with `--tls-hostname`,
/// or none of them.
fn tls_source(settings: &Settings, errors: &mut Vec<String>) -> Option<TlsSource> {
    let files = (settings.tls_cert.clone(), settings.tls_key.clone());
    let dev = (
        settings.tls_self_signed.clone(),
        settings.tls_hostname.clone(),
    );
    let any_files = files.0.is_some() || files.1.is_some();
    let any_dev = dev.0.is_some() || dev.1.is_some();
    if any_files && any_dev {
        errors.push(
            "--tls-cert/--tls-key and --tls-self-signed/--tls-hostname exclude each other".into(),
        );
        return None;
    }
    match (files, dev) {
        ((Some(cert), Some(key)), _) => Some(TlsSource::Files { cert, key }),
        (_, (Some(dir), Some(hostname))) => {
            if let Err(e) = check_hostname(&hostname) {
                errors.push(format!("--tls-hostname {hostname:?}: {e}"));
                return None;
            }
            Some(TlsSource::SelfSigned { dir, hostname })
        }
        ((None, None), (None, None)) => None,
        ((Some(_), None), _) => {
            errors.push("--tls-cert needs --tls-key".into());
            None
        }
        ((None, Some(_)), _) => {
            errors.push("--tls-key needs --tls-cert".into());
            None
        }
        (_, (Some(_), None)) => {
            errors.push("--tls-self-signed needs --tls-hostname".into());
            None
        }
        (_, (None, Some(_))) => {
            errors.push("--tls-hostname needs --tls-self-signed".into());
            None
        }
    }
}

/// A DNS name for the self-signed certificate: labels of `[A-Za-z0-9-]`, dot-separated.
pub(crate) fn check_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err("not a DNS host name".into())
    }
}

/// A PCR value in hex: 32, 48 (SHA-384, what Nitro uses) or 64 bytes, not all zero (debug enclaves are
/// never allowed).
pub fn parse_pcr(value: &str) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(value.trim()).map_err(|_| "not hex".to_string())?;
    if !matches!(bytes.len(), 32 | 48 | 64) {
        return Err(format!("{} bytes, expected 32, 48 or 64", bytes.len()));
    }
    if bytes.iter().all(|&b| b == 0) {
        return Err("all zeros (a debug enclave)".into());
    }
    Ok(bytes)
}

/// Key ids we create: 1 to 64 of `[A-Za-z0-9-]` (KMS's own are UUIDs), so they are safe in ARNs and logs.
pub fn check_key_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("key id must be 1-64 characters of A-Z, a-z, 0-9 and '-'".into());
    }
    Ok(())
}

/// An AWS account id: 12 digits.
pub fn check_account(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("account must be 12 digits".into())
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM file.
fn pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::{Error, PemObject};
    match rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()) {
        Ok(der) => Ok(der.to_vec()),
        Err(Error::NoItemsFound) => Err("no CERTIFICATE block".into()),
        Err(Error::MissingSectionEnd { .. }) => Err("unterminated CERTIFICATE block".into()),
        Err(_) => Err("CERTIFICATE block is not base64".into()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_reported_at_once() {
        let settings = Settings {
            listen: Some("0.0.0.0:1".parse().unwrap()),
            allow_pcr0: vec!["zz".into(), "00".repeat(48)],
            ensure_keys: vec!["bad id".into()],
            ignore_recipient: true,
            require_recipient: true,
            attestation_root: Some("/nonexistent/root.pem".into()),
            ..Settings::default()
        };
        let StartError::Config(errors) = Config::from_settings(settings).unwrap_err() else {
            panic!("expected a config error");
        };
        assert_eq!(errors.len(), 7, "{errors:#?}");
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        let with = |f: fn(&mut Settings)| {
            let mut settings = Settings {
                key_file: "/tmp/k.json".into(),
                ..Settings::default()
            };
            f(&mut settings);
            Config::from_settings(settings)
        };
        assert!(with(|_| {}).unwrap().tls.is_none());
        assert!(with(|s| s.tls_cert = Some("c.pem".into())).is_err());
        assert!(with(|s| s.tls_key = Some("k.pem".into())).is_err());
        assert!(with(|s| s.tls_self_signed = Some("/tmp/d".into())).is_err());
        assert!(with(|s| s.tls_hostname = Some("kms.vettid.test".into())).is_err());
        assert!(with(|s| {
            s.tls_self_signed = Some("/tmp/d".into());
            s.tls_hostname = Some("bad name".into());
        })
        .is_err());
        assert!(with(|s| {
            s.tls_cert = Some("c.pem".into());
            s.tls_key = Some("k.pem".into());
            s.tls_self_signed = Some("/tmp/d".into());
            s.tls_hostname = Some("kms.vettid.test".into());
        })
        .is_err());
        let dev = with(|s| {
            s.tls_self_signed = Some("/tmp/d".into());
            s.tls_hostname = Some("kms.vettid.test".into());
        })
        .unwrap();
        assert_eq!(
            dev.tls,
            Some(TlsSource::SelfSigned {
                dir: "/tmp/d".into(),
                hostname: "kms.vettid.test".into()
            })
        );
    }

    #[test]
    fn pcr_values_are_checked() {
        assert!(parse_pcr(&"ab".repeat(48)).is_ok());
        assert!(parse_pcr(&"ab".repeat(47)).is_err());
        assert!(parse_pcr(&"00".repeat(48)).is_err());
    }
}
