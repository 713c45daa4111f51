//! Opening a `CiphertextForRecipient`: bound, parse, check the recipient, unwrap the key, decrypt.

use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_256, AES_256_KEY_LEN,
};
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use crate::cms::{self, Rid};
use crate::error::RecipientError;
use crate::key::RecipientKey;
use crate::MAX_INPUT_LEN;

/// Opens the CMS EnvelopedData that KMS returns as `CiphertextForRecipient` and returns the plaintext (the data
/// key, the decrypted blob or the random bytes).
///
/// Accepts BER (KMS's indefinite-length form) and DER alike. Everything is checked before any private-key
/// operation: the size bound, the whole structure, the algorithms (RSAES-OAEP-SHA-256 key transport and
/// AES-256-CBC content only; PKCS#1 v1.5 is refused, never tried), and that the envelope is addressed to `key`.
///
/// # Errors
/// - [`RecipientError::TooLarge`] above [`MAX_INPUT_LEN`], before parsing;
/// - [`RecipientError::Malformed`] for anything that is not a well-formed envelope of KMS's shape;
/// - [`RecipientError::UnsupportedAlgorithm`] for a well-formed envelope using other algorithms;
/// - [`RecipientError::RecipientMismatch`] when it is addressed to another key;
/// - [`RecipientError::Decrypt`] when key transport or content decryption fails.
pub fn open_ciphertext_for_recipient(
    key: &RecipientKey,
    ber: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RecipientError> {
    if ber.len() > MAX_INPUT_LEN {
        return Err(RecipientError::TooLarge {
            len: ber.len(),
            max: MAX_INPUT_LEN,
        });
    }
    let envelope = cms::parse(ber)?;
    match &envelope.rid {
        Rid::Ski(ski) if ski.as_ref() == key.subject_key_identifier() => {}
        _ => return Err(RecipientError::RecipientMismatch),
    }

    let cek = key.unwrap_key(&envelope.encrypted_key)?;
    if cek.len() != AES_256_KEY_LEN {
        return Err(RecipientError::Decrypt);
    }
    let cipher = UnboundCipherKey::new(&AES_256, &cek)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| RecipientError::Decrypt)?;
    let mut plaintext = Zeroizing::new(envelope.ciphertext.into_owned());
    let context = DecryptionContext::Iv128(FixedLength::from(envelope.iv));
    let len = cipher
        .decrypt(&mut plaintext, context)
        .map_err(|_| RecipientError::Decrypt)?
        .len();
    // The padding stays in the buffer's spare capacity, which `Zeroizing` clears on drop with the rest.
    plaintext.truncate(len);
    Ok(plaintext)
}
