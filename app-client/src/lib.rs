//! The app's half of the vault protocol, as a library the iOS and Android apps (and our own
//! end-to-end tests) run: so the protocol has one executable definition besides the enclave.
//!
//! What it owns:
//! - checking an attestation document before anything is encrypted to it ([`attest`]): the AWS
//!   chain and PCR policy (through `vettid-attestation`), the app's own nonce, and the `user_data`
//!   that names this owner and protocol version, so a host that redirects the attestation to
//!   another GUID, or replays an old document, is caught;
//! - sealing requests in the v2 envelope ([`envelope`]), bound to the operation, the owner and the
//!   key they are sealed to;
//! - opening every reply under the key only this request produced, and refusing anything else
//!   ([`VaultClient::finish`]): a reply the host forged, rewrote or replayed from another request
//!   fails to open, so keys in replies (UTKs, the vault key) can be trusted;
//! - tracking the vault's UTKs and the create proof.
//!
//! What it must never do: I/O, read a clock (the caller passes `now`), or treat an unauthenticated
//! answer as anything but "failed, told nothing".

pub mod envelope;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

pub use envelope::{Binding, ReplyKey};

/// Prefix of the document's `user_data` (then the owner GUID).
pub const USER_DATA_PREFIX: &[u8] = b"vettid.attest.v2:";

/// What went wrong, for the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The attestation document failed verification (chain, signature, PCRs, freshness, nonce,
    /// or a `user_data` naming another owner or protocol).
    #[error("attestation refused: {0}")]
    Attestation(String),
    /// The reply is not the authenticated answer to this request (forged, rewritten, replayed
    /// from another request, or an error the host could have made up).
    #[error("reply not authentic")]
    ReplyNotAuthentic,
    /// An unauthenticated error reply (before the enclave could open the request): the request
    /// failed, nothing else is known. `code` is for logs only.
    #[error("request failed (unauthenticated answer: {code})")]
    Unauthenticated {
        /// The code the answer carried.
        code: String,
    },
    /// The vault's authenticated refusal.
    #[error("vault refused: {code}")]
    Refused {
        /// Stable error code (`invalid_pin`, `utk_invalid`, …).
        code: String,
        /// The whole authenticated error object (e.g. `attempts_remaining`).
        body: Map<String, Value>,
    },
    /// No live UTK left: unlock to get more.
    #[error("no UTK left")]
    NoUtk,
    /// A read before the vault key is known (enrol first).
    #[error("vault key unknown")]
    NoVaultKey,
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// An X25519 key that gives an all-zero secret.
    #[error("weak public key")]
    WeakKey,
    /// A bound field longer than 65 535 bytes.
    #[error("field too long")]
    FieldTooLong,
    /// A reply that opened but is not the JSON shape the protocol defines.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
}

pub mod attest {
    //! The attestation check before `pin.setup`.

    use super::{Error, USER_DATA_PREFIX};

    /// An attestation key this app verified: what `pin.setup` is sealed to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct AttestedKey(pub [u8; 32]);

    /// The `user_data` a document for `owner` must carry.
    pub fn expected_user_data(owner: &str) -> Vec<u8> {
        let mut out = USER_DATA_PREFIX.to_vec();
        out.extend_from_slice(owner.as_bytes());
        out
    }

    /// Verifies `document` (raw COSE bytes) against `policy` (the PCR sets from the signed
    /// manifest, the pinned root) at `now_ms`, requires `nonce` (the one this app sent) and the
    /// `user_data` naming `owner`, and returns the X25519 key it carries.
    ///
    /// # Errors
    /// [`Error::Attestation`].
    pub fn verify(
        document: &[u8],
        policy: vettid_attestation::Policy,
        now_ms: u64,
        nonce: &[u8],
        owner: &str,
    ) -> Result<AttestedKey, Error> {
        let policy = policy
            .expect_nonce(nonce.to_vec())
            .expect_user_data(expected_user_data(owner));
        let verified = vettid_attestation::verify(document, &policy, now_ms)
            .map_err(|e| Error::Attestation(e.to_string()))?;
        let key = verified
            .public_key
            .as_deref()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| Error::Attestation("no 32-byte public_key".into()))?;
        Ok(AttestedKey(key))
    }
}

/// UTKs a vault keeps live (its oldest beyond this are pruned), so the client keeps as many.
pub const MAX_LIVE_UTKS: usize = 16;

/// A live UTK as the vault gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utk {
    /// `utk-…`.
    pub id: String,
    /// Its X25519 public key.
    pub public: [u8; 32],
}

/// A request on its way out, and what is needed to check its answer.
#[derive(Debug)]
pub struct Outgoing {
    /// The subject token: publish on `OwnerSpace.{owner}.forVault.{token}`.
    pub token: &'static str,
    /// The request JSON (`{id, payload}`).
    pub request: Value,
    /// Keep it for [`VaultClient::finish`].
    pub pending: Pending,
}

