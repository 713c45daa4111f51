//! What a VettID mobile app does cryptographically, for end-to-end tests that play the app.
//!
//! Every payload is built with `vettid-vault-crypto`'s public sealing functions, the same ones whose
//! bytes the crate's known-answer vectors (and its independent Python check) pin, so a test that passes
//! here talks to the enclave exactly as a deployed app does:
//!
//! - `pin.setup`: legacy ECIES to the attestation key, sent as three base64 fields
//!   ([`pin_setup_payload`]);
//! - `pin.unlock` / `pin.change`: legacy ECIES to the vault's `ecies_public_key`, one base64 envelope
//!   ([`legacy_ecies_payload`]);
//! - UTK payloads: the `vettid-utk-v1` domain envelope to a UTK from the last response ([`utk_payload`],
//!   [`parse_utks`]);
//! - secret values in replies: the `vettid-reply-v1` domain envelope to a key the app chose ([`ReplyKey`]);
//! - the credential password: an Argon2id PHC string the vault validates but never evaluates
//!   ([`phc_password_hash`]).
//!
//! Base64 is standard and padded everywhere (Go's `base64.StdEncoding`), except inside the PHC string,
//! whose format uses unpadded B64. These are test helpers: they panic, with a message, on input a test
//! should never pass, instead of returning errors a test would only unwrap.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};
use vettid_vault_crypto::{domain, legacy_ecies, x25519, Domain, EnvelopeError};

/// The Argon2id parameters VettID requires of the app's password hash (the vault's minimums:
/// `vettid_vault_crypto::phc::MIN_*`): 64 MiB, 3 passes, 1 lane, 16-byte salt, 32-byte hash.
pub const PHC_M_KIB: u32 = 65_536;
/// Argon2id passes of [`phc_password_hash`].
pub const PHC_T: u32 = 3;
/// Argon2id lanes of [`phc_password_hash`].
pub const PHC_P: u32 = 1;
/// Salt length of [`phc_password_hash`], bytes.
pub const PHC_SALT_LEN: usize = 16;
/// Hash length of [`phc_password_hash`], bytes.
pub const PHC_HASH_LEN: usize = 32;

/// The `pin.setup` payload fields: `{"encrypted_pin", "ephemeral_public_key", "nonce"}`, sealed with
/// legacy ECIES to the enclave's attestation key. The plaintext is `{"pin": …}` plus `"profile"` when
/// given (v1 apps omit the key rather than send `null`).
///
/// # Panics
/// If `attestation_public_key` is a low-order or non-canonical point, or the random source fails.
pub fn pin_setup_payload(
    attestation_public_key: &[u8; 32],
    pin: &str,
    profile: Option<Value>,
) -> Value {
    let mut plaintext = json!({ "pin": pin });
    if let Some(profile) = profile {
        plaintext["profile"] = profile;
    }
    let envelope = legacy_ecies::seal(attestation_public_key, &to_bytes(&plaintext))
        .expect("legacy ECIES seal to the attestation key");
    // The combined envelope is ephemeral_public ‖ nonce ‖ ct ‖ tag; pin.setup sends the parts apart.
    let (ephemeral, rest) = envelope.split_at(x25519::KEY_LEN);
    let (nonce, ciphertext) = rest.split_at(legacy_ecies::NONCE_LEN);
    json!({
        "encrypted_pin": STANDARD.encode(ciphertext),
        "ephemeral_public_key": STANDARD.encode(ephemeral),
        "nonce": STANDARD.encode(nonce),
    })
}

/// A combined legacy-ECIES envelope of `plaintext` (serialised JSON) to `recipient`, base64-encoded:
/// `encrypted_payload` of `pin.unlock` (`{"pin"}`) and `pin.change` (`{"old_pin", "new_pin"}`), sealed to
/// the vault's `ecies_public_key`.
///
/// # Panics
/// If `recipient` is a low-order or non-canonical point, or the random source fails.
pub fn legacy_ecies_payload(recipient: &[u8; 32], plaintext: &Value) -> String {
    let envelope = legacy_ecies::seal(recipient, &to_bytes(plaintext)).expect("legacy ECIES seal");
    STANDARD.encode(envelope)
}

