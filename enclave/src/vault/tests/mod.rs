//! Vault behaviour over a real link connection to an in-memory parent, with a test sealer and
//! weak Argon2 parameters. End-to-end tests (tests/tests/vault.rs) repeat the important cases
//! through NATS, the real parent, the real KMS client and the local KMS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use vettid_link::{Connection, Handler, LinkConfig, RequestCtx};
use vettid_protocol::{
    NatsMessage, ParentSide, PutCondition, Response, Role, StorageRequest, StorageResponse,
    ToParent, WireError,
};
use vettid_vault_crypto::{domain, legacy_ecies, Domain, KdfParams};

use super::{PinPolicy, VaultConfig};
use crate::sealing::test_sealer::TestSealer;
use crate::{EnclaveConfig, EnclaveState, Processor};

/// The parent's object store, in memory, with S3's conditional semantics and fault switches.
#[derive(Default)]
pub(super) struct MemParent {
    pub(super) objects: Mutex<HashMap<String, (Bytes, String)>>,
    pub(super) fail_puts: AtomicBool,
    pub(super) fail_all: AtomicBool,
    /// Reads (`Get`, `Head`) never answer.
    pub(super) hang_reads: AtomicBool,
    pub(super) etags: AtomicU32,
    /// Every body the enclave asked to store (what the host sees).
    pub(super) written: Mutex<Vec<Bytes>>,
}

impl Handler for MemParent {
    type Side = ParentSide;

    async fn handle(
        &self,
        request: ToParent,
        _ctx: RequestCtx<ParentSide>,
    ) -> Result<Response, WireError> {
        let ToParent::Storage(req) = request else {
            return Err(WireError::new(
                vettid_protocol::ErrorCode::UnknownRequest,
                "no",
            ));
        };
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(WireError::new(
                vettid_protocol::ErrorCode::Unavailable,
                "s3 down",
            ));
        }
        if self.hang_reads.load(Ordering::SeqCst)
            && matches!(
                req,
                StorageRequest::Get { .. } | StorageRequest::Head { .. }
            )
        {
            std::future::pending::<()>().await;
        }
        let mut objects = self.objects.lock().unwrap();
        let r = match req {
            StorageRequest::Get { key } => match objects.get(&key) {
                Some((body, etag)) => StorageResponse::Object {
                    body: body.clone(),
                    etag: etag.clone(),
                },
                None => StorageResponse::NotFound,
            },
            StorageRequest::Head { key } => match objects.get(&key) {
                Some((body, etag)) => StorageResponse::Meta {
                    etag: etag.clone(),
                    size: body.len() as u64,
                },
                None => StorageResponse::NotFound,
            },
            StorageRequest::Put {
                key,
                body,
                condition,
            } => {
                if self.fail_puts.load(Ordering::SeqCst) {
                    return Err(WireError::new(
                        vettid_protocol::ErrorCode::Unavailable,
                        "s3 down",
                    ));
                }
                let ok = match (&condition, objects.get(&key)) {
                    (PutCondition::Create, None) => true,
                    (PutCondition::IfMatch(e), Some((_, cur))) => e == cur,
                    _ => false,
                };
                if !ok {
                    StorageResponse::Conflict
                } else {
                    let etag = format!("e{}", self.etags.fetch_add(1, Ordering::SeqCst));
                    self.written.lock().unwrap().push(body.clone());
                    objects.insert(key, (body, etag.clone()));
                    StorageResponse::Written { etag }
                }
            }
            StorageRequest::Delete { key, .. } => match objects.remove(&key) {
                Some(_) => StorageResponse::Deleted,
                None => StorageResponse::NotFound,
            },
            StorageRequest::List { .. } => StorageResponse::Listing {
                objects: vec![],
                continuation: None,
            },
        };
        Ok(Response::Storage(r))
    }
}

pub(super) struct Harness {
    pub(super) p: Processor,
    pub(super) parent: Arc<MemParent>,
    pub(super) sealer: Arc<TestSealer>,
    /// The mock NSM's root certificate (DER): what an app pins in dev.
    pub(super) root: Vec<u8>,
}

pub(super) fn config() -> VaultConfig {
    VaultConfig {
        kdf: KdfParams::for_tests(64, 1, 1),
        pin: PinPolicy {
            free_attempts: 2,
            max_attempts: 4,
            backoff_base: std::time::Duration::ZERO,
            backoff_cap: std::time::Duration::ZERO,
        },
        // These tests speak v1 (the deployed apps' shapes); v2 has its own (tests/v2.rs).
        accept_v1: true,
        ..VaultConfig::default()
    }
}

pub(super) async fn harness_with(config: VaultConfig, parent: Arc<MemParent>) -> Harness {
    harness_sealed(config, parent, Arc::default()).await
}

/// A second enclave over the same storage and the same KMS key (a restart, or another host).
pub(super) async fn restart(h: &Harness) -> Harness {
    harness_sealed(config(), h.parent.clone(), h.sealer.clone()).await
}

