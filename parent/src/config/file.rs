//! The TOML file's shape, parsed strictly (`deny_unknown_fields`), with its defaults. Nothing here
//! is validated: [`super::Config::load`] turns these into the validated types.

use std::path::PathBuf;

use serde::Deserialize;

use super::attestation::AttestationFile;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct File {
    pub(super) enclave_id: Option<String>,
    pub(super) nats: NatsFile,
    pub(super) enclave: EnclaveFile,
    pub(super) http: HttpFile,
    pub(super) limits: LimitsFile,
    pub(super) attestation: AttestationFile,
    pub(super) storage: crate::storage::config::StorageFile,
    pub(super) kms: Option<crate::kms::config::KmsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct NatsFile {
    pub(super) url: String,
    pub(super) credentials_file: Option<PathBuf>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) require_tls: bool,
    pub(super) queue_group: String,
    pub(super) name: String,
    pub(super) enrollment_stream: crate::stream::config::EnrollmentStreamFile,
}

impl Default for NatsFile {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            tls_ca_file: None,
            require_tls: false,
            queue_group: "vettid-enclave".into(),
            name: "vettid-parent".into(),
            enrollment_stream: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct EnclaveFile {
    pub(super) address: String,
    pub(super) request_timeout_ms: u64,
    pub(super) connect_timeout_ms: u64,
    pub(super) reconnect_initial_ms: u64,
    pub(super) reconnect_max_ms: u64,
    pub(super) max_frame_len: usize,
}

impl Default for EnclaveFile {
    fn default() -> Self {
        Self {
            address: "vsock://16:5000".into(),
            request_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            reconnect_initial_ms: 50,
            reconnect_max_ms: 1_000,
            max_frame_len: vettid_protocol::DEFAULT_MAX_FRAME_LEN,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HttpFile {
    pub(super) listen: String,
}

impl Default for HttpFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LimitsFile {
    pub(super) max_in_flight: usize,
    pub(super) shutdown_grace_ms: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            shutdown_grace_ms: 10_000,
        }
    }
}
