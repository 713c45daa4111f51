//! The COSE_Sign1 envelope (RFC 9052 §4.2) as AWS Nitro emits it, and its ES384 signature check.
//!
//! Only what AWS documents is accepted: an optional tag 18, an array of four items, a protected header that
//! decodes to exactly `{1: -35}` (ES384), an unprotected map (ignored: it is not signed), an embedded payload and
//! a 96-byte raw `r || s` signature. The signature covers the Sig_structure built from the protected header and
//! payload bytes *as received*, so re-encoding can never change what was signed.

use ciborium::Value;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};

use crate::cbor::decode_exact;
use crate::error::{Error, Malformed};

/// CBOR tag for COSE_Sign1 (RFC 9052 §2).
const COSE_SIGN1_TAG: u64 = 18;
/// COSE algorithm identifier for ECDSA with SHA-384 (RFC 9053 §2.1).
const ES384: i128 = -35;
/// COSE header label for the algorithm.
const HEADER_ALG: i128 = 1;
/// ES384 signatures are raw `r || s`, 48 bytes each.
const SIGNATURE_LEN: usize = 96;

/// The signed parts of a COSE_Sign1, kept byte-exact for signature verification.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// Protected header bytes, as received.
    pub(crate) protected: Vec<u8>,
    /// Payload bytes, as received.
    pub(crate) payload: Vec<u8>,
    /// Raw `r || s` signature.
    pub(crate) signature: Vec<u8>,
}

impl Envelope {
    /// Decodes and checks the envelope; the payload itself is checked by [`crate::document`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let value = match decode_exact(bytes, "COSE_Sign1")? {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(tag, _) => return Err(Error::UnexpectedTag(tag)),
            untagged => untagged,
        };
        let Value::Array(items) = value else {
            return Err(Malformed::Envelope("not an array").into());
        };
        let Ok([protected, unprotected, payload, signature]) = <[Value; 4]>::try_from(items) else {
            return Err(Malformed::Envelope("array must have exactly 4 items").into());
        };
        let Value::Bytes(protected) = protected else {
            return Err(Malformed::Envelope("protected header is not a byte string").into());
        };
        check_protected_header(&protected)?;
        // The unprotected header is not covered by the signature, so nothing in it is ever read; it only has
        // to be a map (with unique keys, checked by decode_exact) to be well-formed.
        if !matches!(unprotected, Value::Map(_)) {
            return Err(Malformed::Envelope("unprotected header is not a map").into());
        }
        let Value::Bytes(payload) = payload else {
            return Err(Malformed::Envelope("payload is not an embedded byte string").into());
        };
        let Value::Bytes(signature) = signature else {
            return Err(Malformed::Envelope("signature is not a byte string").into());
        };
        if signature.len() != SIGNATURE_LEN {
            return Err(Error::SizeLimit {
                field: "signature",
                len: signature.len(),
            });
        }
        Ok(Self {
            protected,
            payload,
            signature,
        })
    }

    /// The Sig_structure of RFC 9052 §4.4: `["Signature1", protected, h'', payload]`, definite lengths.
    pub(crate) fn sig_structure(&self) -> Vec<u8> {
        let structure = Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(self.protected.clone()),
            Value::Bytes(Vec::new()),
            Value::Bytes(self.payload.clone()),
        ]);
        crate::cbor::encode(&structure)
    }

    /// Checks the ES384 signature with the leaf key. High-S signatures are valid (AWS emits them).
    pub(crate) fn verify_signature(&self, key: &VerifyingKey) -> Result<(), Error> {
        let signature = Signature::from_slice(&self.signature).map_err(|_| Error::BadSignature)?;
        key.verify(&self.sig_structure(), &signature)
            .map_err(|_| Error::BadSignature)
    }
}

/// The protected header must decode to exactly `{1: -35}`.
fn check_protected_header(bytes: &[u8]) -> Result<(), Error> {
    let Value::Map(entries) = decode_exact(bytes, "protected header")? else {
        return Err(Malformed::ProtectedHeader.into());
    };
    let alg = entries
        .iter()
        .find(|(key, _)| matches!(key, Value::Integer(label) if i128::from(*label) == HEADER_ALG))
        .map(|(_, alg)| alg)
        .ok_or(Malformed::ProtectedHeader)?;
    match alg {
        Value::Integer(alg) if i128::from(*alg) == ES384 => {}
        Value::Integer(alg) => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "COSE alg {}",
                i128::from(*alg)
            )))
        }
        Value::Text(name) => return Err(Error::UnsupportedAlgorithm(format!("COSE alg {name:?}"))),
        _ => return Err(Malformed::ProtectedHeader.into()),
    }
    if entries.len() != 1 {
        return Err(Malformed::ProtectedHeader.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(protected: &[u8]) -> Vec<u8> {
        let mut doc = vec![0x84, 0x40 + protected.len() as u8];
        doc.extend_from_slice(protected);
        doc.extend_from_slice(&[0xa0, 0x41, 0x00, 0x58, 96]);
        doc.extend_from_slice(&[1; 96]);
        doc
    }

    #[test]
    fn es384_header_accepted() {
        assert!(Envelope::decode(&envelope(&[0xa1, 0x01, 0x38, 0x22])).is_ok());
    }

    #[test]
    fn es256_header_is_unsupported_algorithm() {
        let err = Envelope::decode(&envelope(&[0xa1, 0x01, 0x26])).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm(_)));
    }

    #[test]
    fn extra_protected_label_rejected() {
        let err =
            Envelope::decode(&envelope(&[0xa2, 0x01, 0x38, 0x22, 0x04, 0x41, 0x00])).unwrap_err();
        assert_eq!(err, Error::Malformed(Malformed::ProtectedHeader));
    }

    #[test]
    fn empty_protected_header_rejected() {
        let err = Envelope::decode(&envelope(&[0xa0])).unwrap_err();
        assert_eq!(err, Error::Malformed(Malformed::ProtectedHeader));
    }

    #[test]
    fn other_tag_rejected_and_tag_18_accepted() {
        let mut tagged = vec![0xd2];
        tagged.extend(envelope(&[0xa1, 0x01, 0x38, 0x22]));
        assert!(Envelope::decode(&tagged).is_ok());
        tagged[0] = 0xd1; // tag 17 = COSE_Mac0
        assert_eq!(
            Envelope::decode(&tagged).unwrap_err(),
            Error::UnexpectedTag(17)
        );
    }

    #[test]
    fn short_signature_rejected() {
        let mut doc = envelope(&[0xa1, 0x01, 0x38, 0x22]);
        doc.truncate(doc.len() - 96 - 2);
        doc.extend_from_slice(&[0x58, 64]);
        doc.extend_from_slice(&[1; 64]);
        let err = Envelope::decode(&doc).unwrap_err();
        assert!(matches!(
            err,
            Error::SizeLimit {
                field: "signature",
                len: 64
            }
        ));
    }
}
