//! Every vault operation and the shape of its request, in one place.
//!
//! A request is read once, at the edge ([`VaultOp::parse`]), from the subject's `forVault.{op}`
//! token and the JSON body, into a [`VaultOp`] whose variant carries the request's typed
//! envelope. What the envelope seals is read as the operation's typed plaintext (the structs at
//! the end of this file) by the handler, once it has opened it: only the handler holds the key.
//!
//! Adding an operation: one line in the [`vault_ops!`] table, its request and plaintext types
//! here, its handler in `ops/` (the compiler then asks for its arm in `Ctx::run`), and its tests.
//!
//! Three envelope shapes serve every operation (docs/VAULT.md, "Operations"):
//! - [`SetupRequest`]: `pin.setup`, sealed to an attestation key;
//! - [`UtkRequest`]: everything that spends a UTK, sealed to it;
//! - [`ReadRequest`]: reads, sealed to the vault's own key (v2) or carrying nothing (v1).
//!
//! Each has a v2 shape (`"v": 2`, ours: fields it does not name are refused) and a v1 shape (as
//! deployed apps send it, accepted only with `--accept-v1-envelopes`; unknown fields are ignored,
//! as VettID's Go vault ignored them).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{self, FieldError, Key32, Sealed, Text, Two, Unknown};
use crate::error::ClientError;

mod plaintext;

pub use plaintext::*;

/// The correlation fields a request may carry beside its own when sent without the `payload`
/// wrapper (`{id, type, timestamp, …fields}`).
const CORRELATION: &[&str] = &["id", "type", "timestamp"];

