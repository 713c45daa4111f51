//! The schema walk: from BER elements to the four values we need, checking every field KMS sends.
//!
//! RFC 5652 §6 (EnvelopedData), RFC 8017 A.2.1 (RSAES-OAEP-params), RFC 3565 (AES-CBC in CMS). Only the one
//! shape KMS produces is accepted: ContentInfo(envelopedData) → EnvelopedData v2, no originatorInfo, exactly one
//! KeyTransRecipientInfo v2 addressed by subjectKeyIdentifier, RSAES-OAEP with SHA-256 and MGF1-SHA-256 and an
//! empty label, id-data content under AES-256-CBC with a 16-byte IV, no unprotectedAttrs. Every constructed
//! element is walked to its end (`finish`), so an extra field is an error rather than silently ignored.

use std::borrow::Cow;

use crate::ber::{tag, Elements, Tlv};
use crate::error::RecipientError;

/// Contents octets of the object identifiers we compare against.
pub(crate) mod oid {
    /// 1.2.840.113549.1.7.3
    pub const ENVELOPED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];
    /// 1.2.840.113549.1.7.1
    pub const DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.1.1 (PKCS#1 v1.5 key transport when used as a key-encryption algorithm)
    pub const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.7
    pub const RSAES_OAEP: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07];
    /// 1.2.840.113549.1.1.8
    pub const MGF1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08];
    /// 1.2.840.113549.1.1.9
    pub const P_SPECIFIED: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x09];
    /// 2.16.840.1.101.3.4.2.1
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// 1.3.14.3.2.26
    pub const SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
    /// 2.16.840.1.101.3.4.1.42
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];
}

/// AES block and CBC IV length.
pub(crate) const AES_BLOCK: usize = 16;

/// How the single recipient is identified.
pub(crate) enum Rid<'a> {
    /// `[0] subjectKeyIdentifier`, what KMS uses.
    Ski(Cow<'a, [u8]>),
    /// `issuerAndSerialNumber`: names a certificate, which a bare KMS recipient key never has.
    IssuerAndSerial,
}

/// The fields of a checked envelope that decryption needs.
pub(crate) struct Envelope<'a> {
    pub rid: Rid<'a>,
    pub encrypted_key: Cow<'a, [u8]>,
    pub iv: [u8; AES_BLOCK],
    pub ciphertext: Cow<'a, [u8]>,
}

fn malformed(what: &'static str) -> RecipientError {
    RecipientError::Malformed(what)
}

fn unsupported(what: &'static str) -> RecipientError {
    RecipientError::UnsupportedAlgorithm(what)
}

/// Parses and checks a whole `CiphertextForRecipient`.
pub(crate) fn parse(input: &[u8]) -> Result<Envelope<'_>, RecipientError> {
    let mut top = Elements::new(input);
    let content_info = top.expect(tag::SEQUENCE, "ContentInfo is not a SEQUENCE")?;
    top.finish("data after the ContentInfo")?;

    let mut fields = content_info.children("ContentInfo")?;
    let content_type = fields.expect(tag::OID, "ContentInfo contentType")?;
    if content_type.body != oid::ENVELOPED_DATA {
        return Err(unsupported("content type is not envelopedData"));
    }
    let explicit = fields.expect(tag::context_constructed(0), "ContentInfo content [0]")?;
    fields.finish("extra fields in ContentInfo")?;

    let mut inner = explicit.children("ContentInfo content [0]")?;
    let enveloped = inner.expect(tag::SEQUENCE, "EnvelopedData is not a SEQUENCE")?;
    inner.finish("extra data in ContentInfo content [0]")?;
    enveloped_data(enveloped)
}

