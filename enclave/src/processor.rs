//! The request processor: turns one link request into one answer. The server loop knows nothing
//! of what happens here, and tests call [`Processor::nats`] directly without a socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use vettid_link::{Handler, RequestCtx};
use vettid_nsm::AttestationRequest;
use vettid_protocol::{
    EnclaveSide, ErrorCode, NatsMessage, NatsReply, Publication, Response, ToEnclave, WireError,
};

use crate::control;
use crate::error::ClientError;
use crate::handlers;
use crate::reply::{self, Body, ReplyCtx};
use crate::router::{self, Route};
use crate::state::EnclaveState;

/// Serves the parent's requests.
#[derive(Clone)]
pub struct Processor {
    state: Arc<EnclaveState>,
    /// One permit per running vault task ([`crate::EnclaveConfig::max_vault_tasks`]); a task
    /// holds its permit until it ends, even after the request that started it was dropped.
    vault_tasks: Arc<Semaphore>,
}

impl Processor {
    /// A processor over `state`.
    pub fn new(state: Arc<EnclaveState>) -> Self {
        let vault_tasks = Arc::new(Semaphore::new(state.config.max_vault_tasks.max(1)));
        Self { state, vault_tasks }
    }

    /// Shared state (for the server's housekeeping).
    pub fn state(&self) -> &Arc<EnclaveState> {
        &self.state
    }

    /// Handles one NATS message and says what to publish.
    pub async fn nats(&self, msg: NatsMessage) -> NatsReply {
        self.nats_until(msg, None).await
    }

    /// [`Self::nats`] for a request the parent waits for until `deadline` (from the link
    /// frame): vault work stops starting new waits in time to answer first
    /// ([`crate::deadline`]).
    pub async fn nats_until(
        &self,
        msg: NatsMessage,
        deadline: Option<std::time::Instant>,
    ) -> NatsReply {
        let _in_flight = self.state.stats.enter();
        let deadline = deadline.map(crate::deadline::before);
        let route = router::route(&msg.subject);
        let request = reply::parse_object(&msg.payload);
        let (ctx, publish_to) = match &route {
            Route::Vault { owner, op } => (
                ReplyCtx::from_request(request.as_ref().ok(), Some(op)),
                Some(format!("OwnerSpace.{owner}.forApp.{op}.response")),
            ),
            _ => (ReplyCtx::from_request(request.as_ref().ok(), None), None),
        };
        let result = self.dispatch(&route, request, &msg.payload, deadline).await;
        let body = match result {
            Ok(obj) => reply::ok(obj, &ctx),
            Err(err) => {
                self.state.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(subject = %msg.subject, code = err.code(), "request refused");
                reply::error(err, &ctx)
            }
        };
        let publish = publish_to
            .map(|subject| {
                vec![Publication {
                    subject,
                    payload: body.clone(),
                }]
            })
            .unwrap_or_default();
        NatsReply {
            reply: msg.reply.is_some().then_some(body),
            publish,
        }
    }

    async fn dispatch(
        &self,
        route: &Route,
        request: Result<Map<String, Value>, ClientError>,
        payload: &[u8],
        deadline: Option<std::time::Instant>,
    ) -> Result<Body, ClientError> {
        // After a signed `drain`, new vault work is refused; health and control still answer.
        if !self.state.control.phase().accepts_vault_work()
            && matches!(
                route,
                Route::Vault { .. } | Route::Peer { .. } | Route::LambdaAttestation
            )
        {
            return Err(ClientError::Draining);
        }
        match route {
            // Health answers whatever the payload (Lambdas send `{}`, operators send nothing).
            Route::Health => Ok(Body::typed(handlers::health::handle(&self.state))),
            Route::LambdaAttestation => {
                handlers::attestation::handle(self.state.attester(), None, &request?)
                    .await
                    .map(Body::from)
            }
            Route::Vault { owner, op } => match op.as_str() {
                "attestation" => {
                    handlers::attestation::handle(self.state.attester(), Some(owner), &request?)
                        .await
                        .map(Body::from)
                }
                _ => self.vault(owner, op, request?, deadline).await,
            },
            Route::UnsignedReset => Err(ClientError::UnsignedReset),
            // Parsed again strictly from the raw bytes: duplicate keys must be refused, not resolved.
            Route::Control { scope, command } => self.control(scope, command, payload).await,
            Route::Peer { .. } => Err(ClientError::NotSupported),
            #[cfg(feature = "dev")]
            Route::DevSleep => handlers::dev::sleep(&request?).await.map(Body::from),
            #[cfg(not(feature = "dev"))]
            Route::DevSleep => Err(ClientError::UnknownSubject),
            Route::BadOwner => Err(ClientError::InvalidOwner),
            Route::Unknown => Err(ClientError::UnknownSubject),
        }
    }
}

