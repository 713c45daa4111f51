//! The JSON shapes VettID clients expect on replies (reference §2.5, §10 items 7–9).
//!
//! Success: the handler's object plus `event_id` (the request's `id`), `request_type` (the op)
//! and `timestamp` (RFC 3339). Error: `{type:"error", error, code, event_id?, request_type?,
//! timestamp}`. Error texts are fixed strings chosen here, so nothing internal (paths, upstream
//! messages, crypto errors) can leak into a reply.

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ClientError;

/// Largest NATS payload the enclave will parse (NATS' own default max payload is 1 MiB).
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;

/// Correlation fields copied from a request into its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCtx {
    /// The request's top-level `id`, echoed as `event_id`.
    pub event_id: Option<String>,
    /// The op (`attestation`, `pin`, ...), echoed as `request_type` on app subjects.
    pub request_type: Option<String>,
}

impl ReplyCtx {
    /// Reads `id` from a request object (string, or number rendered as a string).
    pub fn from_request(request: Option<&Map<String, Value>>, request_type: Option<&str>) -> Self {
        let event_id = request.and_then(|o| o.get("id")).and_then(|id| match id {
            Value::String(s) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Self {
            event_id,
            request_type: request_type.map(str::to_owned),
        }
    }
}

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// What a handler answers: a JSON object, or a typed reply serialised without building a map.
#[derive(Debug)]
pub enum Body {
    /// A JSON object.
    Object(Map<String, Value>),
    /// A typed reply (health, polled often: serialising a struct costs a fraction of building
    /// a map). Built with [`Body::typed`].
    Typed(Box<dyn TypedReply>),
}

impl Body {
    /// A typed reply. Its fields must not include `event_id`, `request_type` or `timestamp`:
    /// those are appended after them.
    pub fn typed<T: Serialize + fmt::Debug + Send + 'static>(reply: T) -> Self {
        Body::Typed(Box::new(reply))
    }
}

impl From<Map<String, Value>> for Body {
    fn from(m: Map<String, Value>) -> Self {
        Body::Object(m)
    }
}

/// A reply struct that encodes itself with the correlation fields appended. Implemented for
/// every `Serialize` type; a trait object so this module need not name the handlers' types.
pub trait TypedReply: fmt::Debug + Send {
    /// The reply's JSON bytes, its own fields then `event_id`, `request_type`, `timestamp`.
    fn encode(&self, ctx: &ReplyCtx) -> Bytes;
}

impl<T: Serialize + fmt::Debug + Send> TypedReply for T {
    fn encode(&self, ctx: &ReplyCtx) -> Bytes {
        let d = Decorated {
            body: self,
            event_id: ctx.event_id.as_deref(),
            request_type: ctx.request_type.as_deref(),
            timestamp: now_rfc3339(),
        };
        // A reply struct of plain fields serialises without error.
        Bytes::from(serde_json::to_vec(&d).unwrap_or_default())
    }
}

/// A typed reply with the correlation fields appended.
#[derive(Serialize)]
struct Decorated<'a, T: Serialize> {
    #[serde(flatten)]
    body: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_type: Option<&'a str>,
    timestamp: String,
}

/// Serialises a success body with the correlation fields added (keys the body already has win).
pub fn ok(body: Body, ctx: &ReplyCtx) -> Bytes {
    match body {
        Body::Object(mut map) => {
            decorate(&mut map, ctx);
            to_bytes(map)
        }
        Body::Typed(reply) => reply.encode(ctx),
    }
}

/// Serialises an error reply.
pub fn error(err: ClientError, ctx: &ReplyCtx) -> Bytes {
    let mut body = error_body(err);
    decorate(&mut body, ctx);
    to_bytes(body)
}

/// An error's reply fields without the correlation fields: `{type:"error", error, code, …}`
/// (a v2 reply seals exactly this).
pub fn error_body(err: ClientError) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("type".into(), "error".into());
    body.insert("error".into(), err.to_string().into());
    body.insert("code".into(), err.code().into());
    err.extras(&mut body);
    body
}

