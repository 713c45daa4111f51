//! Test harness: real processes (`nats-server`, `vettid-enclave`, `vettid-parent`), real sockets,
//! loopback and Unix sockets only, every process killed on drop.
//!
//! The binaries are the ones cargo built next to the test executable (`target/<profile>/`). The
//! enclave must be a dev build (mock NSM): `scripts/test` builds them with
//! `cargo build --bins --features vettid-enclave/dev` before running the tests, and the harness
//! refuses a production enclave binary with a message saying so. Nothing here opens a vsock socket.

#![allow(missing_docs, clippy::print_stderr)]

pub mod app;
pub mod dynamo;
pub mod faults;
pub mod fleet;
pub mod http;
pub mod kms;
pub mod load;
pub mod proc;
pub mod replies;
pub mod system;
pub mod vault_client;

pub use proc::{bin_path, free_port, Child, NatsServer};
pub use system::{request_json, System, SystemOptions, TrustedStoreInfo};