impl Processor {
    /// Runs a vault operation in its own task. If the parent's deadline passes, the link drops
    /// the request future, but the operation still runs to its end: a PIN attempt already on
    /// record is evaluated (and reset when correct), and a write the store accepted is reflected
    /// in memory. Cancelling half-way would leave both inconsistent. Instead the operation knows
    /// the parent's `deadline` and starts no new wait after it ([`crate::deadline`]), so its
    /// answer comes first.
    ///
    /// The tasks are bounded ([`crate::EnclaveConfig::max_vault_tasks`]): past the bound the
    /// request is answered `busy` and nothing is started, so requests whose deadline passed
    /// cannot pile up tasks that each hold their request.
    async fn vault(
        &self,
        owner: &router::OwnerSpace,
        op: &str,
        request: Map<String, Value>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Body, ClientError> {
        let Ok(permit) = self.vault_tasks.clone().try_acquire_owned() else {
            tracing::warn!(op, "vault task bound reached; answering busy");
            return Err(ClientError::Busy);
        };
        let state = self.state.clone();
        let (owner, op) = (owner.clone(), op.to_owned());
        tokio::spawn(crate::deadline::scope(deadline, async move {
            let result =
                crate::vault::dispatch(state.vault_services(), &owner, &op, &request).await;
            drop(permit);
            result
        }))
        .await
        .unwrap_or(Err(ClientError::Internal))
    }

    /// Verifies and runs a signed control command, with the admin that fits this enclave:
    /// without a sealer no vault can exist here, so only the attestation keys are the user's.
    async fn control(
        &self,
        scope: &router::ControlScope,
        command: &str,
        payload: &[u8],
    ) -> Result<Body, ClientError> {
        let state: &EnclaveState = &self.state;
        let health = || Body::typed(handlers::health::handle(state));
        if state.sealer.is_some() {
            let admin = crate::vault::VaultAdminImpl::new(state.vault_services());
            control::handle(&state.control, &admin, health, scope, command, payload).await
        } else {
            let admin = control::InEnclaveAdmin::new(&state.keys);
            control::handle(&state.control, &admin, health, scope, command, payload).await
        }
    }

    /// A document for the parent's own check of this enclave: its nonce, nothing else.
    async fn attest_for_parent(&self, nonce: bytes::Bytes) -> Result<Response, WireError> {
        if nonce.is_empty() || nonce.len() > vettid_nsm::MAX_NONCE_LEN {
            return Err(WireError::new(
                ErrorCode::Rejected,
                "nonce must be 1 to 512 bytes",
            ));
        }
        let req = AttestationRequest {
            nonce: Some(nonce.to_vec()),
            public_key: None,
            user_data: None,
        };
        let nsm = self.state.nsm.clone();
        let document = tokio::task::spawn_blocking(move || nsm.attest(&req))
            .await
            .map_err(|_| WireError::new(ErrorCode::Internal, "attestation unavailable"))?
            .map_err(|e| {
                tracing::error!(error = %e, "NSM attestation for the parent failed");
                WireError::new(ErrorCode::Internal, "attestation unavailable")
            })?;
        Ok(Response::Attestation {
            document: document.into(),
        })
    }

    /// Keeps the manifest to hand to apps. Not trusted: only its size and JSON shape are checked
    /// here; apps verify its signature with their pinned key.
    fn set_pcr_manifest(&self, manifest: &[u8]) -> Result<Response, WireError> {
        if manifest.len() > crate::state::MAX_PCR_MANIFEST_LEN {
            return Err(WireError::new(ErrorCode::Rejected, "manifest too large"));
        }
        let value: Value = match serde_json::from_slice(manifest) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(WireError::new(
                    ErrorCode::Rejected,
                    "manifest is not a JSON object",
                ))
            }
        };
        self.state.set_pcr_manifest(value);
        Ok(Response::Done)
    }
}

