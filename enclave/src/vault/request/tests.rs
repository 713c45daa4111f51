//! The table of operations, the envelopes and the plaintexts, read from JSON.

use serde_json::json;

use super::*;

fn parse(token: &str, request: Value) -> Result<VaultOp, ClientError> {
    VaultOp::parse(token, request.as_object().unwrap(), true)
}

#[test]
fn every_name_and_alias_reads_as_its_operation() {
    for name in VaultOp::NAMES {
        assert!(VaultOp::serves(name), "{name}");
    }
    let utk = json!({"payload": {"utk_id": "u", "encrypted_payload": "AAAA"}});
    for (token, want) in [
        ("pin-unlock", "pin.unlock"),
        ("pin.unlock", "pin.unlock"),
        ("pin-change", "pin.change"),
        ("secrets.add", "secrets.add"),
    ] {
        assert_eq!(parse(token, utk.clone()).unwrap().name(), want);
    }
    let typed =
        json!({"type": "pin.change", "payload": {"utk_id": "u", "encrypted_payload": "AAAA"}});
    assert_eq!(parse("pin", typed).unwrap().name(), "pin.change");
    assert_eq!(
        parse("pin", json!({"type": "pin.reset"})).unwrap_err(),
        ClientError::UnknownPinOp
    );
    assert!(!VaultOp::serves("secrets.share"));
    assert_eq!(
        parse("secrets.share", json!({})).unwrap_err(),
        ClientError::NotSupported
    );
}

#[test]
fn v2_envelopes_refuse_fields_they_do_not_take() {
    let sealed = json!({"v": 2, "utk_id": "u", "sealed": "AAAA"});
    assert!(parse("pin.unlock", json!({"id": "r1", "payload": sealed})).is_ok());
    // Sent bare, the correlation fields sit beside the envelope's.
    let mut bare = sealed.clone();
    bare["id"] = "r1".into();
    assert!(parse("pin.unlock", bare).is_ok());
    let mut extra = sealed;
    extra["encrypted_payload"] = "AAAA".into();
    assert_eq!(
        parse("pin.unlock", json!({"payload": extra})).unwrap_err(),
        ClientError::UnknownField
    );
    // v1 shapes ignore what they do not know, as v1 did.
    let v1 = json!({"payload": {"utk_id": "u", "encrypted_payload": "AAAA", "x": 1}});
    assert!(parse("pin.unlock", v1).is_ok());
}

#[test]
fn bad_fields_are_named_and_v1_is_refused_first() {
    let cases = [
        (
            json!({"v": 2, "sealed": "AAAA"}),
            ClientError::BadField("utk_id"),
        ),
        (
            json!({"v": 2, "utk_id": "u", "sealed": ""}),
            ClientError::BadField("sealed"),
        ),
        (
            json!({"utk_id": "u"}),
            ClientError::BadField("encrypted_payload"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse("secrets.add", json!({ "payload": body })).unwrap_err(),
            want
        );
    }
    // Ciphertext is decoded once its key is known (after the UTK check).
    let op = parse(
        "secrets.add",
        json!({"payload": {"v": 2, "utk_id": "u", "sealed": "%%"}}),
    )
    .unwrap();
    let VaultOp::SecretsAdd(request) = op else {
        panic!("not secrets.add")
    };
    assert_eq!(
        request.ciphertext().unwrap_err(),
        ClientError::BadField("sealed")
    );
    let garbage_v1 = json!({"payload": {"utk_id": 7}});
    assert_eq!(
        VaultOp::parse("pin.unlock", garbage_v1.as_object().unwrap(), false).unwrap_err(),
        ClientError::V1EnvelopeRefused
    );
}

#[test]
fn plaintexts_map_their_fields_to_the_operations_errors() {
    let read = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        plaintext::<UnlockPlain>(&read(json!({})), true).unwrap_err(),
        ClientError::InvalidPinFormat
    );
    assert_eq!(
        plaintext::<CreatePlain>(
            &read(json!({"password_hash": "h", "create_proof": 1})),
            true
        )
        .unwrap_err(),
        ClientError::CreateProofRequired
    );
    assert_eq!(
        plaintext::<UnlockPlain>(&read(json!({"pin": "1234", "x": 1})), true).unwrap_err(),
        ClientError::UnknownField
    );
    assert!(
        plaintext::<UnlockPlain>(&read(json!({"pin": "1234", "seen_version": 3})), true).is_ok()
    );
    assert!(plaintext::<UnlockPlain>(&read(json!({"pin": "1234", "x": 1})), false).is_ok());
    assert_eq!(
        plaintext::<SecretsAddPlain>(&read(json!({"password_hash": "h", "name": 5})), false)
            .unwrap_err(),
        ClientError::BadField("name")
    );
}
