use super::*;

const KEY: [u8; 32] = [0x42; 32];
const ID: ObjectId<'static> = ObjectId {
    vault: "0f8e2b6c-1d2a-4c3b-9e8f-123456789abc",
    name: "state",
    version: 7,
};

#[test]
fn round_trip_and_layout() {
    let bytes = seal(&KEY, &ID, b"vault state").unwrap();
    assert_eq!(bytes.len(), MIN_LEN + 11);
    assert_eq!(bytes[0], FORMAT_V1);
    assert_eq!(open(&KEY, &ID, &bytes).unwrap().as_slice(), b"vault state");
    let parsed = SealedObject::parse(&bytes).unwrap();
    assert_eq!(parsed.to_bytes(), bytes);
    assert_eq!(
        open(&KEY, &ID, &seal(&KEY, &ID, b"").unwrap())
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn two_seals_use_different_nonces() {
    assert_ne!(
        seal(&KEY, &ID, b"x").unwrap(),
        seal(&KEY, &ID, b"x").unwrap()
    );
}

#[test]
fn swapped_vault_name_or_version_is_rejected() {
    let bytes = seal(&KEY, &ID, b"payload").unwrap();
    let others = [
        ObjectId {
            vault: "0f8e2b6c-1d2a-4c3b-9e8f-123456789abd",
            ..ID
        },
        ObjectId {
            name: "material",
            ..ID
        },
        ObjectId { version: 6, ..ID },
        ObjectId { version: 8, ..ID },
    ];
    for other in others {
        assert_eq!(
            open(&KEY, &other, &bytes).unwrap_err(),
            SealedError::Decrypt,
            "{other:?}"
        );
    }
}

#[test]
fn wrong_key_and_any_flipped_bit_are_rejected() {
    let bytes = seal(&KEY, &ID, b"payload").unwrap();
    assert_eq!(
        open(&[0x43; 32], &ID, &bytes).unwrap_err(),
        SealedError::Decrypt
    );
    for i in 1..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        assert_eq!(
            open(&KEY, &ID, &bad).unwrap_err(),
            SealedError::Decrypt,
            "byte {i}"
        );
    }
}

#[test]
fn unknown_format_and_truncation_are_rejected() {
    let bytes = seal(&KEY, &ID, b"payload").unwrap();
    for version in [0u8, 2, 0xff] {
        let mut bad = bytes.clone();
        bad[0] = version;
        assert_eq!(
            open(&KEY, &ID, &bad).unwrap_err(),
            SealedError::UnsupportedFormat(version)
        );
    }
    assert_eq!(
        open(&KEY, &ID, &[]).unwrap_err(),
        SealedError::Truncated {
            got: 0,
            min: MIN_LEN
        }
    );
    for len in [1, 13, MIN_LEN - 1] {
        assert_eq!(
            open(&KEY, &ID, &bytes[..len]).unwrap_err(),
            SealedError::Truncated {
                got: len,
                min: MIN_LEN
            }
        );
    }
    // Cutting plaintext bytes keeps the length valid but breaks the tag.
    assert_eq!(
        open(&KEY, &ID, &bytes[..bytes.len() - 1]).unwrap_err(),
        SealedError::Decrypt
    );
}

#[test]
fn aad_is_injective_across_field_boundaries() {
    // Without length prefixes these pairs would concatenate to the same bytes.
    let a = aad(
        &ObjectId {
            vault: "ab",
            name: "c",
            version: 1,
        },
        FORMAT_V1,
    )
    .unwrap();
    let b = aad(
        &ObjectId {
            vault: "a",
            name: "bc",
            version: 1,
        },
        FORMAT_V1,
    )
    .unwrap();
    assert_ne!(a, b);
    let mut expected = Vec::new();
    expected.extend_from_slice(&20u32.to_be_bytes());
    expected.extend_from_slice(b"vettid-sealed-object");
    expected.push(1);
    expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
    expected.extend_from_slice(&1u64.to_be_bytes());
    assert_eq!(a, expected);
}

#[test]
fn object_id_bounds_are_enforced() {
    let long_vault = "v".repeat(MAX_VAULT_LEN + 1);
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    for id in [
        ObjectId { vault: "", ..ID },
        ObjectId { name: "", ..ID },
        ObjectId {
            vault: &long_vault,
            ..ID
        },
        ObjectId {
            name: &long_name,
            ..ID
        },
    ] {
        assert!(matches!(
            seal(&KEY, &id, b"x").unwrap_err(),
            SealedError::InvalidObjectId(_)
        ));
    }
    let max = ObjectId {
        vault: &long_vault[1..],
        name: &long_name[1..],
        version: u64::MAX,
    };
    assert_eq!(
        open(&KEY, &max, &seal(&KEY, &max, b"x").unwrap())
            .unwrap()
            .as_slice(),
        b"x"
    );
}