/// Builds [`VaultOp`] from the table of operations: variant, request type, canonical name (what
/// a v2 envelope is bound to) and the other subject tokens v1 apps use for it.
macro_rules! vault_ops {
    ($($(#[$doc:meta])* $variant:ident($request:ty) = $name:literal $(| $alias:literal)*;)*) => {
        /// A vault operation with its request, read from the app's JSON.
        #[derive(Debug)]
        pub enum VaultOp {
            $($(#[$doc])* $variant($request),)*
        }

        impl VaultOp {
            /// Every operation's canonical name, in table order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The operation's canonical name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(VaultOp::$variant(_) => $name,)*
                }
            }

            /// The canonical name a subject token stands for (`pin` is resolved by its `type`).
            fn canonical(token: &str) -> Option<&'static str> {
                match token {
                    $($name $(| $alias)* => Some($name),)*
                    _ => None,
                }
            }

            /// Reads the request of operation `name` from `body`.
            fn read(name: &str, body: &Map<String, Value>, bare: bool) -> Result<Self, ClientError> {
                match name {
                    $($name => Ok(VaultOp::$variant(<$request as Envelope>::read(body, bare)?)),)*
                    _ => Err(ClientError::NotSupported),
                }
            }

            /// Whether the request is the v2 envelope (its reply is sealed to the app).
            pub fn is_v2(&self) -> bool {
                match self {
                    $(VaultOp::$variant(r) => r.is_v2(),)*
                }
            }
        }
    };
}

vault_ops! {
    /// Enrolment: the PIN sealed to an attestation key this app verified.
    PinSetup(SetupRequest) = "pin.setup" | "pin-setup";
    /// Unlocks the vault with the PIN.
    PinUnlock(UtkRequest) = "pin.unlock" | "pin-unlock";
    /// Changes the PIN (the state is re-sealed under the new one).
    PinChange(UtkRequest) = "pin.change" | "pin-change";
    /// Creates the Protean credential.
    CredentialCreate(UtkRequest) = "credential.create";
    /// Changes the credential's password hash.
    PasswordChange(UtkRequest) = "credential.password-change";
    /// The credential, sealed to the app's CEK.
    CredentialGet(ReadRequest) = "credential.get";
    /// The credential's version and creation time.
    CredentialVersion(ReadRequest) = "credential.version";
    /// Deletes the credential.
    CredentialDelete(UtkRequest) = "credential.delete";
    /// Adds a secret.
    SecretsAdd(UtkRequest) = "secrets.add";
    /// Changes a secret.
    SecretsUpdate(UtkRequest) = "secrets.update";
    /// One secret with its value.
    SecretsRetrieve(UtkRequest) = "secrets.retrieve";
    /// Deletes a secret.
    SecretsDelete(UtkRequest) = "secrets.delete";
    /// Every secret without its value.
    SecretsList(UtkRequest) = "secrets.list";
    /// The credential's identity public key.
    SecretsIdentity(ReadRequest) = "secrets.identity";
    /// Confirms the stored vault is still the one this enclave wrote.
    VaultSave(ReadRequest) = "vault.save";
}

impl VaultOp {
    /// Whether this build serves subject token `token` (v1's `pin` family included). An
    /// operation it does not serve is `not_supported` whatever else is wrong with the request
    /// (G30).
    pub fn serves(token: &str) -> bool {
        token == "pin" || Self::canonical(token).is_some()
    }

    /// Reads the operation named by subject token `token` with its request.
    ///
    /// The request is `request.payload` when that is an object, else `request` itself. A v1
    /// request where v1 is not accepted is refused before any of its fields is read.
    ///
    /// # Errors
    /// `not_supported`, `unknown_pin_op` (v1 `pin` with another `type`), `v1_envelope_refused`,
    /// `bad_field` naming the field, `unknown_field` (a v2 request with a field it does not take).
    pub fn parse(
        token: &str,
        request: &Map<String, Value>,
        accept_v1: bool,
    ) -> Result<Self, ClientError> {
        let name = match token {
            "pin" => match request.get("type").and_then(Value::as_str) {
                Some(t @ ("pin.setup" | "pin.unlock" | "pin.change")) => t,
                _ => return Err(ClientError::UnknownPinOp),
            },
            other => Self::canonical(other).ok_or(ClientError::NotSupported)?,
        };
        let (body, bare) = match request.get("payload") {
            Some(Value::Object(p)) => (p, false),
            _ => (request, true),
        };
        if !is_v2(body) && !accept_v1 {
            return Err(ClientError::V1EnvelopeRefused);
        }
        Self::read(name, body, bare)
    }
}

/// One of the three envelope shapes.
pub trait Envelope: Sized {
    /// Reads it from a request body (`bare`: sent without the `payload` wrapper).
    ///
    /// # Errors
    /// `bad_field` naming the field; `unknown_field` (v2).
    fn read(body: &Map<String, Value>, bare: bool) -> Result<Self, ClientError>;

    /// Whether it is the v2 shape.
    fn is_v2(&self) -> bool;
}

/// Whether a request body is the v2 envelope (`"v": 2`).
fn is_v2(body: &Map<String, Value>) -> bool {
    body.get("v").and_then(Value::as_u64) == Some(2)
}

/// Reads an envelope: a v2 one strictly (a bare request may also carry its correlation
/// fields), a v1 one leniently.
fn envelope<T: DeserializeOwned>(body: &Map<String, Value>, bare: bool) -> Result<T, ClientError> {
    let unknown = if !is_v2(body) {
        Unknown::Ignore
    } else if bare {
        Unknown::Refuse {
            except: CORRELATION,
        }
    } else {
        Unknown::REFUSE
    };
    fields::from_object(body, unknown).map_err(|e| match e {
        FieldError::Missing(f) | FieldError::Invalid(f) => ClientError::BadField(f),
        FieldError::Unknown => ClientError::UnknownField,
        FieldError::Shape => ClientError::BadField("payload"),
    })
}

/// `pin.setup`'s request.
#[derive(Debug)]
pub enum SetupRequest {
    /// Sealed to the attestation key it names (one lookup, no trial decryption), bound to this
    /// owner and operation.
    V2(SetupV2),
    /// v1's legacy ECIES to an attestation key it does not name: each of the owner's is tried.
    V1(SetupV1),
}

/// `{v: 2, attestation_key, sealed}`.
#[derive(Debug, Deserialize)]
pub struct SetupV2 {
    #[allow(dead_code)]
    v: Two,
    /// The attestation public key the envelope is sealed to.
    pub attestation_key: Key32,
    /// The v2 envelope.
    sealed: Sealed,
}

impl SetupV2 {
    /// The envelope's bytes.
    ///
    /// # Errors
    /// `bad_field` (`sealed`).
    pub fn ciphertext(&self) -> Result<&[u8], ClientError> {
        self.sealed.bytes().ok_or(ClientError::BadField("sealed"))
    }
}

/// `{encrypted_pin, ephemeral_public_key, nonce}` (base64 each, opened as one legacy ECIES box).
#[derive(Debug, Deserialize)]
pub struct SetupV1 {
    /// The ciphertext.
    pub encrypted_pin: Text,
    /// The sender's ephemeral X25519 key.
    pub ephemeral_public_key: Text,
    /// The nonce.
    pub nonce: Text,
}

impl Envelope for SetupRequest {
    fn read(body: &Map<String, Value>, bare: bool) -> Result<Self, ClientError> {
        Ok(if is_v2(body) {
            SetupRequest::V2(envelope(body, bare)?)
        } else {
            SetupRequest::V1(envelope(body, bare)?)
        })
    }

    fn is_v2(&self) -> bool {
        matches!(self, SetupRequest::V2(_))
    }
}

/// A request that spends a UTK.
#[derive(Debug)]
pub struct UtkRequest {
    /// The UTK it is sealed to (v2), or spends (v1).
    pub utk_id: Text,
    /// The envelope.
    pub sealed: UtkSealed,
}

/// The envelope of a [`UtkRequest`].
#[derive(Debug)]
pub enum UtkSealed {
    /// `sealed`: the v2 envelope, to the UTK, bound to the operation and the owner.
    V2(Sealed),
    /// `encrypted_payload`: v1's domain-separated ECIES (to the UTK for most operations, to the
    /// vault's key for `pin.unlock` / `pin.change`).
    V1(Sealed),
}

#[derive(Deserialize)]
struct UtkV2 {
    #[allow(dead_code)]
    v: Two,
    utk_id: Text,
    sealed: Sealed,
}

#[derive(Deserialize)]
struct UtkV1 {
    utk_id: Text,
    encrypted_payload: Sealed,
}

impl Envelope for UtkRequest {
    fn read(body: &Map<String, Value>, bare: bool) -> Result<Self, ClientError> {
        Ok(if is_v2(body) {
            let UtkV2 { utk_id, sealed, .. } = envelope(body, bare)?;
            UtkRequest {
                utk_id,
                sealed: UtkSealed::V2(sealed),
            }
        } else {
            let UtkV1 {
                utk_id,
                encrypted_payload,
            } = envelope(body, bare)?;
            UtkRequest {
                utk_id,
                sealed: UtkSealed::V1(encrypted_payload),
            }
        })
    }

    fn is_v2(&self) -> bool {
        matches!(self.sealed, UtkSealed::V2(_))
    }
}

impl UtkRequest {
    /// The envelope's bytes.
    ///
    /// # Errors
    /// `bad_field` naming `sealed` or `encrypted_payload`.
    pub fn ciphertext(&self) -> Result<&[u8], ClientError> {
        match &self.sealed {
            UtkSealed::V2(s) => s.bytes().ok_or(ClientError::BadField("sealed")),
            UtkSealed::V1(s) => s.bytes().ok_or(ClientError::BadField("encrypted_payload")),
        }
    }
}

/// A read.
#[derive(Debug)]
pub enum ReadRequest {
    /// `{v: 2, sealed}` to the vault's own key, so that its answer is sealed to the app.
    V2(Sealed),
    /// v1 reads carry nothing.
    V1,
}

#[derive(Deserialize)]
struct ReadV2 {
    #[allow(dead_code)]
    v: Two,
    sealed: Sealed,
}

impl Envelope for ReadRequest {
    fn read(body: &Map<String, Value>, bare: bool) -> Result<Self, ClientError> {
        if is_v2(body) {
            let ReadV2 { sealed, .. } = envelope(body, bare)?;
            Ok(ReadRequest::V2(sealed))
        } else {
            Ok(ReadRequest::V1)
        }
    }

    fn is_v2(&self) -> bool {
        matches!(self, ReadRequest::V2(_))
    }
}

impl ReadRequest {
    /// A v2 read's envelope bytes (`None` for v1).
    ///
    /// # Errors
    /// `bad_field` (`sealed`).
    pub fn ciphertext(&self) -> Result<Option<&[u8]>, ClientError> {
        match self {
            ReadRequest::V2(s) => s.bytes().ok_or(ClientError::BadField("sealed")).map(Some),
            ReadRequest::V1 => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