/// Serves the parent's requests. Storage and credentials flow enclave → parent only: a parent
/// sending one is refused by the link's codec ("wrong direction") before it gets here.
impl Handler for Processor {
    type Side = EnclaveSide;

    async fn handle(
        &self,
        request: ToEnclave,
        ctx: RequestCtx<EnclaveSide>,
    ) -> Result<Response, WireError> {
        match request {
            ToEnclave::Ping => Ok(Response::Pong),
            ToEnclave::Nats(msg) => Ok(Response::Nats(
                self.nats_until(msg, Some(ctx.deadline)).await,
            )),
            ToEnclave::Attest { nonce } => self.attest_for_parent(nonce).await,
            ToEnclave::SetPcrManifest { manifest } => self.set_pcr_manifest(&manifest),
        }
    }
}

/// Payload bytes of a reply, for tests and tools.
pub fn reply_json(reply: &NatsReply) -> Option<Value> {
    reply
        .reply
        .as_ref()
        .and_then(|b: &Bytes| serde_json::from_slice(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnclaveConfig;
    use vettid_nsm::{MockNsm, MockPcrs};

    fn processor(max_vault_tasks: usize) -> Processor {
        let nsm = MockNsm::ephemeral(MockPcrs::from_measurement(b"processor tests")).unwrap();
        let mut config = EnclaveConfig::new("tcp://127.0.0.1:1".parse().unwrap());
        config.max_vault_tasks = max_vault_tasks;
        Processor::new(Arc::new(EnclaveState::new(config, Arc::new(nsm)).unwrap()))
    }

    async fn code(p: &Processor, subject: &str, payload: &[u8]) -> Value {
        let reply = p
            .nats(NatsMessage {
                subject: subject.into(),
                reply: Some("_INBOX.1".into()),
                headers: vec![],
                payload: Bytes::copy_from_slice(payload),
            })
            .await;
        reply_json(&reply).expect("a JSON reply")["code"].clone()
    }

    const SECRETS_LIST: &str = "OwnerSpace.user-1.forVault.secrets.list";

    #[tokio::test]
    async fn a_vault_request_past_the_task_bound_answers_busy_without_starting() {
        let p = processor(3);
        // Three tasks still running (their requests' deadlines may long have passed).
        let held = p.vault_tasks.clone().try_acquire_many_owned(3).unwrap();
        assert_eq!(code(&p, SECRETS_LIST, b"{}").await, "busy");
        assert_eq!(p.vault_tasks.available_permits(), 0, "nothing was started");
        // Health is not a vault task and still answers.
        assert_eq!(code(&p, "enclave.health", b"{}").await, Value::Null);
        drop(held);
        // Under the bound the same request runs (and is refused for its own reason).
        assert_eq!(code(&p, SECRETS_LIST, b"{}").await, "KMSNotConfigured");
        assert_eq!(
            p.vault_tasks.available_permits(),
            3,
            "the task gave its permit back"
        );
    }

    #[tokio::test]
    async fn a_too_deep_or_too_busy_payload_gets_a_typed_error_and_the_next_request_is_served() {
        let p = processor(4);
        let deep = "[".repeat(100) + &"]".repeat(100);
        let deep = format!("{{\"id\":\"r1\",\"payload\":{deep}}}");
        assert_eq!(
            code(&p, SECRETS_LIST, deep.as_bytes()).await,
            "invalid_json"
        );
        let mut many = b"{\"a\":[".to_vec();
        for _ in 0..100_000 {
            many.extend_from_slice(b"{\"\":0},");
        }
        many.extend_from_slice(b"0]}");
        assert_eq!(code(&p, SECRETS_LIST, &many).await, "payload_too_large");
        assert_eq!(code(&p, SECRETS_LIST, b"{}").await, "KMSNotConfigured");
    }
}
