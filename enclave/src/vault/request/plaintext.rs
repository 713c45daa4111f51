//! What each operation's envelope seals: one struct per operation, read by the handler once it
//! has opened the envelope (only it holds the key).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ClientError;
use crate::vault::fields::{self, Base64, Bounded, FieldError, Key32, Text, Unknown};

/// Longest secret name / category.
pub const MAX_SECRET_NAME: usize = 256;
/// Largest secret value.
pub const MAX_SECRET_VALUE: usize = 64 * 1024;

/// What an envelope seals: one struct per operation.
pub trait Plaintext: DeserializeOwned {
    /// What a missing or invalid field becomes: `bad_field` naming it, unless the operation
    /// says otherwise.
    fn refuse(field: &'static str) -> ClientError {
        ClientError::BadField(field)
    }
}

/// Reads an opened plaintext as `T`: strictly for v2 (`seen_version` is read by the caller),
/// leniently for v1.
///
/// # Errors
/// [`ClientError::BadPlaintext`] for anything but a JSON object; [`Plaintext::refuse`];
/// `unknown_field`.
pub fn plaintext<T: Plaintext>(plain: &Map<String, Value>, v2: bool) -> Result<T, ClientError> {
    let unknown = if v2 {
        Unknown::Refuse {
            except: &["seen_version"],
        }
    } else {
        Unknown::Ignore
    };
    fields::from_object(plain, unknown).map_err(|e| match e {
        FieldError::Missing(f) | FieldError::Invalid(f) => T::refuse(f),
        FieldError::Unknown => ClientError::UnknownField,
        FieldError::Shape => ClientError::BadPlaintext,
    })
}

/// `pin.setup`: the PIN and the optional profile (kept as JSON when it is an object).
#[derive(Debug, Deserialize)]
pub struct SetupPlain {
    /// The PIN.
    pub pin: Text,
    /// The user's profile.
    pub profile: Option<Value>,
}

impl Plaintext for SetupPlain {
    fn refuse(_: &'static str) -> ClientError {
        ClientError::InvalidPinFormat
    }
}

/// `pin.unlock`.
#[derive(Debug, Deserialize)]
pub struct UnlockPlain {
    /// The PIN.
    pub pin: Text,
}

impl Plaintext for UnlockPlain {
    fn refuse(_: &'static str) -> ClientError {
        ClientError::InvalidPinFormat
    }
}

/// `pin.change`.
#[derive(Debug, Deserialize)]
pub struct ChangePlain {
    /// The current PIN.
    pub old_pin: Text,
    /// The new PIN.
    pub new_pin: Text,
}

impl Plaintext for ChangePlain {
    fn refuse(_: &'static str) -> ClientError {
        ClientError::InvalidPinFormat
    }
}

/// `credential.create`.
#[derive(Debug, Deserialize)]
pub struct CreatePlain {
    /// The app's Argon2id PHC string.
    pub password_hash: Text,
    /// The create proof (v2: required; v1 apps do not send it).
    pub create_proof: Option<Base64>,
}

impl Plaintext for CreatePlain {
    fn refuse(field: &'static str) -> ClientError {
        match field {
            "create_proof" => ClientError::CreateProofRequired,
            f => ClientError::BadField(f),
        }
    }
}

/// `credential.password-change`.
#[derive(Debug, Deserialize)]
pub struct PasswordChangePlain {
    /// The stored hash, to prove the app knows it.
    pub old_password_hash: Text,
    /// Its replacement (an Argon2id PHC string).
    pub new_password_hash: Text,
}
impl Plaintext for PasswordChangePlain {}

/// `credential.delete`.
#[derive(Debug, Deserialize)]
pub struct PasswordPlain {
    /// The stored hash, to prove the app knows it.
    pub password_hash: Text,
}
impl Plaintext for PasswordPlain {}

/// `secrets.add`. Every secrets request carries the password hash: a bearer secret the host
/// never sees in clear, so UTK public keys it observed cannot drive the user's secrets. It is
/// optional in the types only so that a vault without a credential answers `no_credential`
/// first; without one it is `bad_field`.
#[derive(Debug, Deserialize)]
pub struct SecretsAddPlain {
    /// The stored hash.
    pub password_hash: Option<Text>,
    /// The secret's name (not empty).
    pub name: Option<Bounded<MAX_SECRET_NAME>>,
    /// Its value.
    pub value: Option<Bounded<MAX_SECRET_VALUE>>,
    /// Its category.
    pub category: Option<Bounded<MAX_SECRET_NAME>>,
}
impl Plaintext for SecretsAddPlain {}

/// `secrets.update`: the fields given replace the secret's (an empty name keeps it).
#[derive(Debug, Deserialize)]
pub struct SecretsUpdatePlain {
    /// The stored hash.
    pub password_hash: Option<Text>,
    /// Which secret.
    pub id: Text,
    /// A new name.
    pub name: Option<Bounded<MAX_SECRET_NAME>>,
    /// A new value.
    pub value: Option<Bounded<MAX_SECRET_VALUE>>,
    /// A new category.
    pub category: Option<Bounded<MAX_SECRET_NAME>>,
}
impl Plaintext for SecretsUpdatePlain {}

/// `secrets.retrieve`. v1 answers sealed to `reply_key` (required there); a v2 reply is sealed
/// to the app already, so the key is optional (honoured when given).
#[derive(Debug, Deserialize)]
pub struct SecretsRetrievePlain {
    /// The stored hash.
    pub password_hash: Option<Text>,
    /// Which secret.
    pub id: Text,
    /// The app's X25519 key the value is sealed to.
    pub reply_key: Option<Key32>,
}
impl Plaintext for SecretsRetrievePlain {}

/// `secrets.delete`.
#[derive(Debug, Deserialize)]
pub struct SecretsDeletePlain {
    /// The stored hash.
    pub password_hash: Option<Text>,
    /// Which secret.
    pub id: Text,
}
impl Plaintext for SecretsDeletePlain {}

/// `secrets.list`, with the reply key as for [`SecretsRetrievePlain`].
#[derive(Debug, Deserialize)]
pub struct SecretsListPlain {
    /// The stored hash.
    pub password_hash: Option<Text>,
    /// The app's X25519 key the list is sealed to.
    pub reply_key: Option<Key32>,
}
impl Plaintext for SecretsListPlain {}

/// A v2 read seals nothing but its binding (and the app's `seen_version`).
#[derive(Debug, Deserialize)]
pub struct ReadPlain {}
impl Plaintext for ReadPlain {}
