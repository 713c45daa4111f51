//! Our `CiphertextBlob` format: `"VLK1" ‖ len(key id) ‖ key id ‖ nonce(12) ‖ AES-256-GCM(ciphertext ‖ tag)`.
//!
//! Like KMS's own blobs it names the key (so `Decrypt` needs no `KeyId`) and is opaque to clients. The AAD
//! binds the format, the key id and the canonical encryption context, so moving a blob to another key id, or
//! decrypting it with a different `EncryptionContext`, fails authentication: KMS's behaviour, which the
//! enclave relies on when it binds a vault id into the context.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::store::KEY_LEN;

const MAGIC: &[u8; 4] = b"VLK1";
const AAD_LABEL: &[u8] = b"vettid-local-kms blob v1\0";
const TAG_LEN: usize = 16;

/// Largest `CiphertextBlob` KMS accepts (6144 bytes); checked before parsing.
pub const MAX_BLOB_LEN: usize = 6144;

/// A parsed blob: the key id it names and the sealed part.
pub struct Blob<'a> {
    /// The key the blob was made with.
    pub key_id: &'a str,
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
}

fn invalid() -> KmsError {
    KmsError::InvalidCiphertext("The ciphertext is invalid or was not produced by this KMS".into())
}

/// Parses a blob's framing (no cryptography yet).
///
/// # Errors
/// [`KmsError::Validation`] above [`MAX_BLOB_LEN`]; [`KmsError::InvalidCiphertext`] for any framing error.
pub fn parse(blob: &[u8]) -> Result<Blob<'_>, KmsError> {
    if blob.len() > MAX_BLOB_LEN {
        return Err(KmsError::Validation(format!(
            "CiphertextBlob is longer than {MAX_BLOB_LEN} bytes"
        )));
    }
    let rest = blob.strip_prefix(MAGIC).ok_or_else(invalid)?;
    let (&id_len, rest) = rest.split_first().ok_or_else(invalid)?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + NONCE_LEN + TAG_LEN {
        return Err(invalid());
    }
    let (id, rest) = rest.split_at(id_len);
    let key_id = std::str::from_utf8(id).map_err(|_| invalid())?;
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Ok(Blob {
        key_id,
        nonce: nonce.try_into().map_err(|_| invalid())?,
        sealed,
    })
}

/// Seals `plaintext` under `key` for `key_id` and `context`.
///
/// # Errors
/// [`KmsError::Internal`] when random generation or sealing fails.
pub fn seal(
    key: &[u8; KEY_LEN],
    key_id: &str,
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let internal = |_| KmsError::Internal("sealing failed".into());
    let id_len =
        u8::try_from(key_id.len()).map_err(|_| KmsError::Internal("key id too long".into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(internal)?;
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(internal)?);
    let mut sealed = plaintext.to_vec();
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(key_id, context)),
        &mut sealed,
    )
    .map_err(internal)?;

    let mut out = Vec::with_capacity(MAGIC.len() + 1 + key_id.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.push(id_len);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a parsed blob with the key it names and the caller's `context`.
///
/// # Errors
/// [`KmsError::InvalidCiphertext`] when authentication fails (altered blob, other key, other context).
pub fn open(
    blob: &Blob<'_>,
    key: &[u8; KEY_LEN],
    context: &BTreeMap<String, String>,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| invalid())?);
    let mut buffer = Zeroizing::new(blob.sealed.to_vec());
    let len = aead
        .open_in_place(
            Nonce::assume_unique_for_key(blob.nonce),
            Aad::from(aad(blob.key_id, context)),
            &mut buffer,
        )
        .map_err(|_| invalid())?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

/// Label ‖ key id ‖ the context as sorted, length-prefixed (u32 BE) key/value pairs: unambiguous, so no two
/// different contexts share an AAD.
fn aad(key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = AAD_LABEL.to_vec();
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(key_id.as_bytes());
    for (k, v) in context {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip_and_context_binding() {
        let key = [9u8; KEY_LEN];
        let context = ctx(&[("vault", "abc")]);
        let sealed = seal(&key, "k1", &context, b"secret").unwrap();
        let blob = parse(&sealed).unwrap();
        assert_eq!(blob.key_id, "k1");
        assert_eq!(open(&blob, &key, &context).unwrap().as_slice(), b"secret");
        assert!(open(&blob, &key, &ctx(&[])).is_err());
        assert!(open(&blob, &key, &ctx(&[("vault", "abd")])).is_err());
        // Pair boundaries are unambiguous: ("ab","c") is not ("a","bc").
        let a = seal(&key, "k1", &ctx(&[("ab", "c")]), b"x").unwrap();
        assert!(open(&parse(&a).unwrap(), &key, &ctx(&[("a", "bc")])).is_err());
    }

    #[test]
    fn framing_errors_are_invalid_ciphertext() {
        let sealed = seal(&[1; KEY_LEN], "k1", &BTreeMap::new(), b"").unwrap();
        for len in 0..sealed.len() - TAG_LEN {
            assert!(parse(&sealed[..len]).is_err(), "len {len}");
        }
        let mut moved = sealed.clone();
        moved[5] = b'k';
        moved[6] = b'2';
        assert!(open(&parse(&moved).unwrap(), &[1; KEY_LEN], &BTreeMap::new()).is_err());
        assert!(matches!(
            parse(&vec![0; MAX_BLOB_LEN + 1]),
            Err(KmsError::Validation(_))
        ));
    }
}