/// What [`VaultClient::finish`] needs to check the answer to one request.
#[derive(Debug)]
pub struct Pending {
    op: &'static str,
    reply_key: ReplyKey,
    utk: Option<String>,
}

/// One user's view of their vault: UTKs, the vault key, the create proof.
#[derive(Debug, Clone, Default)]
pub struct VaultClient {
    owner: String,
    utks: Vec<Utk>,
    vault_key: Option<[u8; 32]>,
    create_proof: Option<Zeroizing<Vec<u8>>>,
    next_id: u64,
    seen_version: u64,
}

/// The subject token for a canonical operation (the `pin` family has its own tokens).
fn token(op: &'static str) -> &'static str {
    match op {
        "pin.setup" => "pin-setup",
        "pin.unlock" => "pin-unlock",
        "pin.change" => "pin-change",
        other => other,
    }
}

impl VaultClient {
    /// A client for owner space `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            ..Self::default()
        }
    }

    /// The owner-space GUID.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Live UTKs, oldest first (requests use the newest).
    pub fn utks(&self) -> &[Utk] {
        &self.utks
    }

    /// The highest vault version the vault's authenticated replies have shown (0: none yet).
    /// Every request carries it inside its envelope, and the vault refuses to answer from an
    /// older stored object (`stale_vault`): a host that serves an old copy of the vault cannot
    /// make this app see it. Keep it with the UTKs across app restarts.
    pub fn seen_version(&self) -> u64 {
        self.seen_version
    }

    /// Restores [`Self::seen_version`] (it only ever goes up).
    pub fn set_seen_version(&mut self, version: u64) {
        self.seen_version = self.seen_version.max(version);
    }

    /// Whether a create proof is held (from `pin.setup` or an unlock without a credential).
    pub fn has_create_proof(&self) -> bool {
        self.create_proof.is_some()
    }

    fn outgoing(
        &mut self,
        op: &'static str,
        recipient: &[u8; 32],
        key_ref: &str,
        mut fields: Map<String, Value>,
        plaintext: &Value,
        utk: Option<String>,
    ) -> Result<Outgoing, Error> {
        let mut plaintext = plaintext.clone();
        if let (Some(fields), true) = (plaintext.as_object_mut(), self.seen_version > 0) {
            fields.insert("seen_version".into(), self.seen_version.into());
        }
        let plain = Zeroizing::new(plaintext.to_string().into_bytes());
        let (sealed, reply_key) = envelope::seal(
            recipient,
            &Binding {
                op,
                owner: &self.owner,
                key_ref,
            },
            &plain,
        )?;
        fields.insert("v".into(), 2.into());
        fields.insert("sealed".into(), B64.encode(sealed).into());
        self.next_id += 1;
        Ok(Outgoing {
            token: token(op),
            request: json!({"id": format!("{}-{}", op, self.next_id), "payload": fields}),
            pending: Pending { op, reply_key, utk },
        })
    }

    /// `pin.setup` sealed to a verified attestation key.
    ///
    /// # Errors
    /// [`Error::Random`].
    pub fn setup(
        &mut self,
        key: &attest::AttestedKey,
        pin: &str,
        profile: Option<Value>,
    ) -> Result<Outgoing, Error> {
        let mut plain = json!({"pin": pin});
        if let Some(p) = profile {
            plain["profile"] = p;
        }
        let mut fields = Map::new();
        fields.insert("attestation_key".into(), B64.encode(key.0).into());
        self.outgoing(
            "pin.setup",
            &key.0,
            envelope::KEY_REF_ATTESTATION,
            fields,
            &plain,
            None,
        )
    }

    /// An operation sealed to the newest live UTK (`pin.unlock`, `secrets.add`, …) with
    /// `plaintext` as that operation's fields. The UTK is dropped once the vault confirms it.
    ///
    /// # Errors
    /// [`Error::NoUtk`], [`Error::Random`].
    pub fn utk_request(&mut self, op: &'static str, plaintext: &Value) -> Result<Outgoing, Error> {
        // Newest first: the vault prunes its oldest UTKs beyond its limit.
        let utk = self.utks.last().cloned().ok_or(Error::NoUtk)?;
        let mut fields = Map::new();
        fields.insert("utk_id".into(), utk.id.clone().into());
        let id = utk.id.clone();
        self.outgoing(op, &utk.public, &utk.id, fields, plaintext, Some(id))
    }

    /// `pin.unlock`.
    ///
    /// # Errors
    /// As [`Self::utk_request`].
    pub fn unlock(&mut self, pin: &str) -> Result<Outgoing, Error> {
        self.utk_request("pin.unlock", &json!({"pin": pin}))
    }

    /// `credential.create` with the create proof this client holds.
    ///
    /// # Errors
    /// As [`Self::utk_request`].
    pub fn create_credential(&mut self, password_hash: &str) -> Result<Outgoing, Error> {
        let mut plain = json!({"password_hash": password_hash});
        if let Some(p) = &self.create_proof {
            plain["create_proof"] = B64.encode(p.as_slice()).into();
        }
        self.utk_request("credential.create", &plain)
    }

    /// A read (`credential.get`, `credential.version`, `secrets.identity`, `vault.save`) sealed
    /// to the vault's own key, so its answer is authenticated too.
    ///
    /// # Errors
    /// [`Error::NoVaultKey`], [`Error::Random`].
    pub fn read(&mut self, op: &'static str) -> Result<Outgoing, Error> {
        let key = self.vault_key.ok_or(Error::NoVaultKey)?;
        self.outgoing(
            op,
            &key,
            envelope::KEY_REF_VAULT,
            Map::new(),
            &json!({}),
            None,
        )
    }

    /// Checks the answer to `pending` and returns its authenticated body, updating the UTKs, the
    /// vault key and the create proof from it.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a plain error answer; [`Error::ReplyNotAuthentic`] for
    /// anything that does not open under this request's key; [`Error::Refused`] for the vault's
    /// authenticated error; [`Error::Malformed`].
    pub fn finish(&mut self, pending: Pending, reply: &[u8]) -> Result<Map<String, Value>, Error> {
        let outer: Value =
            serde_json::from_slice(reply).map_err(|_| Error::Malformed("not JSON"))?;
        let Some(sealed) = outer.get("sealed_reply").and_then(Value::as_str) else {
            let code = outer
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_owned();
            if outer.get("type").and_then(Value::as_str) == Some("error") {
                // The enclave refused before it could open the request (or the host says so).
                if code == "utk_invalid" {
                    if let Some(id) = &pending.utk {
                        self.utks.retain(|u| &u.id != id);
                    }
                }
                return Err(Error::Unauthenticated { code });
            }
            return Err(Error::ReplyNotAuthentic);
        };
        let sealed = B64.decode(sealed).map_err(|_| Error::ReplyNotAuthentic)?;
        let inner = pending.reply_key.open(&sealed)?;
        let body: Map<String, Value> = match serde_json::from_slice(&inner) {
            Ok(Value::Object(m)) => m,
            _ => return Err(Error::Malformed("sealed reply is not an object")),
        };
        if body.get("type").and_then(Value::as_str) == Some("error") {
            let code = body
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            // Refused means nothing was changed, except where the outcome is unknown.
            if matches!(
                code.as_str(),
                "utk_invalid" | "storage_timeout" | "trusted_store_unavailable"
            ) {
                if let Some(id) = &pending.utk {
                    self.utks.retain(|u| &u.id != id);
                }
            }
            return Err(Error::Refused { code, body });
        }
        if let Some(id) = &pending.utk {
            self.utks.retain(|u| &u.id != id);
        }
        if let Some(v) = body.get("vault_version").and_then(Value::as_u64) {
            self.seen_version = self.seen_version.max(v);
        }
        for field in ["utks", "new_utks"] {
            if let Some(list) = body.get(field) {
                self.utks.extend(parse_utks(list)?);
            }
        }
        if self.utks.len() > MAX_LIVE_UTKS {
            let surplus = self.utks.len() - MAX_LIVE_UTKS;
            self.utks.drain(..surplus);
        }
        if pending.op == "pin.setup" {
            let key = body
                .get("ecies_public_key")
                .and_then(Value::as_str)
                .and_then(|k| B64.decode(k).ok())
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or(Error::Malformed("ecies_public_key"))?;
            self.vault_key = Some(key);
        }
        if pending.op == "credential.create" {
            self.create_proof = None;
        }
        if let Some(p) = body.get("create_proof").and_then(Value::as_str) {
            let proof = B64
                .decode(p)
                .map_err(|_| Error::Malformed("create_proof"))?;
            self.create_proof = Some(Zeroizing::new(proof));
        }
        Ok(body)
    }
}

fn parse_utks(list: &Value) -> Result<Vec<Utk>, Error> {
    let list = list.as_array().ok_or(Error::Malformed("utks"))?;
    list.iter()
        .map(|u| {
            let id = u.get("id").and_then(Value::as_str);
            let public = u
                .get("public_key")
                .and_then(Value::as_str)
                .and_then(|k| B64.decode(k).ok())
                .and_then(|k| <[u8; 32]>::try_from(k).ok());
            match (id, public) {
                (Some(id), Some(public)) => Ok(Utk {
                    id: id.to_owned(),
                    public,
                }),
                _ => Err(Error::Malformed("utk")),
            }
        })
        .collect()
}
