//! The attestation payload: AWS's nine fields, checked against the rules of the AWS attestation procedure.
//!
//! Wire quirks that real documents show are accepted (definite or indefinite map, `null` for absent optional
//! fields, zero-length `user_data`, 16 or 17 PCRs); anything AWS forbids is refused with a typed error. Unknown
//! payload keys are skipped rather than refused: they are signed, and refusing them would break every app the
//! day AWS adds a field (base/nitro-validator#32).

use std::collections::BTreeMap;

use ciborium::Value;

use crate::cbor::decode_exact;
use crate::cose::Envelope;
use crate::error::{Error, Malformed};

/// Largest document accepted. Real documents are 4.4–5.3 KB; the bound is checked before any decoding.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Most CA certificates accepted in `cabundle`. Real bundles hold 4; webpki caps paths at 6 sub-CAs anyway.
pub const MAX_CABUNDLE_LEN: usize = 8;
/// Largest certificate (leaf or bundle entry) AWS allows.
pub const MAX_CERT_BYTES: usize = 1024;
/// Largest `public_key`, `user_data` or `nonce` AWS allows.
pub const MAX_OPTIONAL_FIELD_BYTES: usize = 1024;
/// Highest PCR index (the NSM has 32 PCRs).
pub const MAX_PCR_INDEX: u8 = 31;

/// The fields of a Nitro attestation document, decoded but not verified.
///
/// From [`crate::parse`] nothing here is trusted; from [`crate::verify`] the same fields are returned inside
/// [`crate::Verified`] after every check has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Document {
    /// Enclave identifier, `i-<instance>-enc<enclave>`.
    pub module_id: String,
    /// PCR digest algorithm; always `"SHA384"` (anything else is refused).
    pub digest: String,
    /// Milliseconds since the Unix epoch when the NSM produced the document.
    pub timestamp_ms: u64,
    /// PCR index to value (32, 48 or 64 bytes each).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// DER leaf certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER CA certificates, root first, as sent by the NSM. `cabundle[0]` is never trusted by itself.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional `public_key` (raw bytes; the enclave decides the format).
    pub public_key: Option<Vec<u8>>,
    /// Optional `user_data` (may be empty).
    pub user_data: Option<Vec<u8>>,
    /// Optional `nonce` (may be empty).
    pub nonce: Option<Vec<u8>>,
}

/// Decodes a document without any cryptographic check, for tools that only print fields.
///
/// Never base a trust decision on the result: anyone can produce bytes that parse. Use [`crate::verify`].
pub fn parse(document: &[u8]) -> Result<Document, Error> {
    parse_with_envelope(document).map(|(doc, _)| doc)
}

/// Decodes the envelope and the payload; the envelope is kept for the signature check.
pub(crate) fn parse_with_envelope(document: &[u8]) -> Result<(Document, Envelope), Error> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::SizeLimit {
            field: "document",
            len: document.len(),
        });
    }
    let envelope = Envelope::decode(document)?;
    let doc = decode_payload(&envelope.payload)?;
    Ok((doc, envelope))
}

/// The raw payload fields, before their rules are applied.
#[derive(Default)]
struct Fields {
    module_id: Option<Value>,
    digest: Option<Value>,
    timestamp: Option<Value>,
    pcrs: Option<Value>,
    certificate: Option<Value>,
    cabundle: Option<Value>,
    public_key: Option<Value>,
    user_data: Option<Value>,
    nonce: Option<Value>,
}

