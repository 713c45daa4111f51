//! Typed request fields: `#[derive(Deserialize)]` structs read from a JSON object, with errors
//! that name the field.
//!
//! serde_json's own errors say "invalid type" without saying where, and the apps' contract is
//! `bad_field` *naming* the field (reference §2.5). So requests are read through [`from_object`],
//! a small deserializer over an already-parsed object whose errors are [`FieldError`]: a missing
//! field comes back with serde's own `&'static` field name, an invalid value with the name of
//! the key it sat under (looked up in the struct's field list serde hands the deserializer).
//!
//! The same struct can be read strictly (a field it does not have is refused) or leniently
//! (ignored), chosen per call: v2 shapes are ours and strict; v1 shapes are what deployed apps
//! send, and VettID's Go vault ignored fields it did not know, so they stay lenient.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest string field accepted (payloads are bounded by the NATS payload cap anyway).
pub const MAX_FIELD_LEN: usize = 256 * 1024;

/// Whether fields a request struct does not have are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Refused ([`FieldError::Unknown`]), except these (read elsewhere, or the correlation
    /// fields of a request sent without the `payload` wrapper).
    Refuse {
        /// Keys passed over.
        except: &'static [&'static str],
    },
    /// Ignored, as VettID's v1 vault did.
    Ignore,
}

impl Unknown {
    /// Refused, with no exception.
    pub const REFUSE: Unknown = Unknown::Refuse { except: &[] };
}

/// Why a request object did not read as its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong type, encoding or length.
    Invalid(&'static str),
    /// A field the struct does not have, read with [`Unknown::Refuse`].
    Unknown,
    /// Not an object of the expected shape at all.
    Shape,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Missing(name) => write!(f, "missing field {name}"),
            FieldError::Invalid(name) => write!(f, "invalid field {name}"),
            FieldError::Unknown => f.write_str("unknown field"),
            FieldError::Shape => f.write_str("not the expected object"),
        }
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        FieldError::Shape
    }

    fn missing_field(field: &'static str) -> Self {
        FieldError::Missing(field)
    }

    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        FieldError::Unknown
    }
}

/// Reads `object` as `T`.
///
/// # Errors
/// [`FieldError`], naming the field where there is one.
pub fn from_object<T: DeserializeOwned>(
    object: &Map<String, Value>,
    unknown: Unknown,
) -> Result<T, FieldError> {
    T::deserialize(Object { object, unknown })
}

/// The deserializer [`from_object`] uses.
struct Object<'a> {
    object: &'a Map<String, Value>,
    unknown: Unknown,
}

impl<'a> de::Deserializer<'a> for Object<'a> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, FieldError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_map(Entries {
            entries: self.object.iter(),
            pending: None,
            fields,
            unknown: self.unknown,
        })
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    /// The entry whose key was just read: its name (from the struct's list) and value.
    pending: Option<(Option<&'static str>, &'a Value)>,
    fields: &'static [&'static str],
    unknown: Unknown,
}

impl<'a> MapAccess<'a> for Entries<'a> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let name = self.fields.iter().copied().find(|f| f == key);
        if let (None, Unknown::Refuse { except }) = (name, self.unknown) {
            if !except.contains(&key.as_str()) {
                return Err(FieldError::Unknown);
            }
        }
        self.pending = Some((name, value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, FieldError> {
        let (name, value) = self.pending.take().ok_or(FieldError::Shape)?;
        seed.deserialize(value)
            .map_err(|_| name.map_or(FieldError::Shape, FieldError::Invalid))
    }
}

/// A non-empty string of at most [`MAX_FIELD_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > MAX_FIELD_LEN {
            return Err(de::Error::invalid_length(s.len(), &"1 to 256 KiB"));
        }
        Ok(Self(s))
    }
}

impl Text {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string of at most `MAX` bytes, possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<const MAX: usize>(pub String);

impl<'de, const MAX: usize> Deserialize<'de> for Bounded<MAX> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() > MAX {
            return Err(de::Error::invalid_length(s.len(), &"a shorter string"));
        }
        Ok(Self(s))
    }
}

/// Standard base64 (non-empty), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64(pub Vec<u8>);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(d)?;
        B64.decode(text.0)
            .map(Self)
            .map_err(|_| de::Error::custom("not standard base64"))
    }
}

