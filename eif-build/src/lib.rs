//! `eif-build`: the build tool that turns a kernel, a command line and the `vettid-enclave` binary into a
//! reproducible Nitro enclave image (EIF), tells which PCRs it will report, and maintains the signed PCR
//! manifest the apps and the parent use to decide which enclaves to trust.
//!
//! It owns: the deterministic ramdisk layout and cpio writer ([`cpio`], [`ramdisk`]), the call into the
//! reference EIF crate with deterministic metadata ([`eif`]), `describe` ([`describe`]) and the manifest
//! commands ([`manifest_cmd`]). It must never: take a timestamp from the clock or a value from a random
//! source into the image (everything comes from the inputs or `SOURCE_DATE_EPOCH`), reimplement the
//! manifest's canonical signing bytes (that is `vettid-attestation`'s), or leak its OpenSSL / AWS SDK
//! dependencies into the main workspace (it is its own workspace with its own lockfile).

pub mod cpio;
pub mod describe;
pub mod eif;
mod input;
pub mod kms;
pub mod manifest_cmd;
pub mod pcr;
pub mod ramdisk;
