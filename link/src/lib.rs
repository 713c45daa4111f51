//! The link between the parent and the enclave: where bytes travel and how requests share it.
//!
//! Two layers live here, above the pure frame codec of `vettid-protocol`:
//!
//! * [`transport`] is the one seam that knows about sockets. An [`Address`] names a vsock, Unix
//!   or TCP endpoint; nothing above this module names a transport. Production uses vsock; dev and
//!   tests use Unix sockets or loopback TCP. The vsock case is compiled everywhere but only its
//!   address handling is tested here: opening a vsock connection on a development machine would
//!   reach that machine's own host.
//! * [`connection`] is the multiplexed RPC connection both sides use: hello exchange, requests
//!   with deadlines matched by id in both directions at once, bounded concurrent serving,
//!   heartbeats, and prompt failure of every waiter when the peer dies.
//!
//! This crate trusts nothing it reads: every frame goes through the codec's size cap and typed
//! decode, and a malformed frame is answered, not obeyed.

pub mod address;
pub mod connection;
mod driver;
pub mod host;
pub mod transport;

pub use address::{Address, AddressError, VMADDR_CID_ANY};
pub use connection::{
    CloseReason, Connection, ConnectionStats, Handler, LinkConfig, LinkError, RequestCtx, RpcError,
};
pub use driver::ConnectionTask;
pub use host::{dev_enclave_id, runtime};
pub use transport::{connect, Listener, Stream};
