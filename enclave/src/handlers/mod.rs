//! One file per request family (STYLE rule 12). Each handler decodes its arguments, applies
//! them, and returns the reply object or a [`crate::error::ClientError`].

pub mod attestation;
#[cfg(feature = "dev")]
pub mod dev;
pub mod health;