fn enveloped_data(enveloped: Tlv<'_>) -> Result<Envelope<'_>, RecipientError> {
    let mut fields = enveloped.children("EnvelopedData")?;
    let version = small_uint(fields.expect(tag::INTEGER, "EnvelopedData version")?)?;
    if fields.peek_tag() == Some(tag::context_constructed(0)) {
        return Err(unsupported("EnvelopedData with originatorInfo"));
    }
    let recipients = fields.expect(tag::SET, "EnvelopedData recipientInfos")?;
    let content = fields.expect(tag::SEQUENCE, "EnvelopedData encryptedContentInfo")?;
    if fields.peek_tag() == Some(tag::context_constructed(1)) {
        return Err(unsupported("EnvelopedData with unprotectedAttrs"));
    }
    fields.finish("extra fields in EnvelopedData")?;
    // Version 2 is mandatory once a KeyTransRecipientInfo uses a subjectKeyIdentifier (RFC 5652 §6.1).
    if version != 2 {
        return Err(unsupported("EnvelopedData version is not 2"));
    }

    let mut infos = recipients.children("recipientInfos")?;
    let info = infos.next()?.ok_or(malformed("no RecipientInfo"))?;
    if infos.next()?.is_some() {
        return Err(unsupported("more than one RecipientInfo"));
    }
    let (rid, encrypted_key) = key_trans_recipient_info(info)?;
    let (iv, ciphertext) = encrypted_content_info(content)?;
    Ok(Envelope {
        rid,
        encrypted_key,
        iv,
        ciphertext,
    })
}

type KeyTransport<'a> = (Rid<'a>, Cow<'a, [u8]>);

fn key_trans_recipient_info(info: Tlv<'_>) -> Result<KeyTransport<'_>, RecipientError> {
    // The other RecipientInfo choices are context-tagged ([1] kari, [2] kekri, [3] pwri, [4] ori).
    if info.tag != tag::SEQUENCE {
        return Err(unsupported("RecipientInfo is not a KeyTransRecipientInfo"));
    }
    let mut fields = info.children("KeyTransRecipientInfo")?;
    let version = small_uint(fields.expect(tag::INTEGER, "KeyTransRecipientInfo version")?)?;
    let rid_tlv = fields
        .next()?
        .ok_or(malformed("KeyTransRecipientInfo rid"))?;
    let rid = match rid_tlv.tag {
        t if is_string(t, tag::context(0)) => {
            if version != 2 {
                return Err(malformed(
                    "KeyTransRecipientInfo with subjectKeyIdentifier is not version 2",
                ));
            }
            Rid::Ski(octet_string(rid_tlv, "subjectKeyIdentifier")?)
        }
        tag::SEQUENCE => Rid::IssuerAndSerial,
        _ => return Err(malformed("KeyTransRecipientInfo rid")),
    };
    let algorithm = fields.expect(tag::SEQUENCE, "keyEncryptionAlgorithm")?;
    check_rsaes_oaep_sha256(algorithm)?;
    let key_tlv = fields.next()?.ok_or(malformed("encryptedKey"))?;
    if !is_string(key_tlv.tag, tag::OCTET_STRING) {
        return Err(malformed("encryptedKey is not an OCTET STRING"));
    }
    let encrypted_key = octet_string(key_tlv, "encryptedKey")?;
    fields.finish("extra fields in KeyTransRecipientInfo")?;
    Ok((rid, encrypted_key))
}

/// `rsaesOaep` with `[0] sha256`, `[1] mgf1(sha256)` and no label. Absent hash or MGF fields mean the
/// SHA-1 defaults, so they are refused, as is PKCS#1 v1.5 (`rsaEncryption`).
fn check_rsaes_oaep_sha256(algorithm: Tlv<'_>) -> Result<(), RecipientError> {
    let mut fields = algorithm.children("keyEncryptionAlgorithm")?;
    let id = fields.expect(tag::OID, "keyEncryptionAlgorithm algorithm")?;
    match id.body {
        oid::RSAES_OAEP => {}
        oid::RSA_ENCRYPTION => {
            return Err(unsupported(
                "PKCS#1 v1.5 key transport (rsaEncryption) is refused",
            ))
        }
        _ => return Err(unsupported("key transport is not RSAES-OAEP")),
    }
    let params = fields
        .next()?
        .ok_or(unsupported("RSAES-OAEP with default (SHA-1) parameters"))?;
    fields.finish("extra fields in keyEncryptionAlgorithm")?;
    if params.tag != tag::SEQUENCE {
        return Err(malformed("RSAES-OAEP parameters are not a SEQUENCE"));
    }

    let mut p = params.children("RSAES-OAEP parameters")?;
    if p.peek_tag() != Some(tag::context_constructed(0)) {
        return Err(unsupported("RSAES-OAEP hash is the SHA-1 default"));
    }
    let hash = explicit_sequence(p.next()?, "RSAES-OAEP hashAlgorithm")?;
    check_sha256(hash)?;

    if p.peek_tag() != Some(tag::context_constructed(1)) {
        return Err(unsupported(
            "RSAES-OAEP mask generation is the MGF1-SHA-1 default",
        ));
    }
    let mgf = explicit_sequence(p.next()?, "RSAES-OAEP maskGenAlgorithm")?;
    let mut m = mgf.children("maskGenAlgorithm")?;
    if m.expect(tag::OID, "maskGenAlgorithm algorithm")?.body != oid::MGF1 {
        return Err(unsupported("RSAES-OAEP mask generation is not MGF1"));
    }
    check_sha256(m.expect(tag::SEQUENCE, "MGF1 hash")?)?;
    m.finish("extra fields in maskGenAlgorithm")?;

    if p.peek_tag() == Some(tag::context_constructed(2)) {
        // pSourceAlgorithm: only the default, an explicitly empty label, is acceptable.
        let source = explicit_sequence(p.next()?, "RSAES-OAEP pSourceAlgorithm")?;
        let mut s = source.children("pSourceAlgorithm")?;
        let ok = s.expect(tag::OID, "pSourceAlgorithm algorithm")?.body == oid::P_SPECIFIED
            && s.expect(tag::OCTET_STRING, "pSpecified label")?
                .body
                .is_empty();
        s.finish("extra fields in pSourceAlgorithm")?;
        if !ok {
            return Err(unsupported("RSAES-OAEP with a non-empty label"));
        }
    }
    p.finish("extra fields in RSAES-OAEP parameters")
}

/// The SEQUENCE inside an `[n] EXPLICIT` wrapper.
fn explicit_sequence<'a>(
    wrapper: Option<Tlv<'a>>,
    what: &'static str,
) -> Result<Tlv<'a>, RecipientError> {
    let wrapper = wrapper.ok_or(malformed(what))?;
    let mut inner = wrapper.children(what)?;
    let sequence = inner.expect(tag::SEQUENCE, what)?;
    inner.finish(what)?;
    Ok(sequence)
}

