//! Unit tests of the BER reader's edge cases; the schema and the real samples are tested in `tests/`.

use super::*;

fn all(input: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, RecipientError> {
    let mut elements = Elements::new(input);
    let mut out = Vec::new();
    while let Some(tlv) = elements.next()? {
        out.push((tlv.tag, tlv.body.to_vec()));
    }
    Ok(out)
}

#[test]
fn short_and_long_definite_lengths() {
    assert_eq!(all(&[0x04, 0x01, 0xAA]).unwrap(), vec![(4, vec![0xAA])]);
    assert_eq!(
        all(&[0x04, 0x81, 0x01, 0xAA]).unwrap(),
        vec![(4, vec![0xAA])]
    );
    let mut long = vec![0x04, 0x82, 0x01, 0x00];
    long.extend([7u8; 256]);
    assert_eq!(all(&long).unwrap()[0].1.len(), 256);
}

#[test]
fn indefinite_length_body_excludes_the_eoc() {
    let input = [0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00];
    assert_eq!(all(&input).unwrap(), vec![(0x30, vec![0x02, 0x01, 0x05])]);
    // Nested indefinite elements close in order.
    let nested = [0x30, 0x80, 0xA0, 0x80, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
    let outer = all(&nested).unwrap();
    assert_eq!(outer[0].1, vec![0xA0, 0x80, 0x04, 0x00, 0x00, 0x00]);
}

#[test]
fn length_past_the_end_is_truncated_not_a_panic() {
    for input in [
        &[0x04, 0x02, 0xAA][..],
        &[0x04, 0x82, 0xFF][..],
        &[0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF][..],
        &[0x04][..],
        &[0x30, 0x80, 0x02, 0x01, 0x05][..],
        &[0x30, 0x80, 0x00][..],
    ] {
        assert!(
            matches!(all(input), Err(RecipientError::Malformed(_))),
            "{input:02x?}"
        );
    }
}

#[test]
fn forbidden_forms_are_refused() {
    let cases: [(&[u8], &str); 5] = [
        (&[0x04, 0x80, 0x00, 0x00], "indefinite primitive"),
        (&[0x1F, 0x81, 0x01, 0x00], "high tag"),
        (&[0x04, 0x85, 0, 0, 0, 0, 1, 0xAA], "five length octets"),
        (&[0x04, 0xFF], "reserved length octet"),
        (&[0x00, 0x00], "stray EOC"),
    ];
    for (input, why) in cases {
        assert!(
            matches!(all(input), Err(RecipientError::Malformed(_))),
            "{why}"
        );
    }
    // An EOC with a non-zero length octet is not an EOC.
    assert!(all(&[0x30, 0x80, 0x00, 0x01, 0xAA, 0x00, 0x00]).is_err());
}

#[test]
fn nesting_is_bounded() {
    let levels = MAX_DEPTH + 2;
    let mut deep = Vec::new();
    for _ in 0..levels {
        deep.extend([0x30, 0x80]);
    }
    for _ in 0..levels {
        deep.extend([0x00, 0x00]);
    }
    assert_eq!(
        all(&deep),
        Err(RecipientError::Malformed("nesting too deep"))
    );

    // Definite-length nesting is bounded when walked.
    let mut nested = vec![0x05, 0x00];
    for _ in 0..levels {
        let mut outer = vec![0x30, u8::try_from(nested.len()).unwrap()];
        outer.extend(&nested);
        nested = outer;
    }
    let mut elements = Elements::new(&nested);
    let mut result = Ok(());
    while let Some(tlv) = elements.next().unwrap_or(None) {
        match tlv.children("x").and_then(|mut c| c.next()) {
            Ok(Some(_)) => elements = tlv.children("x").unwrap(),
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    assert_eq!(result, Err(RecipientError::Malformed("nesting too deep")));
}

#[test]
fn expect_and_finish() {
    let input = [0x02, 0x01, 0x02, 0x05, 0x00];
    let mut elements = Elements::new(&input);
    assert_eq!(elements.peek_tag(), Some(tag::INTEGER));
    assert!(elements.expect(tag::INTEGER, "int").is_ok());
    assert!(elements.finish("end").is_err());
    assert!(elements.expect(tag::OID, "oid").is_err());
}