pub(super) async fn harness_sealed(
    config: VaultConfig,
    parent: Arc<MemParent>,
    sealer: Arc<TestSealer>,
) -> Harness {
    use vettid_nsm::{MockNsm, MockPcrs};
    let nsm = MockNsm::ephemeral(MockPcrs::from_measurement(b"vault tests")).unwrap();
    let root = nsm.root_der().to_vec();
    let state = EnclaveState::new(
        EnclaveConfig::new("tcp://127.0.0.1:1".parse().unwrap()),
        Arc::new(nsm),
    )
    .unwrap()
    .with_vault_config(config)
    .with_sealer(sealer.clone());
    let p = Processor::new(Arc::new(state));
    let (a, b) = tokio::io::duplex(1 << 20);
    let (enclave_side, parent_side) = tokio::join!(
        Connection::establish(a, LinkConfig::new(Role::Enclave), Arc::new(p.clone())),
        Connection::establish(b, LinkConfig::new(Role::Parent), parent.clone()),
    );
    let (conn, task) = enclave_side.unwrap();
    let (_pconn, ptask) = parent_side.unwrap();
    tokio::spawn(task);
    tokio::spawn(ptask);
    p.state().parent.insert(1, conn);
    Harness {
        p,
        parent,
        sealer,
        root,
    }
}

pub(super) async fn harness() -> Harness {
    harness_with(config(), Arc::default()).await
}

impl Harness {
    pub(super) async fn call(&self, owner: &str, op: &str, payload: Value) -> Value {
        self.call_within(owner, op, payload, None).await
    }

    /// The reply bytes to `request` on `OwnerSpace.{owner}.forVault.{token}`, exactly as the
    /// parent would relay them to the app.
    pub(super) async fn send(&self, owner: &str, token: &str, request: &Value) -> Vec<u8> {
        let reply = self
            .p
            .nats_until(
                NatsMessage {
                    subject: format!("OwnerSpace.{owner}.forVault.{token}"),
                    reply: Some("_INBOX.1".into()),
                    headers: vec![],
                    payload: serde_json::to_vec(request).unwrap().into(),
                },
                None,
            )
            .await;
        reply.reply.unwrap().to_vec()
    }

    /// [`Self::call`] as if the parent waited `deadline_ms` for it (`None`: no deadline).
    pub(super) async fn call_within(
        &self,
        owner: &str,
        op: &str,
        payload: Value,
        deadline_ms: Option<u32>,
    ) -> Value {
        let deadline = deadline_ms
            .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms.into()));
        let reply = self
            .p
            .nats_until(
                NatsMessage {
                    subject: format!("OwnerSpace.{owner}.forVault.{op}"),
                    reply: Some("_INBOX.1".into()),
                    headers: vec![],
                    payload: serde_json::to_vec(&payload).unwrap().into(),
                },
                deadline,
            )
            .await;
        serde_json::from_slice(reply.reply.as_ref().unwrap()).unwrap()
    }

    pub(super) async fn attest(&self, owner: &str) -> [u8; 32] {
        let r = self
            .call(
                owner,
                "attestation",
                json!({"nonce": B64.encode([7u8; 32])}),
            )
            .await;
        key(&r["public_key"])
    }

    pub(super) async fn setup(&self, owner: &str, pin: &str) -> Value {
        let public = self.attest(owner).await;
        self.call(
            owner,
            "pin",
            json!({"type": "pin.setup", "payload": setup_payload(&public, pin)}),
        )
        .await
    }

    pub(super) async fn unlock(
        &self,
        owner: &str,
        ecies: &[u8; 32],
        utk: &str,
        pin: &str,
    ) -> Value {
        let env = legacy_ecies::seal(ecies, json!({"pin": pin}).to_string().as_bytes()).unwrap();
        self.call(
            owner,
            "pin",
            json!({"type": "pin.unlock", "payload": {"utk_id": utk, "encrypted_payload": B64.encode(env)}}),
        )
        .await
    }

    pub(super) async fn utk_op(
        &self,
        owner: &str,
        op: &str,
        utk: &(String, [u8; 32]),
        plain: Value,
    ) -> Value {
        let env = domain::seal(Domain::Utk, &utk.1, plain.to_string().as_bytes()).unwrap();
        self.call(
            owner,
            op,
            json!({"id": "r1", "payload": {"utk_id": utk.0, "encrypted_payload": B64.encode(env)}}),
        )
        .await
    }
}

pub(super) fn key(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

/// A UTK list in either wire shape: `[{id, public_key}]`, or v1's `["id:base64"]` (`pin.unlock`,
/// `pin.change`).
pub(super) fn utks(v: &Value) -> Vec<(String, [u8; 32])> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| match u.as_str() {
            Some(s) => {
                let (id, k) = s.split_once(':').unwrap();
                (id.to_owned(), key(&Value::from(k)))
            }
            None => (u["id"].as_str().unwrap().to_owned(), key(&u["public_key"])),
        })
        .collect()
}

pub(super) fn setup_payload(public: &[u8; 32], pin: &str) -> Value {
    let env = legacy_ecies::seal(
        public,
        json!({"pin": pin, "profile": {"first_name": "Ada"}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    json!({
        "encrypted_pin": B64.encode(&env[44..]),
        "ephemeral_public_key": B64.encode(&env[..32]),
        "nonce": B64.encode(&env[32..44]),
    })
}

pub(super) const PHC: &str = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";

pub(super) fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

pub(super) async fn r_ecies(h: &Harness, owner: &str) -> Value {
    let mut slot = h.p.state().vaults.slot(owner).await;
    let sealer = h.sealer.clone();
    let loaded =
        h.p.state()
            .vaults
            .load(&*sealer, owner, &mut slot)
            .await
            .unwrap();
    Value::String(B64.encode(loaded.meta.ecies.public))
}

mod flows;
mod hostile;
mod ops;
mod storage;
mod v2;
