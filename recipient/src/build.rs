//! Building envelopes of exactly KMS's shape (feature `builder`: the local KMS and tests; never the enclave).
//!
//! The output is BER with indefinite lengths, byte-for-byte the layout of the real KMS sample in `tests/data`
//! (and of `openssl cms -encrypt -stream`): indefinite ContentInfo, `[0]`, EnvelopedData, EncryptedContentInfo
//! and a constructed `[0]` encryptedContent holding OCTET STRING segments; definite lengths inside
//! (RecipientInfos, AlgorithmIdentifiers, encryptedKey). Emitting the BER form rather than DER means the
//! enclave's opener is exercised by the local KMS on the same shape AWS sends.

use aws_lc_rs::cipher::{
    EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_256, AES_256_KEY_LEN,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand;
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use zeroize::Zeroizing;

use crate::ber::tag;
use crate::cms::{oid, AES_BLOCK};
use crate::error::RecipientError;
use crate::key::subject_key_identifier;

/// Largest plaintext accepted: KMS's own maximum (4096 bytes, `Decrypt`).
const MAX_PLAINTEXT: usize = 4096;

/// Size of the encryptedContent segments, as a streaming encoder would cut them.
const SEGMENT: usize = 1024;

/// Encrypts `plaintext` to the RSA key in `recipient_spki_der` (SubjectPublicKeyInfo DER, as in an attestation
/// document's `public_key`) the way KMS does: fresh AES-256 key and random IV, AES-256-CBC with PKCS#7 padding,
/// content key wrapped with RSAES-OAEP-SHA-256 (MGF1-SHA-256), recipient named by
/// [`subject_key_identifier`]. Returns the BER bytes (see the module docs for the exact shape).
///
/// # Errors
/// [`RecipientError::Key`] when the SPKI is not an RSA key of 2048 to 4096 bits;
/// [`RecipientError::Malformed`] when `plaintext` is longer than 4096 bytes.
pub fn build_ciphertext_for_recipient(
    recipient_spki_der: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, RecipientError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(RecipientError::Malformed(
            "plaintext longer than 4096 bytes",
        ));
    }
    let public = PublicEncryptingKey::from_der(recipient_spki_der).map_err(|_| {
        RecipientError::Key("recipient public key is not an RSA SubjectPublicKeyInfo")
    })?;
    if !(2048..=4096).contains(&public.key_size_bits()) {
        return Err(RecipientError::Key(
            "recipient RSA key size outside 2048..=4096 bits",
        ));
    }
    let oaep = OaepPublicEncryptingKey::new(public)
        .map_err(|_| RecipientError::Key("RSA-OAEP key setup failed"))?;

    let mut cek = Zeroizing::new([0u8; AES_256_KEY_LEN]);
    let mut iv = [0u8; AES_BLOCK];
    rand::fill(cek.as_mut()).map_err(|_| RecipientError::Key("random generation failed"))?;
    rand::fill(&mut iv).map_err(|_| RecipientError::Key("random generation failed"))?;

    let mut wrapped = vec![0u8; oaep.ciphertext_size()];
    let wrapped_len = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut wrapped, None)
        .map_err(|_| RecipientError::Key("RSA-OAEP encryption failed"))?
        .len();
    wrapped.truncate(wrapped_len);

    let cipher = UnboundCipherKey::new(&AES_256, cek.as_ref())
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| RecipientError::Key("AES key setup failed"))?;
    let mut ciphertext = plaintext.to_vec();
    cipher
        .less_safe_encrypt(
            &mut ciphertext,
            EncryptionContext::Iv128(FixedLength::from(iv)),
        )
        .map_err(|_| RecipientError::Key("AES-CBC encryption failed"))?;

    let ski = subject_key_identifier(recipient_spki_der);
    Ok(encode(&ski, &wrapped, &iv, &ciphertext))
}

/// Lays out the envelope. Mirrors the sample: `30 80 06 09 … A0 80 30 80 02 01 02 31 … 30 80 … A0 80 04 … 00 00`×5.
fn encode(ski: &[u8], wrapped: &[u8], iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let hash = definite(
        tag::SEQUENCE,
        &[definite(tag::OID, oid::SHA256), vec![tag::NULL, 0]].concat(),
    );
    let oaep_params = definite(
        tag::SEQUENCE,
        &[
            definite(tag::context_constructed(0), &hash),
            definite(
                tag::context_constructed(1),
                &definite(
                    tag::SEQUENCE,
                    &[definite(tag::OID, oid::MGF1), hash.clone()].concat(),
                ),
            ),
        ]
        .concat(),
    );
    let ktri = definite(
        tag::SEQUENCE,
        &[
            definite(tag::INTEGER, &[2]),
            definite(tag::context(0), ski),
            definite(
                tag::SEQUENCE,
                &[definite(tag::OID, oid::RSAES_OAEP), oaep_params].concat(),
            ),
            definite(tag::OCTET_STRING, wrapped),
        ]
        .concat(),
    );
    let content_algorithm = definite(
        tag::SEQUENCE,
        &[
            definite(tag::OID, oid::AES256_CBC),
            definite(tag::OCTET_STRING, iv),
        ]
        .concat(),
    );
    let segments: Vec<u8> = ciphertext
        .chunks(SEGMENT)
        .flat_map(|chunk| definite(tag::OCTET_STRING, chunk))
        .collect();
    let encrypted_content_info = indefinite(
        tag::SEQUENCE,
        &[
            definite(tag::OID, oid::DATA),
            content_algorithm,
            indefinite(tag::context_constructed(0), &segments),
        ]
        .concat(),
    );
    let enveloped_data = indefinite(
        tag::SEQUENCE,
        &[
            definite(tag::INTEGER, &[2]),
            definite(tag::SET, &ktri),
            encrypted_content_info,
        ]
        .concat(),
    );
    indefinite(
        tag::SEQUENCE,
        &[
            definite(tag::OID, oid::ENVELOPED_DATA),
            indefinite(tag::context_constructed(0), &enveloped_data),
        ]
        .concat(),
    )
}

/// `tag`, a DER definite length, `body`.
fn definite(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(tag);
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

/// `tag`, the indefinite-length marker, `body`, end-of-contents.
fn indefinite(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&[tag, 0x80]);
    out.extend_from_slice(body);
    out.extend_from_slice(&[0, 0]);
    out
}