/// An AlgorithmIdentifier for SHA-256, with absent or NULL parameters (both are seen in the wild).
fn check_sha256(algorithm: Tlv<'_>) -> Result<(), RecipientError> {
    let mut fields = algorithm.children("hash AlgorithmIdentifier")?;
    match fields.expect(tag::OID, "hash algorithm")?.body {
        oid::SHA256 => {}
        oid::SHA1 => return Err(unsupported("RSAES-OAEP with SHA-1")),
        _ => return Err(unsupported("RSAES-OAEP hash is not SHA-256")),
    }
    if let Some(param) = fields.next()? {
        if param.tag != tag::NULL || !param.body.is_empty() {
            return Err(malformed("hash parameters are not NULL"));
        }
    }
    fields.finish("extra fields in hash AlgorithmIdentifier")
}

fn encrypted_content_info(
    info: Tlv<'_>,
) -> Result<([u8; AES_BLOCK], Cow<'_, [u8]>), RecipientError> {
    let mut fields = info.children("EncryptedContentInfo")?;
    if fields.expect(tag::OID, "encrypted contentType")?.body != oid::DATA {
        return Err(unsupported("encrypted content type is not id-data"));
    }
    let algorithm = fields.expect(tag::SEQUENCE, "contentEncryptionAlgorithm")?;
    let mut a = algorithm.children("contentEncryptionAlgorithm")?;
    if a.expect(tag::OID, "content encryption algorithm")?.body != oid::AES256_CBC {
        return Err(unsupported("content encryption is not AES-256-CBC"));
    }
    let iv_tlv = a.next()?.ok_or(malformed("AES-CBC IV is absent"))?;
    a.finish("extra fields in contentEncryptionAlgorithm")?;
    if !is_string(iv_tlv.tag, tag::OCTET_STRING) {
        return Err(malformed("AES-CBC IV is not an OCTET STRING"));
    }
    let iv: [u8; AES_BLOCK] = octet_string(iv_tlv, "AES-CBC IV")?
        .as_ref()
        .try_into()
        .map_err(|_| malformed("AES-CBC IV is not 16 bytes"))?;

    let content = fields
        .next()?
        .ok_or(malformed("encryptedContent is absent"))?;
    fields.finish("extra fields in EncryptedContentInfo")?;
    if !is_string(content.tag, tag::context(0)) {
        return Err(malformed("encryptedContent is not [0]"));
    }
    let ciphertext = octet_string(content, "encryptedContent")?;
    if ciphertext.is_empty() || ciphertext.len() % AES_BLOCK != 0 {
        return Err(malformed(
            "encryptedContent is not a whole number of AES blocks",
        ));
    }
    Ok((iv, ciphertext))
}

/// Whether `tag` is the primitive `primitive` or its constructed (BER segmented) form.
fn is_string(tag: u8, primitive: u8) -> bool {
    tag == primitive || tag == primitive | tag::CONSTRUCTED
}

/// The value of an OCTET STRING (or one implicitly tagged): the contents of the primitive form, or the
/// concatenated primitive OCTET STRING segments of the constructed BER form. Segments are not nested further:
/// KMS and OpenSSL never nest them, and refusing keeps the walk flat.
fn octet_string<'a>(tlv: Tlv<'a>, what: &'static str) -> Result<Cow<'a, [u8]>, RecipientError> {
    if !tlv.constructed() {
        return Ok(Cow::Borrowed(tlv.body));
    }
    let mut total = 0usize;
    let mut count = 0usize;
    let mut last = &[][..];
    let mut segments = tlv.children(what)?;
    while let Some(segment) = segments.next()? {
        if segment.tag != tag::OCTET_STRING {
            return Err(malformed(
                "segment of a constructed OCTET STRING is not a primitive OCTET STRING",
            ));
        }
        // Cannot overflow: every segment lies inside the (bounded) input.
        total += segment.body.len();
        count += 1;
        last = segment.body;
    }
    if count == 1 {
        return Ok(Cow::Borrowed(last));
    }
    let mut out = Vec::with_capacity(total);
    let mut segments = tlv.children(what)?;
    while let Some(segment) = segments.next()? {
        out.extend_from_slice(segment.body);
    }
    Ok(Cow::Owned(out))
}

/// A small non-negative INTEGER (versions), minimal encoding required as X.690 demands of BER too.
fn small_uint(tlv: Tlv<'_>) -> Result<u32, RecipientError> {
    let body = tlv.body;
    if body.is_empty() || body.len() > 4 || body[0] & 0x80 != 0 {
        return Err(malformed("version is not a small non-negative INTEGER"));
    }
    if body.len() > 1 && body[0] == 0 && body[1] & 0x80 == 0 {
        return Err(malformed("INTEGER is not minimally encoded"));
    }
    Ok(body.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}