/// A `vettid-utk-v1` domain envelope of `plaintext` (serialised JSON) to a UTK, base64-encoded: the
/// `encrypted_payload` that goes with a `utk_id`.
///
/// # Panics
/// If `utk_public` is a low-order or non-canonical point, or the random source fails.
pub fn utk_payload(utk_public: &[u8; 32], plaintext: &Value) -> String {
    let envelope =
        domain::seal(Domain::Utk, utk_public, &to_bytes(plaintext)).expect("UTK domain seal");
    STANDARD.encode(envelope)
}

/// A fresh X25519 key pair the app sends as `reply_key`; the enclave seals secret values in its reply to
/// it in the `vettid-reply-v1` domain, so only this test (the app) can read them.
pub struct ReplyKey {
    private: PrivateKey,
    public: [u8; 32],
}

impl ReplyKey {
    /// A new key pair, as the app makes one per request.
    ///
    /// # Panics
    /// If the random source fails.
    pub fn generate() -> Self {
        let private = PrivateKey::generate(&X25519).expect("X25519 key generation");
        let public = x25519::public_key_bytes(&private).expect("X25519 public key");
        Self { private, public }
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as the request carries it (standard base64).
    pub fn public_b64(&self) -> String {
        STANDARD.encode(self.public)
    }

    /// Decrypt a base64 reply envelope sealed to this key.
    ///
    /// # Panics
    /// If `b64_envelope` is not standard base64 or does not open (see [`ReplyKey::try_open`] for tests
    /// that expect a failure).
    pub fn open(&self, b64_envelope: &str) -> Vec<u8> {
        self.try_open(b64_envelope)
            .unwrap_or_else(|e| panic!("reply envelope does not open: {e}"))
    }

    /// [`ReplyKey::open`], then parse the plaintext as JSON.
    ///
    /// # Panics
    /// As [`ReplyKey::open`], or if the plaintext is not JSON.
    pub fn open_json(&self, b64_envelope: &str) -> Value {
        serde_json::from_slice(&self.open(b64_envelope)).expect("reply plaintext is JSON")
    }

    /// Decrypt a base64 reply envelope, returning the failure instead of panicking.
    ///
    /// # Errors
    /// [`EnvelopeError::Base64`] (field `reply`) for bad base64, otherwise as
    /// [`vettid_vault_crypto::domain::open`]: a truncated envelope, a weak ephemeral key, or
    /// [`EnvelopeError::Decrypt`] for another key, another domain or tampering.
    pub fn try_open(&self, b64_envelope: &str) -> Result<Vec<u8>, EnvelopeError> {
        let envelope = STANDARD
            .decode(b64_envelope)
            .map_err(|_| EnvelopeError::Base64 { field: "reply" })?;
        domain::open(Domain::Reply, &self.private, &envelope).map(|plain| plain.to_vec())
    }
}

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyKey")
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

/// An Argon2id PHC string for `password` at exactly VettID's minimums ([`PHC_M_KIB`], [`PHC_T`],
/// [`PHC_P`], a random [`PHC_SALT_LEN`]-byte salt, a [`PHC_HASH_LEN`]-byte hash), encoded by the
/// `argon2` crate's own PHC encoder rather than by hand, so the vault's parser meets a real one.
///
/// Runs Argon2 over 64 MiB: about a second optimised, several unoptimised.
///
/// # Panics
/// If the random source fails.
pub fn phc_password_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};

    let mut salt = [0u8; PHC_SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).expect("random salt");
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    let params =
        Params::new(PHC_M_KIB, PHC_T, PHC_P, Some(PHC_HASH_LEN)).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id hash")
        .to_string()
}

/// A use-once transaction key as the vault hands it out (`utks` of `pin.setup`, `new_utks` later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utk {
    /// The id the app sends back as `utk_id`.
    pub id: String,
    /// The X25519 public key to seal the payload to.
    pub public_key: [u8; 32],
}

