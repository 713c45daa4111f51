//! The enclave side of AWS KMS's attested `Recipient` flow.
//!
//! When the enclave calls KMS `Decrypt`, `GenerateDataKey` or `GenerateRandom` with a `Recipient` (an NSM
//! attestation document whose `public_key` is a fresh RSA-2048 key), KMS does not return `Plaintext`: it returns
//! `CiphertextForRecipient`, a CMS EnvelopedData (RFC 5652) whose content-encryption key is wrapped to that RSA
//! key with RSAES-OAEP-SHA-256. This crate owns both halves of that on the enclave side: the recipient key
//! ([`RecipientKey`]: generation, its SubjectPublicKeyInfo for the attestation document, the subject key
//! identifier KMS addresses it by) and the opener ([`open_ciphertext_for_recipient`]), which walks the BER that
//! KMS sends with a strict, bounded parser of our own and decrypts with aws-lc-rs. With the `builder` feature
//! it also produces envelopes of exactly KMS's shape ([`build_ciphertext_for_recipient`]) for the local KMS.
//!
//! What this crate must never do:
//! - **do I/O or hold state**: it is a pure function of the key and the bytes handed to it.
//! - **use a non-constant-time RSA** (the `rsa` crate, RUSTSEC-2023-0071): the untrusted parent picks the
//!   ciphertexts and can time the enclave. aws-lc-rs is the only crypto backend.
//! - **fall back**: anything but RSAES-OAEP with SHA-256/MGF1-SHA-256 key transport and AES-256-CBC content is
//!   refused, PKCS#1 v1.5 in particular (VettID v1 fell back to it).
//! - **echo secret material** in an error or a `Debug` output: errors carry static descriptions only.
//! - **mistake an opened envelope for proof of origin**: anyone holding the public key can build an envelope.
//!   The plaintext is KMS's only because the enclave's TLS session to KMS delivered it.

mod ber;
#[cfg(feature = "builder")]
mod build;
mod cms;
mod error;
mod key;
mod open;

#[cfg(feature = "builder")]
pub use build::build_ciphertext_for_recipient;
pub use error::RecipientError;
pub use key::{subject_key_identifier, RecipientKey, SKI_LEN};
pub use open::open_ciphertext_for_recipient;
pub use zeroize::Zeroizing;

/// Largest `CiphertextForRecipient` accepted, checked before any parsing.
///
/// KMS returns at most 4096 bytes of plaintext (`Decrypt`), wrapped in about 500 bytes of envelope; 64 KiB is
/// far above anything KMS sends while bounding what a hostile parent can make the enclave walk.
pub const MAX_INPUT_LEN: usize = 64 * 1024;

/// Deepest nesting of ASN.1 elements accepted. The deepest path in a KMS envelope is 11 levels
/// (the MGF1 hash's NULL parameter); the bound keeps the recursive indefinite-length scan shallow.
pub const MAX_DEPTH: usize = 16;
