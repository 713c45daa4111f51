//! Strict CBOR decoding on top of `ciborium::Value`.
//!
//! `ciborium` happily decodes a map with a repeated key and stops reading after the first item, so the two
//! attacks that broke other Nitro verifiers (base/nitro-validator#34 and #36) are closed here: every decode
//! must consume the whole input, and every map, at any depth, must have distinct keys. Keys are compared by
//! their canonical re-encoding, so `1` written in one byte and `1` written in nine bytes are the same key.

use std::collections::BTreeSet;

use ciborium::Value;

use crate::error::Malformed;

/// Decodes exactly one CBOR item that spans all of `bytes`, with no duplicate map keys anywhere inside.
pub(crate) fn decode_exact(bytes: &[u8], what: &'static str) -> Result<Value, Malformed> {
    let mut rest = bytes;
    // ciborium limits nesting to 256 levels, so hostile nesting cannot overflow the stack.
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(|e| Malformed::Cbor {
        what,
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Malformed::TrailingBytes(what));
    }
    check_unique_keys(&value, what)?;
    Ok(value)
}

/// Rejects any map, at any depth, that repeats a key.
fn check_unique_keys(value: &Value, what: &'static str) -> Result<(), Malformed> {
    match value {
        Value::Map(entries) => {
            let mut seen = BTreeSet::new();
            for (key, item) in entries {
                if !seen.insert(encode(key)) {
                    return Err(Malformed::DuplicateKey(what));
                }
                check_unique_keys(key, what)?;
                check_unique_keys(item, what)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_unique_keys(item, what)),
        Value::Tag(_, inner) => check_unique_keys(inner, what),
        _ => Ok(()),
    }
}

/// Canonical re-encoding of a value (definite lengths, shortest integers), used as a set key.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for values that were just decoded.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_rejected_even_when_encoded_differently() {
        // {1: 0, 1: 0} with the second key written as a two-byte integer.
        let bytes = [0xa2, 0x01, 0x00, 0x18, 0x01, 0x00];
        assert_eq!(decode_exact(&bytes, "t"), Err(Malformed::DuplicateKey("t")));
    }

    #[test]
    fn nested_duplicate_keys_rejected() {
        // [{"a": 1, "a": 2}]
        let bytes = [0x81, 0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert_eq!(decode_exact(&bytes, "t"), Err(Malformed::DuplicateKey("t")));
    }

    #[test]
    fn trailing_bytes_rejected() {
        assert_eq!(
            decode_exact(&[0x01, 0x02], "t"),
            Err(Malformed::TrailingBytes("t"))
        );
    }

    #[test]
    fn indefinite_map_accepted() {
        let bytes = [0xbf, 0x61, b'a', 0x01, 0xff];
        let value = decode_exact(&bytes, "t").unwrap();
        assert_eq!(
            value,
            Value::Map(vec![(Value::Text("a".into()), Value::Integer(1.into()))])
        );
    }

    #[test]
    fn truncated_input_rejected() {
        assert!(matches!(
            decode_exact(&[0x82, 0x01], "t"),
            Err(Malformed::Cbor { .. })
        ));
    }
}
