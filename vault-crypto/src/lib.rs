//! Pure cryptography of the enclave vault: the VettID v1 app-facing formats, DEK derivation, the PIN
//! verifier and the at-rest object format.
//!
//! What this crate owns:
//!
//! - [`legacy_ecies`]: how v1 apps encrypt a PIN to the enclave (X25519 → HKDF → ChaCha20-Poly1305).
//! - [`domain`]: UTK payloads, the credential-to-CEK blob and secret values returned to an app-chosen
//!   `reply_key` (X25519 → HKDF(domain salt) → XChaCha20-Poly1305).
//! - [`phc`]: validation (never evaluation) of the app's Argon2id PHC password hash.
//! - [`dek`]: PIN rules and DEK = HMAC(M, Argon2id(PIN, SHA-256(owner ‖ M))), exactly as v1.
//! - [`dek_aead`]: v1's AES-256-GCM under the DEK (`encrypted_credential`, v1 `vault_state.enc`).
//! - [`pin_verifier`]: the check v1 lacked, so a wrong PIN is rejected warm or cold (G2).
//! - [`v2`]: the v2 envelope (requests bound to op, owner and key; replies only the requester opens).
//! - [`sealed`]: the versioned AES-256-GCM object format bound to (vault, name, version) (G11, G18).
//!
//! The app-facing formats are frozen by deployed apps; known-answer vectors in `tests/vectors/` pin them
//! and an independent Python implementation (`tests/independent.py`) recomputes every vector.
//!
//! What it must never do: I/O of any kind, logging, or printing a secret. Every secret lives in a
//! zeroizing container; every type that holds one implements `Debug` by hand and prints `<redacted>`;
//! error values carry lengths and parameter values, never key, PIN or plaintext bytes. Comparisons of
//! secrets are constant time. Algorithms are fixed in code, never chosen by input (G11).
//!
//! Backends: aws-lc-rs for X25519, HKDF, HMAC, SHA-256, ChaCha20-Poly1305, AES-256-GCM and randomness;
//! RustCrypto `chacha20poly1305` only for XChaCha20-Poly1305 (absent from aws-lc-rs) and `argon2` for
//! Argon2id, both of the digest 0.10 generation the workspace already uses.

pub mod dek;
pub mod dek_aead;
pub mod domain;
pub mod legacy_ecies;
pub mod phc;
pub mod pin_verifier;
pub mod sealed;
pub mod secret;
pub mod v2;
pub mod wrap;
pub mod x25519;

#[cfg(test)]
mod vectors;

pub use dek::{derive_dek, KdfError, KdfParams, Pin, PinError};
pub use dek_aead::DekAeadError;
pub use domain::Domain;
pub use phc::{PhcError, PhcHash};
pub use pin_verifier::PinVerifier;
pub use sealed::{ObjectId, SealedError, SealedObject};
pub use secret::{Dek, Material};
pub use x25519::EnvelopeError;

/// Any error of this crate, for callers that handle them together. Each module's own enum stays the
/// precise type; this one only gathers them (`?` converts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An app-facing envelope ([`legacy_ecies`], [`domain`]).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A PHC password hash.
    #[error(transparent)]
    Phc(#[from] PhcError),
    /// A PIN.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The DEK derivation.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// A blob encrypted under the DEK ([`dek_aead`]).
    #[error(transparent)]
    DekAead(#[from] DekAeadError),
    /// A stored object.
    #[error(transparent)]
    Sealed(#[from] SealedError),
    /// A stored PIN verifier.
    #[error(transparent)]
    Verifier(#[from] pin_verifier::VerifierLengthError),
}
