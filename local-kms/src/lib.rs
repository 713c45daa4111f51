//! A local stand-in for AWS KMS, for dev and tests: the KMS JSON 1.1 protocol over plain HTTP on loopback.
//!
//! It owns what the enclave needs from KMS and nothing more: symmetric keys in a local JSON file (CreateKey,
//! DescribeKey, EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion), Encrypt/Decrypt with the
//! encryption context bound like KMS binds it, GenerateDataKey and GenerateRandom, the real exception names,
//! and the **attested `Recipient` behaviour**: a request carrying an NSM attestation document is verified
//! with `vettid-attestation` (the AWS root, plus the dev mock NSM's root when configured), its PCR0 is
//! checked against the key's allow-list, and the plaintext goes back only as `CiphertextForRecipient` (CMS
//! EnvelopedData in KMS's exact BER shape, from `vettid-recipient`), never as `Plaintext`. `--ignore-recipient`
//! turns that off to imitate moto, so the enclave's downgrade refusal can be tested.
//!
//! Every key has a key policy (GetKeyPolicy, PutKeyPolicy, CreateKey's `Policy`) that is evaluated for every
//! operation on the key, and an account: requests are attributed to an account by their SigV4 access key id
//! (`--credential-account`), bare key ids and aliases resolve in the caller's account, as in AWS. So a test
//! can play a host lending credentials of its own account, with its own key and alias (see `policy`).
//!
//! HTTPS is optional (`tls`): with a certificate for the endpoint's host name, the enclave's KMS client is
//! tested exactly as it talks to AWS, TLS verified inside the enclave, through the parent's byte tunnel.
//!
//! What it must never do: listen on anything but loopback (there is no authentication: SigV4 signatures are
//! accepted unchecked), run in production (it is not a KMS: keys sit in a file), return a plaintext next to a
//! `CiphertextForRecipient`, or accept an attestation document it could not verify.

pub mod blob;
pub mod config;
pub mod error;
pub mod kms;
mod ops;
pub mod policy;
pub mod server;
pub mod store;
pub mod tls;

pub use config::TlsSource;
pub use config::{Config, Settings};
pub use error::{KmsError, StartError};
pub use kms::Kms;
pub use server::{serve, serve_tls};
