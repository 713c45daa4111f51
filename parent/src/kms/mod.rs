//! The parent's half of the enclave's KMS path.
//!
//! The enclave runs the real `aws-sdk-kms` client itself and TLS ends inside it; the enclave has
//! no network, so the parent provides two things and nothing more:
//!
//! - a byte tunnel ([`tunnel`], wire format in [`preamble`]), like AWS's vsock-proxy: the enclave
//!   names a `HOST:PORT`, and only a target on `kms.allow` ([`target`]) is connected. The parent
//!   relays TLS ciphertext it cannot read or alter undetected;
//! - the AWS credentials the enclave signs its calls with ([`credentials`]): the parent's own
//!   instance-role credentials, so handing them over grants the enclave nothing the host lacks.
//!
//! What stays out of here: any KMS request or response parsing, any key material. KMS encrypts
//! its answers to the enclave's attested recipient key; the parent could drop or delay them, and
//! nothing more.

pub mod config;
pub mod credentials;
pub mod preamble;
pub mod target;
pub mod tunnel;

pub use config::KmsConfig;
pub use credentials::{CredentialSource, CredentialSourceError};
pub use target::{AllowList, Target, TargetError};
pub use tunnel::TunnelServer;
