//! RFC 8785 (JSON Canonicalization Scheme) for the subset of JSON the PCR manifest uses, and a strict parser.
//!
//! The manifest signature covers canonical bytes, so signer and verifier must agree on them exactly. To keep the
//! scheme small enough to re-implement in a few lines anywhere, numbers are restricted to integers within
//! ±(2^53 − 1), where RFC 8785's ECMAScript number formatting is plain decimal. Objects are sorted by the UTF-16
//! code units of their keys, strings are escaped as ECMAScript's `JSON.stringify` does (only `"`, `\` and
//! U+0000–U+001F), and there is no whitespace. The parser refuses duplicate object keys, which
//! `serde_json::Value` would otherwise resolve silently (last one wins) and let a signer and a verifier read
//! different manifests.

use std::fmt::Write;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Largest integer magnitude accepted: beyond it, JavaScript numbers (and RFC 8785) lose precision.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why bytes could not be parsed or canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// Not valid JSON, or a duplicate key, or a non-integer number (the parser's message).
    #[error("invalid JSON: {0}")]
    Parse(String),
    /// A number is not an integer within ±(2^53 − 1).
    #[error("number {0} is not an integer within ±(2^53 - 1)")]
    Number(String),
}

/// Parses JSON, refusing duplicate object keys and non-integer numbers.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JcsError> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|Strict(value)| value)
        .map_err(|e| JcsError::Parse(e.to_string()))
}

/// The RFC 8785 canonical form of `value`.
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(n: &Number, out: &mut String) -> Result<(), JcsError> {
    let in_range = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u <= MAX_SAFE_INTEGER,
        (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
        (None, None) => false,
    };
    if !in_range {
        return Err(JcsError::Number(n.to_string()));
    }
    // Integers print as plain decimal in both serde_json and ECMAScript within this range.
    out.push_str(&n.to_string());
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A `serde_json::Value` built by a visitor that refuses duplicate keys and non-integer numbers.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate keys or non-integer numbers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format!("non-integer number {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(json: &str) -> Result<String, JcsError> {
        canonicalize(&parse_strict(json.as_bytes())?)
    }

    #[test]
    fn keys_sorted_by_utf16_code_units_not_bytes() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+E000; in UTF-8 (F0 9F …
        // against EE 80 80) it would sort after.
        let json = "{\"\u{e000}\":1,\"\u{1f600}\":2,\"a\":3,\"\u{80}\":4}";
        assert_eq!(
            canon(json).unwrap(),
            "{\"a\":3,\"\u{80}\":4,\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn strings_escaped_like_json_stringify() {
        let json = r#"["\u0000\u001f\b\t\n\f\r\"\\/\u007f\u00e9\u2028"]"#;
        assert_eq!(
            canon(json).unwrap(),
            "[\"\\u0000\\u001f\\b\\t\\n\\f\\r\\\"\\\\/\u{7f}\u{e9}\u{2028}\"]"
        );
    }

    #[test]
    fn whitespace_removed_and_literals_kept() {
        let json = "{ \"b\" : [ true , false , null ] ,\n \"a\" : 0 , \"c\": -9007199254740991 }";
        assert_eq!(
            canon(json).unwrap(),
            "{\"a\":0,\"b\":[true,false,null],\"c\":-9007199254740991}"
        );
        // serde_json reads `-0` as a float, so it is refused like any non-integer (the Python script agrees).
        assert!(matches!(canon("[-0]"), Err(JcsError::Parse(_))));
    }

    #[test]
    fn non_integer_and_unsafe_numbers_refused() {
        assert!(matches!(canon("[1.0]"), Err(JcsError::Parse(_))));
        assert!(matches!(canon("[1e2]"), Err(JcsError::Parse(_))));
        assert!(matches!(
            canon("[9007199254740992]"),
            Err(JcsError::Number(_))
        ));
        assert!(matches!(
            canon("[-9007199254740992]"),
            Err(JcsError::Number(_))
        ));
        assert!(matches!(
            canon("[18446744073709551616]"),
            Err(JcsError::Parse(_))
        ));
    }

    #[test]
    fn duplicate_keys_refused_at_any_depth() {
        assert!(matches!(canon(r#"{"a":1,"a":1}"#), Err(JcsError::Parse(_))));
        assert!(matches!(
            canon(r#"[{"x":{"a":1,"a":2}}]"#),
            Err(JcsError::Parse(_))
        ));
        // The same key spelt with an escape is still the same key.
        assert!(matches!(
            canon(r#"{"a":1,"\u0061":2}"#),
            Err(JcsError::Parse(_))
        ));
    }

    #[test]
    fn invalid_json_refused() {
        for bad in ["", "{", "[1,]", "{\"a\":1} x", "\"\\ud800\"", "NaN"] {
            assert!(canon(bad).is_err(), "{bad:?}");
        }
    }
}