fn decode_payload(payload: &[u8]) -> Result<Document, Error> {
    let Value::Map(entries) = decode_exact(payload, "payload")? else {
        return Err(Malformed::InvalidField("payload").into());
    };
    let mut fields = Fields::default();
    for (key, value) in entries {
        let Value::Text(key) = key else {
            return Err(Malformed::InvalidField("payload key").into());
        };
        let slot = match key.as_str() {
            "module_id" => &mut fields.module_id,
            "digest" => &mut fields.digest,
            "timestamp" => &mut fields.timestamp,
            "pcrs" => &mut fields.pcrs,
            "certificate" => &mut fields.certificate,
            "cabundle" => &mut fields.cabundle,
            "public_key" => &mut fields.public_key,
            "user_data" => &mut fields.user_data,
            "nonce" => &mut fields.nonce,
            _ => continue,
        };
        *slot = Some(value);
    }

    let module_id = text(required(fields.module_id, "module_id")?, "module_id")?;
    if module_id.is_empty() {
        return Err(Error::SizeLimit {
            field: "module_id",
            len: 0,
        });
    }
    let digest = text(required(fields.digest, "digest")?, "digest")?;
    if digest != "SHA384" {
        return Err(Error::UnsupportedDigest(digest));
    }
    let timestamp_ms = match required(fields.timestamp, "timestamp")? {
        Value::Integer(t) => u64::try_from(t).ok().filter(|t| *t > 0),
        _ => None,
    }
    .ok_or(Malformed::InvalidField("timestamp"))?;
    let pcrs = decode_pcrs(required(fields.pcrs, "pcrs")?)?;
    let certificate = bytes(required(fields.certificate, "certificate")?, "certificate")?;
    check_len("certificate", certificate.len(), 1, MAX_CERT_BYTES)?;
    let cabundle = decode_cabundle(required(fields.cabundle, "cabundle")?)?;

    Ok(Document {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key: optional_bytes(fields.public_key, "public_key")?,
        user_data: optional_bytes(fields.user_data, "user_data")?,
        nonce: optional_bytes(fields.nonce, "nonce")?,
    })
}

fn decode_pcrs(value: Value) -> Result<BTreeMap<u8, Vec<u8>>, Error> {
    let Value::Map(entries) = value else {
        return Err(Malformed::InvalidField("pcrs").into());
    };
    check_len("pcrs", entries.len(), 1, usize::from(MAX_PCR_INDEX) + 1)?;
    let mut pcrs = BTreeMap::new();
    for (index, value) in entries {
        let index = match index {
            Value::Integer(i) => u8::try_from(i).ok().filter(|i| *i <= MAX_PCR_INDEX),
            _ => None,
        }
        .ok_or(Malformed::InvalidField("pcrs index"))?;
        let value = bytes(value, "pcrs value")?;
        if !matches!(value.len(), 32 | 48 | 64) {
            return Err(Error::SizeLimit {
                field: "pcrs value",
                len: value.len(),
            });
        }
        pcrs.insert(index, value);
    }
    for (index, name) in [(0, "pcrs[0]"), (1, "pcrs[1]"), (2, "pcrs[2]")] {
        if !pcrs.contains_key(&index) {
            return Err(Malformed::MissingField(name).into());
        }
    }
    Ok(pcrs)
}

fn decode_cabundle(value: Value) -> Result<Vec<Vec<u8>>, Error> {
    let Value::Array(items) = value else {
        return Err(Malformed::InvalidField("cabundle").into());
    };
    check_len("cabundle", items.len(), 1, MAX_CABUNDLE_LEN)?;
    items
        .into_iter()
        .map(|item| {
            let cert = bytes(item, "cabundle entry")?;
            check_len("cabundle entry", cert.len(), 1, MAX_CERT_BYTES)?;
            Ok(cert)
        })
        .collect()
}

fn required(value: Option<Value>, field: &'static str) -> Result<Value, Error> {
    value.ok_or_else(|| Malformed::MissingField(field).into())
}

fn text(value: Value, field: &'static str) -> Result<String, Error> {
    match value {
        Value::Text(text) => Ok(text),
        _ => Err(Malformed::InvalidField(field).into()),
    }
}

fn bytes(value: Value, field: &'static str) -> Result<Vec<u8>, Error> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        _ => Err(Malformed::InvalidField(field).into()),
    }
}

/// Absent and CBOR `null` both mean "not provided" (the NSM always sends all keys, with `null`).
fn optional_bytes(value: Option<Value>, field: &'static str) -> Result<Option<Vec<u8>>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let bytes = bytes(value, field)?;
            check_len(field, bytes.len(), 0, MAX_OPTIONAL_FIELD_BYTES)?;
            Ok(Some(bytes))
        }
    }
}

fn check_len(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), Error> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(Error::SizeLimit { field, len })
    }
}
