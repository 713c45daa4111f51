//! Known-answer vectors of the v2 envelope (also in docs/VAULT.md, and recomputed by the
//! enclave's aws-lc implementation in `vault-crypto/src/v2.rs`): a mobile team implementing the
//! text checks its code against these.

use vettid_app_client::envelope::{self, Binding};

const RECIPIENT_SCALAR: [u8; 32] = [0x11; 32];
const EPH_SCALAR: [u8; 32] = [0x22; 32];
const NONCE: [u8; 24] = [0x33; 24];
const BINDING: Binding<'static> = Binding {
    op: "pin.unlock",
    owner: "user-1",
    key_ref: "utk-0011223344556677",
};
const PLAINTEXT: &[u8] = br#"{"pin":"123456"}"#;
const RECIPIENT_PUBLIC: &str = "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13";
const REQUEST: &str = "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20333333333333333333333333333333333333333333333333598f44e2dc0689ab52968c7871db2970c84dba7f0a050bf525e5c15f77f47387";
/// The enclave's reply `{"status":"unlocked"}` under this request's reply key, nonce 0x44….
const REPLY: &str = "44444444444444444444444444444444444444444444444426deee15198e83ca77bef1a9027c9358db9ecf792297282e2024bbd3907359772152abc8ed";

fn x25519_public(scalar: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*scalar)).to_bytes()
}

#[test]
fn the_request_vector_and_its_reply() {
    let recipient = x25519_public(&RECIPIENT_SCALAR);
    assert_eq!(hex::encode(recipient), RECIPIENT_PUBLIC);
    let (env, reply_key) =
        envelope::seal_with(&EPH_SCALAR, NONCE, &recipient, &BINDING, PLAINTEXT).unwrap();
    assert_eq!(hex::encode(&env), REQUEST);
    let reply = hex::decode(REPLY).unwrap();
    assert_eq!(
        reply_key.open(&reply).unwrap().as_slice(),
        br#"{"status":"unlocked"}"#
    );
}

#[test]
fn a_reply_rewritten_in_any_byte_or_for_another_binding_is_refused() {
    let recipient = x25519_public(&RECIPIENT_SCALAR);
    let reply = hex::decode(REPLY).unwrap();
    let (_, reply_key) =
        envelope::seal_with(&EPH_SCALAR, NONCE, &recipient, &BINDING, PLAINTEXT).unwrap();
    for i in 0..reply.len() {
        let mut bad = reply.clone();
        bad[i] ^= 0x80;
        assert!(reply_key.open(&bad).is_err(), "byte {i}");
    }
    // The same request bytes for another op give another reply key.
    let other = Binding {
        op: "pin.change",
        ..BINDING
    };
    let (_, other_key) =
        envelope::seal_with(&EPH_SCALAR, NONCE, &recipient, &other, PLAINTEXT).unwrap();
    assert!(other_key.open(&reply).is_err());
}
