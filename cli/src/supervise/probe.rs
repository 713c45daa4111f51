//! The liveness probe: one link connection to the enclave (role `tool`), kept open between
//! pings and re-opened when it drops. A ping proves more than `describe-enclaves` can: the
//! enclave's own service accepted a connection, spoke the protocol and answered.

use std::sync::Arc;
use std::time::Duration;

use vettid_link::{Address, Connection, ConnectionTask, Handler, LinkConfig, RequestCtx};
use vettid_protocol::{ErrorCode, ParentSide, Response, Role, ToEnclave, ToParent, WireError};

/// How long a closing probe connection may take to wind down.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// The supervisor serves nothing: any request from the enclave is refused.
struct ServeNothing;

impl Handler for ServeNothing {
    type Side = ParentSide;

    async fn handle(
        &self,
        _request: ToParent,
        _ctx: RequestCtx<ParentSide>,
    ) -> Result<Response, WireError> {
        Err(WireError::new(
            ErrorCode::UnknownRequest,
            "the supervisor serves no requests",
        ))
    }
}

/// Pings the enclave at one address.
pub struct Prober {
    address: Address,
    timeout: Duration,
    link: Option<(Connection<ParentSide>, ConnectionTask)>,
}

impl Prober {
    /// A prober for `address`; each ping (including a reconnect) is bounded by `timeout`.
    pub fn new(address: Address, timeout: Duration) -> Self {
        Self {
            address,
            timeout,
            link: None,
        }
    }

    /// One round trip. Errors are returned as text for logs: the supervisor only counts them.
    pub async fn ping(&mut self) -> Result<(), String> {
        let limit = self.timeout;
        let result = tokio::time::timeout(limit, self.ping_inner())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")));
        if result.is_err() {
            self.close().await;
        }
        result
    }

    async fn ping_inner(&mut self) -> Result<(), String> {
        if self.link.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.close().await;
        }
        if self.link.is_none() {
            let stream = vettid_link::connect(&self.address)
                .await
                .map_err(|e| format!("connect {}: {e}", self.address))?;
            let mut config = LinkConfig::new(Role::Tool);
            config.drain_grace = CLOSE_GRACE;
            config.hello_timeout = self.timeout;
            let link = Connection::establish(stream, config, Arc::new(ServeNothing))
                .await
                .map_err(|e| e.to_string())?;
            self.link = Some(link);
        }
        let Some((conn, _)) = &self.link else {
            return Err("no connection".into());
        };
        match conn.request(ToEnclave::Ping, self.timeout).await {
            Ok(Response::Pong) => Ok(()),
            Ok(other) => Err(format!("unexpected answer to ping: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Closes the connection, if any, and waits (bounded) for its task.
    pub async fn close(&mut self) {
        if let Some((conn, task)) = self.link.take() {
            conn.close("supervisor probe done");
            let _ = tokio::time::timeout(CLOSE_GRACE * 5, task).await;
        }
    }
}
