//! The attested `Recipient`: a fresh RSA-2048 key per call, an NSM document carrying its public
//! key, and the checks on KMS's reply.
//!
//! A fresh key per call means an envelope captured by the parent (it sees ciphertext only, but it
//! could keep it) is useless once the call is over: the private key only ever lived in this call.
//! Key generation (tens of ms) and the NSM call (a blocking ioctl) run on the blocking pool, so the
//! I/O thread keeps serving other requests meanwhile.

use std::sync::Arc;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use vettid_nsm::{AttestationRequest, Nsm};
use vettid_recipient::{open_ciphertext_for_recipient, RecipientError, RecipientKey};
use vettid_vault_crypto::Material;
use zeroize::Zeroizing;

use crate::sealing::SealError;

/// Size of the data keys we ask for (KeySpec AES_256) and accept.
pub const DATA_KEY_LEN: usize = 32;

/// One call's recipient: the private key and the attestation document naming its public key.
pub struct Recipient {
    key: RecipientKey,
    document: Vec<u8>,
}

impl Recipient {
    /// A fresh key and its attestation document, made on the blocking pool.
    ///
    /// # Errors
    /// [`SealError::Unavailable`] when key generation or the NSM fails (logged with the reason).
    pub async fn fresh(nsm: Arc<dyn Nsm>) -> Result<Self, SealError> {
        let made = tokio::task::spawn_blocking(move || {
            let key = RecipientKey::generate().map_err(|_| "recipient key generation")?;
            let document = nsm
                .attest(&AttestationRequest {
                    nonce: None,
                    public_key: Some(key.public_key_der().to_vec()),
                    user_data: None,
                })
                .map_err(|_| "attestation")?;
            Ok::<_, &'static str>(Self { key, document })
        })
        .await;
        match made {
            Ok(Ok(recipient)) => Ok(recipient),
            Ok(Err(reason)) => {
                tracing::error!(
                    code = "KMSUnavailable",
                    reason,
                    "cannot prepare the KMS recipient"
                );
                Err(SealError::Unavailable)
            }
            Err(_) => {
                tracing::error!(
                    code = "KMSUnavailable",
                    reason = "panic",
                    "cannot prepare the KMS recipient"
                );
                Err(SealError::Unavailable)
            }
        }
    }

    /// The `Recipient` request field.
    pub fn info(&self) -> RecipientInfo {
        RecipientInfo::builder()
            .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
            .attestation_document(Blob::new(self.document.clone()))
            .build()
    }

    /// The data key from a reply: only from `CiphertextForRecipient`, opened with this call's key.
    ///
    /// # Errors
    /// - [`SealError::Downgrade`] when the reply carries `Plaintext` (with or without an envelope):
    ///   KMS never does that for a request with a Recipient, so the reply is refused whole and the
    ///   plaintext is never used;
    /// - [`SealError::BadEnvelope`] when there is no envelope, it does not open, or it does not
    ///   hold exactly [`DATA_KEY_LEN`] bytes.
    pub async fn open(
        self,
        plaintext: Option<&Blob>,
        envelope: Option<&Blob>,
    ) -> Result<Material, SealError> {
        let data_key = self.open_bytes(plaintext, envelope, DATA_KEY_LEN).await?;
        let bytes: [u8; DATA_KEY_LEN] = data_key.as_slice().try_into().map_err(|_| {
            tracing::error!(
                code = "KMSBadEnvelope",
                reason = "length",
                "KMS data key is not 32 bytes"
            );
            SealError::BadEnvelope
        })?;
        Ok(Material::from_bytes(bytes))
    }

    /// Any plaintext of at most `max_len` bytes from a reply (a `Decrypt` of something that is not
    /// a data key, e.g. the trusted store's sealed credentials), with the same refusals as
    /// [`Recipient::open`]. The bytes are zeroized when dropped.
    ///
    /// # Errors
    /// [`SealError::Downgrade`]; [`SealError::BadEnvelope`] also for a plaintext over `max_len`.
    pub async fn open_bytes(
        self,
        plaintext: Option<&Blob>,
        envelope: Option<&Blob>,
        max_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if plaintext.is_some() {
            return Err(SealError::Downgrade);
        }
        let envelope = envelope.ok_or(SealError::BadEnvelope)?.as_ref().to_vec();
        let opened = tokio::task::spawn_blocking(move || {
            open_ciphertext_for_recipient(&self.key, &envelope)
        })
        .await
        .map_err(|_| SealError::BadEnvelope)?;
        let bytes = opened.map_err(|e| {
            tracing::error!(
                code = "KMSBadEnvelope",
                reason = envelope_reason(&e),
                "KMS reply did not open"
            );
            SealError::BadEnvelope
        })?;
        if bytes.len() > max_len {
            tracing::error!(
                code = "KMSBadEnvelope",
                reason = "length",
                "KMS plaintext is longer than expected"
            );
            return Err(SealError::BadEnvelope);
        }
        Ok(bytes)
    }
}

fn envelope_reason(e: &RecipientError) -> &'static str {
    match e {
        RecipientError::TooLarge { .. } => "too_large",
        RecipientError::Malformed(_) => "malformed",
        RecipientError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
        RecipientError::RecipientMismatch => "recipient_mismatch",
        RecipientError::Decrypt => "decrypt",
        RecipientError::Key(_) => "key",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nsm() -> Arc<dyn Nsm> {
        Arc::new(
            vettid_nsm::MockNsm::ephemeral(vettid_nsm::MockPcrs::from_measurement(b"t")).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_plaintext_reply_is_a_downgrade_even_next_to_an_envelope() {
        let plain = Blob::new(vec![7u8; 32]);
        let recipient = Recipient::fresh(nsm()).await.unwrap();
        assert_eq!(
            recipient.open(Some(&plain), None).await.unwrap_err(),
            SealError::Downgrade
        );
        let recipient = Recipient::fresh(nsm()).await.unwrap();
        let junk = Blob::new(vec![0x30, 0x00]);
        assert_eq!(
            recipient.open(Some(&plain), Some(&junk)).await.unwrap_err(),
            SealError::Downgrade
        );
    }

    #[tokio::test]
    async fn missing_or_foreign_envelopes_are_bad_envelopes() {
        let recipient = Recipient::fresh(nsm()).await.unwrap();
        assert_eq!(
            recipient.open(None, None).await.unwrap_err(),
            SealError::BadEnvelope
        );
        let recipient = Recipient::fresh(nsm()).await.unwrap();
        let junk = Blob::new(b"not cms".to_vec());
        assert_eq!(
            recipient.open(None, Some(&junk)).await.unwrap_err(),
            SealError::BadEnvelope
        );
    }

    #[tokio::test]
    async fn each_recipient_has_its_own_key_and_document() {
        let a = Recipient::fresh(nsm()).await.unwrap();
        let b = Recipient::fresh(nsm()).await.unwrap();
        assert_ne!(a.key.public_key_der(), b.key.public_key_der());
        assert_ne!(a.document, b.document);
        assert_eq!(
            a.info().key_encryption_algorithm(),
            Some(&KeyEncryptionMechanism::RsaesOaepSha256)
        );
    }
}