fn decorate(body: &mut Map<String, Value>, ctx: &ReplyCtx) {
    if let Some(id) = &ctx.event_id {
        body.entry("event_id").or_insert_with(|| id.clone().into());
    }
    if let Some(t) = &ctx.request_type {
        body.entry("request_type")
            .or_insert_with(|| t.clone().into());
    }
    body.entry("timestamp")
        .or_insert_with(|| now_rfc3339().into());
}

fn to_bytes(body: Map<String, Value>) -> Bytes {
    // Serialising a Map of JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&Value::Object(body)).unwrap_or_default())
}

/// Deepest nesting of arrays and objects a payload may have. Real payloads nest two deep (the v1
/// envelope `{id, payload: {…}}`), signed control commands three; 16 leaves room for any app
/// version and stops `[[[[…` long before serde_json's own limit of 128.
pub const MAX_PAYLOAD_DEPTH: usize = 16;

/// Most JSON values (object keys count as values) a payload may hold. Real payloads hold about a
/// dozen: a few fields whose values are long base64 strings. At the cap, the parsed tree costs at
/// most about 0.7 MiB of overhead (a one-key object is the dearest at ~640 bytes of B-tree node),
/// where 1 MiB of `{"a":[{"":0},…]}` cost 96 MiB unbounded.
pub const MAX_PAYLOAD_VALUES: usize = 1024;

/// Parses a payload as a JSON object, with the size and shape bounds.
///
/// The shape ([`MAX_PAYLOAD_DEPTH`], [`MAX_PAYLOAD_VALUES`]) is checked by a first pass that
/// builds nothing, so a payload over a bound costs no more than reading it.
///
/// # Errors
/// [`ClientError::PayloadTooLarge`] over [`MAX_PAYLOAD_LEN`] or [`MAX_PAYLOAD_VALUES`];
/// [`ClientError::InvalidJson`] for anything that is not a JSON object, or nested deeper than
/// [`MAX_PAYLOAD_DEPTH`].
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, ClientError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ClientError::PayloadTooLarge);
    }
    shape::check(payload)?;
    match serde_json::from_slice(payload) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ClientError::InvalidJson),
    }
}

/// The allocation-free first pass of [`parse_object`]: visits every value once, counting them
/// and tracking depth, and keeps nothing (strings are seen borrowed or through serde_json's
/// reused scratch buffer).
mod shape {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

    use super::{ClientError, MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_VALUES};

