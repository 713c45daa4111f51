//! Client-side verifier for AWS Nitro Enclave attestation documents and signed PCR manifests.
//!
//! This crate is what the mobile and web apps run to decide whether to trust an enclave, so it owns the whole
//! decision: COSE_Sign1/CBOR decoding, the certificate chain to the pinned AWS root, the ES384 signature,
//! freshness, debug-mode rejection and the PCR policy ([`verify`]), plus the signed list of accepted PCR sets
//! that apps download ([`manifest`]). It must stay pure: no I/O, no clock (the caller passes `now`), no C or
//! assembly dependencies (it is compiled for iOS, Android and wasm), no `unsafe`, and it must never trust
//! anything a document carries about itself (`cabundle[0]` included) or fail open on an empty policy.

mod cbor;
mod chain;
mod cose;
mod document;
mod error;
pub mod jcs;
pub mod manifest;
mod policy;
mod sigalg;
mod time;
mod verify;

pub use chain::{CertInfo, AWS_NITRO_ROOT_DER, AWS_NITRO_ROOT_SHA256_HEX};
pub use document::{
    parse, Document, MAX_CABUNDLE_LEN, MAX_CERT_BYTES, MAX_DOCUMENT_BYTES,
    MAX_OPTIONAL_FIELD_BYTES, MAX_PCR_INDEX,
};
pub use error::{Error, Malformed};
pub use policy::{PcrSet, Policy};
pub use verify::{verify, Verified};
