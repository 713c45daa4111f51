//! The AWS attestation document format, as the mock writes it.
//!
//! Byte-for-byte what the NSM emits (checked against real documents, see
//! `shared/reference/attestation.md` §1): an untagged COSE_Sign1 array
//! `[bstr(a1 01 38 22), {}, bstr(payload), bstr(r || s)]` whose payload is a definite-length CBOR map
//! with the nine keys in AWS order. Envelope bytes therefore start `84 44 a1 01 38 22 a0 59`
//! (payloads are always 256..65535 bytes: the certificates alone exceed 256).

use std::collections::BTreeMap;

use ciborium::Value;

use crate::NsmError;

/// The protected header, `{1: -35}` (alg: ES384), encoded. Real documents carry exactly these bytes.
pub(crate) const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// Length of a raw P-384 ECDSA signature, `r || s`.
pub(crate) const ES384_SIGNATURE_LEN: usize = 96;

/// The fields of one attestation document payload, borrowed from the mock's state.
pub(crate) struct Payload<'a> {
    pub module_id: &'a str,
    pub timestamp_ms: u64,
    pub pcrs: &'a BTreeMap<u16, [u8; 48]>,
    /// Leaf certificate, DER.
    pub certificate: &'a [u8],
    /// CA bundle, root first: `[root, intermediate]`.
    pub cabundle: &'a [&'a [u8]],
    pub public_key: Option<&'a [u8]>,
    pub user_data: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
}

impl Payload<'_> {
    /// CBOR-encode the payload map, keys in AWS order, absent optionals as `null`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, NsmError> {
        let text = |s: &str| Value::Text(s.to_owned());
        let bytes = |b: &[u8]| Value::Bytes(b.to_vec());
        let nullable = |b: Option<&[u8]>| b.map_or(Value::Null, bytes);
        let pcrs = self
            .pcrs
            .iter()
            .map(|(index, value)| (Value::Integer((*index).into()), bytes(value)))
            .collect();
        // A Vec of pairs (not a map type) keeps the insertion order on the wire.
        let map = Value::Map(vec![
            (text("module_id"), text(self.module_id)),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Integer(self.timestamp_ms.into())),
            (text("pcrs"), Value::Map(pcrs)),
            (text("certificate"), bytes(self.certificate)),
            (
                text("cabundle"),
                Value::Array(self.cabundle.iter().map(|c| bytes(c)).collect()),
            ),
            (text("public_key"), nullable(self.public_key)),
            (text("user_data"), nullable(self.user_data)),
            (text("nonce"), nullable(self.nonce)),
        ]);
        to_cbor(&map)
    }
}

/// The COSE `Sig_structure` for a COSE_Sign1 with no external AAD (RFC 9052 §4.4):
/// `["Signature1", protected, h'', payload]`, a definite-length array. This is what ES384 signs.
pub(crate) fn sig_structure(payload: &[u8]) -> Result<Vec<u8>, NsmError> {
    to_cbor(&Value::Array(vec![
        Value::Text("Signature1".to_owned()),
        Value::Bytes(PROTECTED_ES384.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// The untagged COSE_Sign1 envelope, as the NSM emits it.
pub(crate) fn sign1(
    payload: Vec<u8>,
    signature: &[u8; ES384_SIGNATURE_LEN],
) -> Result<Vec<u8>, NsmError> {
    to_cbor(&Value::Array(vec![
        Value::Bytes(PROTECTED_ES384.to_vec()),
        Value::Map(Vec::new()),
        Value::Bytes(payload),
        Value::Bytes(signature.to_vec()),
    ]))
}

fn to_cbor(value: &Value) -> Result<Vec<u8>, NsmError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| NsmError::MockEncode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_header_is_es384() {
        let decoded: Value = ciborium::from_reader(&PROTECTED_ES384[..]).unwrap();
        assert_eq!(
            decoded,
            Value::Map(vec![(
                Value::Integer(1.into()),
                Value::Integer((-35).into())
            )])
        );
    }

    #[test]
    fn sig_structure_matches_rfc_9052_layout() {
        let s = sig_structure(b"abc").unwrap();
        // array(4), text(10) "Signature1", bstr(4) protected, bstr(0), bstr(3) "abc"
        let mut want = vec![0x84, 0x6a];
        want.extend_from_slice(b"Signature1");
        want.push(0x44);
        want.extend_from_slice(&PROTECTED_ES384);
        want.extend_from_slice(&[0x40, 0x43]);
        want.extend_from_slice(b"abc");
        assert_eq!(s, want);
    }

    #[test]
    fn envelope_prefix_matches_real_documents() {
        let doc = sign1(vec![0; 300], &[7; ES384_SIGNATURE_LEN]).unwrap();
        assert_eq!(&doc[..8], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59]);
    }
}
