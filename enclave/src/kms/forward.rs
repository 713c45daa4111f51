//! The in-enclave forwarder: 127.0.0.1:PORT → the parent's byte tunnel → the KMS endpoint (or, with
//! [`Forwarder::start_for`], the trusted store's table endpoint, through the same tunnel).
//!
//! The SDK connects to 127.0.0.1 (its resolver knows no other address). Each accepted connection
//! becomes one tunnel: connect to the parent's tunnel address, write
//! `vettid-tunnel-v1 HOST:PORT\n`, read one line back (`ok` → raw bytes both ways; `denied`,
//! `unreachable`, `busy` → close), then copy bytes until either side closes. The bytes are TLS
//! records: the parent learns which endpoint and how much, never what.
//!
//! Ownership: [`Forwarder`] owns the accept task, which owns every connection task. Dropping the
//! forwarder stops accepting and drops the connections in flight (the SDK sees a broken connection
//! and fails the call as `KMSUnavailable`); that only happens when the enclave shuts down.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use vettid_link::{Address, Stream};

/// The preamble's protocol word.
pub const PREAMBLE: &str = "vettid-tunnel-v1";
/// Tunnels open at once; the SDK's connection pool needs far fewer. At the cap the forwarder stops
/// accepting until one closes (the SDK's timeouts then apply), so a stuck parent cannot make the
/// enclave hold unbounded sockets.
pub const MAX_TUNNELS: usize = 64;
/// Time to connect to the parent and hear its answer to the preamble.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer line read from the parent (`unreachable\n` is 12 bytes).
pub const MAX_ANSWER_LEN: usize = 32;
/// Pause after a failed accept (EMFILE and friends) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Whom a forwarder (or the one-name resolver, [`super::http`]) serves: named in its log lines,
/// with the code an operator greps for when its tunnel fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Human name in messages.
    pub name: &'static str,
    /// The stable code of "cannot reach it".
    pub unavailable: &'static str,
}

impl Service {
    /// The KMS client.
    pub const KMS: Self = Self {
        name: "KMS",
        unavailable: "KMSUnavailable",
    };
    /// The trusted state store's DynamoDB client.
    pub const TRUSTED_STORE: Self = Self {
        name: "trusted store",
        unavailable: "TrustedStoreUnavailable",
    };
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Connecting to the parent's tunnel address failed.
    #[error("cannot connect to the parent's KMS tunnel: {0}")]
    Connect(#[source] io::Error),
    /// Writing the preamble or reading the answer failed.
    #[error("KMS tunnel handshake failed: {0}")]
    Io(#[source] io::Error),
    /// No answer within [`HANDSHAKE_TIMEOUT`].
    #[error("KMS tunnel handshake timed out")]
    Timeout,
    /// The parent refused this destination: its allow-list does not name the KMS endpoint. A
    /// configuration error on the host, not a transient failure.
    #[error("the parent denied the KMS tunnel (its allow-list does not name this endpoint)")]
    Denied,
    /// The parent could not reach the endpoint.
    #[error("the parent cannot reach the KMS endpoint")]
    Unreachable,
    /// The parent has too many tunnels open.
    #[error("the parent's KMS tunnel is busy")]
    Busy,
    /// Any other answer.
    #[error("unexpected answer from the parent's KMS tunnel")]
    Protocol,
}

impl TunnelError {
    /// Short, stable reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TunnelError::Connect(_) => "connect",
            TunnelError::Io(_) => "io",
            TunnelError::Timeout => "timeout",
            TunnelError::Denied => "denied",
            TunnelError::Unreachable => "unreachable",
            TunnelError::Busy => "busy",
            TunnelError::Protocol => "protocol",
        }
    }
}

/// Opens one tunnel to `target` (`HOST:PORT`) through the parent at `tunnel`.
///
/// # Errors
/// [`TunnelError`] for each way the handshake can fail.
pub async fn open_tunnel(tunnel: &Address, target: &str) -> Result<Stream, TunnelError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut stream = vettid_link::connect(tunnel)
            .await
            .map_err(TunnelError::Connect)?;
        stream
            .write_all(format!("{PREAMBLE} {target}\n").as_bytes())
            .await
            .map_err(TunnelError::Io)?;
        stream.flush().await.map_err(TunnelError::Io)?;
        match read_answer(&mut stream).await?.as_slice() {
            b"ok" => Ok(stream),
            b"denied" => Err(TunnelError::Denied),
            b"unreachable" => Err(TunnelError::Unreachable),
            b"busy" => Err(TunnelError::Busy),
            _ => Err(TunnelError::Protocol),
        }
    })
    .await
    .map_err(|_| TunnelError::Timeout)?
}

/// Reads the answer line byte by byte: nothing past the `\n` may be consumed, because the bytes
/// after `ok\n` belong to the TLS stream.
async fn read_answer(stream: &mut Stream) -> Result<Vec<u8>, TunnelError> {
    let mut line = Vec::with_capacity(MAX_ANSWER_LEN);
    loop {
        let byte = stream.read_u8().await.map_err(TunnelError::Io)?;
        if byte == b'\n' {
            return Ok(line);
        }
        if line.len() == MAX_ANSWER_LEN {
            return Err(TunnelError::Protocol);
        }
        line.push(byte);
    }
}

/// The running forwarder; see the module docs.
#[derive(Debug)]
pub struct Forwarder {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Binds 127.0.0.1:`port` (0: any free port) and starts forwarding each connection to
    /// `target` through `tunnel`.
    ///
    /// # Errors
    /// The bind error (port in use, or below 1024 without the privilege).
    pub async fn start(port: u16, tunnel: Address, target: String) -> io::Result<Self> {
        Self::start_for(Service::KMS, port, tunnel, target).await
    }

    /// [`Forwarder::start`] for another endpoint than KMS, logging as `service`.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start_for(
        service: Service,
        port: u16,
        tunnel: Address,
        target: String,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).await?;
        let local = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            service,
            listener,
            tunnel,
            Arc::from(target),
            stopped,
        ));
        Ok(Self { local, stop, task })
    }

    /// The address the SDK must connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the accept loop is still running (false only if it died, which it logs).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    service: Service,
    listener: TcpListener,
    tunnel: Address,
    target: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TUNNELS));
    let mut connections = JoinSet::new();
    loop {
        // Back-pressure: with every slot taken, stop accepting until a tunnel closes.
        let slot = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let local = match accepted {
            Ok((local, _)) => local,
            Err(e) => {
                tracing::warn!(service = service.name, error = %e, "forwarder: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let tunnel = tunnel.clone();
        let target = target.clone();
        connections.spawn(async move {
            let _slot = slot;
            forward(service, local, &tunnel, &target).await;
        });
        // Reap finished connections so the set does not grow with history.
        while connections.try_join_next().is_some() {}
    }
    tracing::debug!(
        service = service.name,
        open = connections.len(),
        "forwarder stopped"
    );
}

async fn forward(service: Service, mut local: TcpStream, tunnel: &Address, target: &str) {
    let _ = local.set_nodelay(true);
    let mut remote = match open_tunnel(tunnel, target).await {
        Ok(remote) => remote,
        Err(TunnelError::Denied) => {
            tracing::error!(
                code = service.unavailable,
                service = service.name,
                target,
                reason = "denied",
                "the parent refused the tunnel: configuration error (the parent's tunnel allow-list must name this endpoint)"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(code = service.unavailable, service = service.name, target, reason = e.reason(), error = %e, "tunnel could not be opened");
            return;
        }
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut remote).await {
        tracing::debug!(service = service.name, error = %e, "tunnel closed with an error");
    }
}