/// A base64 ciphertext (1 byte to [`MAX_FIELD_LEN`] of text), decoded as it is read, straight
/// from the request's text without a copy of it. Whether it was valid base64 is told only when
/// [`Sealed::bytes`] is asked, once its key is known: a request is refused for what it names (an
/// unknown UTK, a locked vault) before its ciphertext counts, whatever that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed(Option<Vec<u8>>);

impl Sealed {
    /// The ciphertext, or `None` if it was not standard base64.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ciphertext;
        impl Visitor<'_> for Ciphertext {
            type Value = Sealed;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string of 1 byte to 256 KiB")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Sealed, E> {
                if s.is_empty() || s.len() > MAX_FIELD_LEN {
                    return Err(E::invalid_length(s.len(), &self));
                }
                Ok(Sealed(B64.decode(s).ok()))
            }
        }
        d.deserialize_str(Ciphertext)
    }
}

/// A base64 X25519 public key (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key32(pub [u8; 32]);

impl<'de> Deserialize<'de> for Key32 {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Base64(bytes) = Base64::deserialize(d)?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| de::Error::custom("not 32 bytes"))
    }
}

/// The number 2 and nothing else: the `v` of a v2 envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Two;

impl<'de> Deserialize<'de> for Two {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            2 => Ok(Two),
            _ => Err(de::Error::custom("not 2")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        name: Text,
        key: Key32,
        note: Option<Bounded<4>>,
    }

    fn read(v: serde_json::Value, unknown: Unknown) -> Result<Sample, FieldError> {
        from_object(v.as_object().unwrap(), unknown)
    }

    #[test]
    fn errors_name_the_field() {
        let key = B64.encode([7u8; 32]);
        let ok = read(json!({"name": "a", "key": key, "x": 1}), Unknown::Ignore).unwrap();
        assert_eq!(ok.name.as_str(), "a");
        assert_eq!(ok.key.0, [7; 32]);
        assert!(ok.note.is_none());
        let cases = [
            (json!({"key": key}), FieldError::Missing("name")),
            (json!({"name": "", "key": key}), FieldError::Invalid("name")),
            (json!({"name": 5, "key": key}), FieldError::Invalid("name")),
            (
                json!({"name": "a", "key": "AAAA"}),
                FieldError::Invalid("key"),
            ),
            (
                json!({"name": "a", "key": "%%"}),
                FieldError::Invalid("key"),
            ),
            (
                json!({"name": "a", "key": key, "note": "toolong"}),
                FieldError::Invalid("note"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                read(input.clone(), Unknown::Ignore).unwrap_err(),
                want,
                "{input}"
            );
        }
        // `null` is absent for an optional field.
        assert!(read(
            json!({"name": "a", "key": key, "note": null}),
            Unknown::REFUSE
        )
        .is_ok());
    }

    #[test]
    fn strict_reads_refuse_fields_the_struct_lacks() {
        let key = B64.encode([7u8; 32]);
        let extra = json!({"name": "a", "key": key, "extra": true});
        assert_eq!(
            read(extra.clone(), Unknown::REFUSE).unwrap_err(),
            FieldError::Unknown
        );
        assert!(read(extra.clone(), Unknown::Ignore).is_ok());
        let except = Unknown::Refuse { except: &["extra"] };
        assert!(read(extra, except).is_ok());
    }

    #[test]
    fn a_ciphertext_is_checked_for_shape_at_once_and_for_base64_when_asked() {
        #[derive(Deserialize)]
        struct S {
            sealed: Sealed,
        }
        let read =
            |v| from_object::<S>(json!({ "sealed": v }).as_object().unwrap(), Unknown::REFUSE);
        assert_eq!(
            read(json!("AQID")).unwrap().sealed.bytes(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(read(json!("%%")).unwrap().sealed.bytes(), None);
        for bad in [json!(""), json!(7), json!("A".repeat(MAX_FIELD_LEN + 1))] {
            assert_eq!(read(bad).err(), Some(FieldError::Invalid("sealed")));
        }
    }

    #[test]
    fn only_two_is_two() {
        #[derive(Deserialize)]
        struct V {
            #[allow(dead_code)]
            v: Two,
        }
        let read = |v| from_object::<V>(json!({ "v": v }).as_object().unwrap(), Unknown::REFUSE);
        assert!(read(json!(2)).is_ok());
        for bad in [json!(3), json!("2"), json!(2.5), json!(null)] {
            assert_eq!(read(bad).err(), Some(FieldError::Invalid("v")));
        }
    }
}