/// Parse a UTK list: `[{"id": "utk-…", "public_key": b64}]` (`pin.setup`, `credential.create`,
/// secrets), or v1's `["utk-…:b64"]` strings (`new_utks` of `pin.unlock` and `pin.change`).
///
/// # Panics
/// If `v` is not a list of either shape or a key is not 32 bytes of standard base64: a test
/// reading a response should fail there, naming what was wrong.
pub fn parse_utks(v: &Value) -> Vec<Utk> {
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("UTK list must be a JSON array, got {v}"));
    list.iter()
        .map(|entry| {
            let (id, key) = match entry.as_str() {
                Some(s) => s
                    .split_once(':')
                    .unwrap_or_else(|| panic!("UTK string is not \"id:base64\": {s}")),
                None => (
                    entry["id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("UTK without a string id: {entry}")),
                    entry["public_key"]
                        .as_str()
                        .unwrap_or_else(|| panic!("UTK {entry} without a string public_key")),
                ),
            };
            let public_key = STANDARD
                .decode(key)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .unwrap_or_else(|| panic!("UTK {id}: public_key is not 32 bytes of base64: {key}"));
            Utk {
                id: id.to_owned(),
                public_key,
            }
        })
        .collect()
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a serde_json::Value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vettid_vault_crypto::PhcHash;

    /// The enclave's side of a key: a private key the open functions take, and its public half.
    fn enclave_key() -> (PrivateKey, [u8; 32]) {
        let private = PrivateKey::generate(&X25519).unwrap();
        let public = x25519::public_key_bytes(&private).unwrap();
        (private, public)
    }

    fn b64(field: &Value) -> Vec<u8> {
        STANDARD.decode(field.as_str().unwrap()).unwrap()
    }

    #[test]
    fn pin_setup_payload_opens_as_the_three_field_form() {
        let (attestation, public) = enclave_key();
        let profile =
            json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"});
        let payload = pin_setup_payload(&public, "123456", Some(profile.clone()));
        assert_eq!(b64(&payload["ephemeral_public_key"]).len(), 32);
        assert_eq!(b64(&payload["nonce"]).len(), 12);
        let plain = legacy_ecies::open_fields(
            &attestation,
            payload["encrypted_pin"].as_str().unwrap(),
            payload["ephemeral_public_key"].as_str().unwrap(),
            payload["nonce"].as_str().unwrap(),
        )
        .unwrap();
        let plain: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(plain, json!({"pin": "123456", "profile": profile}));
        assert_eq!(payload.as_object().unwrap().len(), 3);
    }

    #[test]
    fn pin_setup_payload_without_profile_omits_the_key() {
        let (attestation, public) = enclave_key();
        let payload = pin_setup_payload(&public, "0000", None);
        let plain = legacy_ecies::open_fields(
            &attestation,
            payload["encrypted_pin"].as_str().unwrap(),
            payload["ephemeral_public_key"].as_str().unwrap(),
            payload["nonce"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(plain.as_slice(), br#"{"pin":"0000"}"#);
    }

    #[test]
    fn legacy_ecies_payload_opens_as_the_combined_envelope() {
        let (ecies, public) = enclave_key();
        let change = json!({"old_pin": "1234", "new_pin": "87654321"});
        let payload = legacy_ecies_payload(&public, &change);
        let plain = legacy_ecies::open(&ecies, &STANDARD.decode(payload).unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), change);
    }

    #[test]
    fn utk_payload_opens_in_the_utk_domain_only() {
        let (utk, public) = enclave_key();
        let body = json!({"password_hash": "$argon2id$…"});
        let envelope = STANDARD.decode(utk_payload(&public, &body)).unwrap();
        let plain = domain::open(Domain::Utk, &utk, &envelope).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), body);
        for other in [Domain::Cek, Domain::Pin, Domain::Reply] {
            assert_eq!(
                domain::open(other, &utk, &envelope).unwrap_err(),
                EnvelopeError::Decrypt
            );
        }
    }

    #[test]
    fn reply_key_opens_what_the_enclave_seals_to_it() {
        let reply = ReplyKey::generate();
        assert_eq!(
            STANDARD.decode(reply.public_b64()).unwrap(),
            reply.public_key()
        );
        let secret = br#"{"name":"api-token","value":"s3cr3t"}"#;
        let sealed = domain::seal(Domain::Reply, &reply.public_key(), secret).unwrap();
        assert_eq!(reply.open(&STANDARD.encode(&sealed)), secret);
        assert_eq!(
            reply.open_json(&STANDARD.encode(&sealed)),
            json!({"name": "api-token", "value": "s3cr3t"})
        );
        assert!(!format!("{reply:?}").contains("private"));
    }

    #[test]
    fn reply_key_refuses_other_domains_keys_and_bad_base64() {
        let reply = ReplyKey::generate();
        let as_utk = domain::seal(Domain::Utk, &reply.public_key(), b"x").unwrap();
        assert_eq!(
            reply.try_open(&STANDARD.encode(as_utk)).unwrap_err(),
            EnvelopeError::Decrypt
        );
        let to_other =
            domain::seal(Domain::Reply, &ReplyKey::generate().public_key(), b"x").unwrap();
        assert_eq!(
            reply.try_open(&STANDARD.encode(to_other)).unwrap_err(),
            EnvelopeError::Decrypt
        );
        assert_eq!(
            reply.try_open("not base64!").unwrap_err(),
            EnvelopeError::Base64 { field: "reply" }
        );
    }

    #[test]
    #[should_panic(expected = "reply envelope does not open")]
    fn reply_key_open_panics_on_a_foreign_envelope() {
        let sealed = domain::seal(Domain::Reply, &ReplyKey::generate().public_key(), b"x").unwrap();
        ReplyKey::generate().open(&STANDARD.encode(sealed));
    }

    #[test]
    fn reply_keys_are_fresh() {
        assert_ne!(
            ReplyKey::generate().public_key(),
            ReplyKey::generate().public_key()
        );
    }

    /// One Argon2 run (64 MiB) for all the checks: it is the slow helper.
    #[test]
    fn phc_password_hash_is_valid_at_exactly_the_minimums_and_verifies() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        use vettid_vault_crypto::phc;

        let encoded = phc_password_hash("correct horse battery staple");
        let parsed = PhcHash::parse(&encoded).unwrap();
        assert_eq!(
            (
                parsed.memory_kib(),
                parsed.iterations(),
                parsed.parallelism()
            ),
            (phc::MIN_M_KIB, phc::MIN_T, phc::MIN_P)
        );
        assert!(
            encoded.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"),
            "{encoded}"
        );
        let fields: Vec<&str> = encoded.split('$').collect();
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD;
        assert_eq!(unpadded.decode(fields[4]).unwrap().len(), phc::MIN_SALT_LEN);
        assert_eq!(unpadded.decode(fields[5]).unwrap().len(), phc::HASH_LEN);

        // The hash is of this password (the vault never checks that; an app's server-side peer might).
        let hash = PasswordHash::new(&encoded).unwrap();
        let argon2 = argon2::Argon2::default();
        assert!(argon2
            .verify_password(b"correct horse battery staple", &hash)
            .is_ok());
    }

    #[test]
    fn parse_utks_reads_the_list_the_vault_returns() {
        let (_, a) = enclave_key();
        let (_, b) = enclave_key();
        let list = json!([
            {"id": "utk-1", "public_key": STANDARD.encode(a)},
            {"id": "utk-2", "public_key": STANDARD.encode(b)},
        ]);
        assert_eq!(
            parse_utks(&list),
            vec![
                Utk {
                    id: "utk-1".into(),
                    public_key: a
                },
                Utk {
                    id: "utk-2".into(),
                    public_key: b
                },
            ]
        );
        assert!(parse_utks(&json!([])).is_empty());
    }

    #[test]
    #[should_panic(expected = "not 32 bytes of base64")]
    fn parse_utks_rejects_a_short_key() {
        parse_utks(&json!([{"id": "utk-1", "public_key": STANDARD.encode([1u8; 31])}]));
    }

    #[test]
    #[should_panic(expected = "must be a JSON array")]
    fn parse_utks_rejects_a_non_list() {
        parse_utks(&json!({"utks": []}));
    }

    #[test]
    fn payloads_round_trip_through_parse_utks() {
        let (utk, public) = enclave_key();
        let utks = parse_utks(&json!([{"id": "utk-9", "public_key": STANDARD.encode(public)}]));
        let envelope = STANDARD
            .decode(utk_payload(&utks[0].public_key, &json!({"x": 1})))
            .unwrap();
        assert_eq!(
            domain::open(Domain::Utk, &utk, &envelope)
                .unwrap()
                .as_slice(),
            br#"{"x":1}"#
        );
    }
}