    /// Which bound stopped the pass, if any.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Over {
        No,
        Depth,
        Values,
    }

    struct Walk<'a> {
        depth: usize,
        values: &'a Cell<usize>,
        over: &'a Cell<Over>,
    }

    pub(super) fn check(payload: &[u8]) -> Result<(), ClientError> {
        let values = Cell::new(0);
        let over = Cell::new(Over::No);
        let walk = Walk {
            depth: 0,
            values: &values,
            over: &over,
        };
        let mut de = serde_json::Deserializer::from_slice(payload);
        let result = walk.deserialize(&mut de).and_then(|()| de.end());
        match (over.get(), result) {
            (Over::Values, _) => Err(ClientError::PayloadTooLarge),
            (Over::Depth, _) => Err(ClientError::InvalidJson),
            (Over::No, Ok(())) => Ok(()),
            (Over::No, Err(_)) => Err(ClientError::InvalidJson),
        }
    }

    impl<'a> Walk<'a> {
        /// Counts one value; refuses past the cap.
        fn count<E: de::Error>(&self) -> Result<(), E> {
            let n = self.values.get() + 1;
            self.values.set(n);
            if n > MAX_PAYLOAD_VALUES {
                self.over.set(Over::Values);
                return Err(E::custom("too many values"));
            }
            Ok(())
        }

        /// The walk one level down; refuses past the depth bound.
        fn inner<E: de::Error>(&self) -> Result<Walk<'a>, E> {
            if self.depth >= MAX_PAYLOAD_DEPTH {
                self.over.set(Over::Depth);
                return Err(E::custom("nested too deeply"));
            }
            Ok(Walk {
                depth: self.depth + 1,
                values: self.values,
                over: self.over,
            })
        }
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.count()
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.count()
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.count()
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.count()
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.count()
        }

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.count()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.count()?;
            while seq.next_element_seed(self.inner()?)?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.count()?;
            while map.next_key_seed(self.inner()?)?.is_some() {
                map.next_value_seed(self.inner()?)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_v1_shape_and_fixed_text() {
        let ctx = ReplyCtx {
            event_id: Some("e1".into()),
            request_type: Some("attestation".into()),
        };
        let v: Value = serde_json::from_slice(&error(ClientError::MissingNonce, &ctx)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"], "nonce is required");
        assert_eq!(v["code"], "missing_nonce");
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["request_type"], "attestation");
        assert!(humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn a_typed_body_is_its_fields_then_the_correlation_fields() {
        #[derive(Debug, Serialize)]
        struct Reply {
            healthy: bool,
            phase: &'static str,
        }
        let body = Body::typed(Reply {
            healthy: true,
            phase: "serving",
        });
        let ctx = ReplyCtx {
            event_id: Some("e1".into()),
            request_type: None,
        };
        let bytes = ok(body, &ctx);
        let text = std::str::from_utf8(&bytes).unwrap();
        let prefix = r#"{"healthy":true,"phase":"serving","event_id":"e1","timestamp":""#;
        assert!(text.starts_with(prefix), "{text}");
        let stamp = text[prefix.len()..].strip_suffix("\"}").unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{text}");
    }

    #[test]
    fn event_id_comes_from_string_or_number_ids_only() {
        let o = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": "a"}))), None)
                .event_id
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": 7}))), None)
                .event_id
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            ReplyCtx::from_request(Some(&o(serde_json::json!({"id": {"x":1}}))), None).event_id,
            None
        );
    }

    #[test]
    fn payload_parsing_rejects_non_objects_and_oversize() {
        assert_eq!(parse_object(b"[1]"), Err(ClientError::InvalidJson));
        assert_eq!(parse_object(b"{"), Err(ClientError::InvalidJson));
        assert_eq!(parse_object(b"\xff"), Err(ClientError::InvalidJson));
        assert_eq!(
            parse_object(&vec![b' '; MAX_PAYLOAD_LEN + 1]),
            Err(ClientError::PayloadTooLarge)
        );
        assert!(parse_object(b"{}").is_ok());
    }

    #[test]
    fn payload_shape_is_bounded_before_a_value_is_built() {
        // Many small objects: 96x the payload once parsed, unbounded.
        let mut many = b"{\"a\":[".to_vec();
        for _ in 0..MAX_PAYLOAD_VALUES {
            many.extend_from_slice(b"{\"\":0},");
        }
        many.extend_from_slice(b"0]}");
        assert!(matches!(
            parse_object(&many),
            Err(ClientError::PayloadTooLarge)
        ));
        // Depth: 16 levels parse, 17 do not (serde_json alone allows 128).
        let nest = |levels: usize| {
            let mut s = "{\"a\":".repeat(levels - 1) + "{}";
            s.push_str(&"}".repeat(levels - 1));
            s
        };
        assert!(parse_object(nest(MAX_PAYLOAD_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_object(nest(MAX_PAYLOAD_DEPTH + 1).as_bytes()),
            Err(ClientError::InvalidJson)
        );
        assert_eq!(parse_object(&[b'['; 200]), Err(ClientError::InvalidJson));
        // A real-shaped payload with long strings is untouched by the bounds.
        let big = format!(
            "{{\"id\":\"r1\",\"payload\":{{\"v\":2,\"utk_id\":\"u\",\"sealed\":\"{}\"}}}}",
            "A".repeat(MAX_PAYLOAD_LEN - 100)
        );
        assert_eq!(parse_object(big.as_bytes()).unwrap().len(), 2);
        // Exactly at the value cap: an object holding 511 key/value pairs plus itself is 1023.
        let mut at = String::from("{");
        for i in 0..(MAX_PAYLOAD_VALUES - 1) / 2 {
            at.push_str(&format!("\"k{i}\":0,"));
        }
        at.pop();
        at.push('}');
        assert!(parse_object(at.as_bytes()).is_ok());
    }
}
