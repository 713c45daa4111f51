//! The enclave service: attestation today, the vault as it lands (trusted side of the link).
//!
//! This crate runs inside the Nitro Enclave and is the only place where keys, PINs and vault
//! records exist in plaintext. It owns: the accept loop on the parent link ([`server`]), the
//! routing of NATS subjects to handlers ([`router`]), the JSON shapes the deployed VettID apps and
//! Lambdas expect ([`reply`]) with the errors they may carry ([`error`]), and short-lived
//! attestation keys ([`keys`]).
//!
//! What it must never do: trust the parent. Every byte from the link is untrusted input, validated
//! once at decode into domain types (subjects, owner GUIDs, nonces); security decisions (replay,
//! freshness, authorisation) are made here, never delegated to the host. Errors sent back are
//! stable, non-leaking strings.
//!
//! The server core does not know the vault (STYLE rule 4): [`server::serve`] drives connections
//! and hands each request to a [`vettid_link::Handler`], implemented by [`processor::Processor`].

pub mod clock;
pub mod config;
pub mod control;
pub mod deadline;
pub mod error;
mod flag_group;
pub mod fleet;
pub mod handlers;
pub mod keys;
pub mod kms;
pub mod logfwd;
pub mod parent;
pub mod processor;
pub mod reply;
pub mod router;
pub mod sealing;
pub mod server;
pub mod state;
pub mod sysinfo;
pub mod trusted;
pub mod vault;

pub use config::EnclaveConfig;
pub use processor::Processor;
pub use state::EnclaveState;

/// Version reported in health replies and hellos.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
