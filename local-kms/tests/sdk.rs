//! The real `aws-sdk-kms` client against the server: key management, data keys, encryption context, errors.

mod common;

use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use common::{code, create_key, Server};

#[tokio::test]
async fn generate_data_key_without_recipient_returns_plaintext_and_a_blob_that_decrypts() {
    let server = Server::start(&[]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let out = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let plaintext = out.plaintext().expect("Plaintext").as_ref().to_vec();
    assert_eq!(plaintext.len(), 32);
    assert!(out.ciphertext_for_recipient().is_none());
    assert!(out.key_id().unwrap().ends_with(&key_id));

    let decrypted = kms
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypted.plaintext().unwrap().as_ref(),
        plaintext.as_slice()
    );

    let sized = kms
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    assert_eq!(sized.plaintext().unwrap().as_ref().len(), 64);
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_binds_the_encryption_context() {
    let server = Server::start(&[]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let encrypted = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"vault secret".to_vec()))
        .encryption_context("vault", "guid-1")
        .send()
        .await
        .unwrap();
    let blob = encrypted.ciphertext_blob().unwrap().clone();

    let ok = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("vault", "guid-1")
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.plaintext().unwrap().as_ref(), b"vault secret");

    for context in [Some(("vault", "guid-2")), Some(("other", "guid-1")), None] {
        let mut request = kms.decrypt().ciphertext_blob(blob.clone());
        if let Some((k, v)) = context {
            request = request.encryption_context(k, v);
        }
        let err = request.send().await.unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                DecryptError::InvalidCiphertextException(_)
            ),
            "context {context:?}"
        );
    }
    let err = kms
        .decrypt()
        .ciphertext_blob(Blob::new(b"not a blob".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
}

#[tokio::test]
async fn decrypt_with_another_key_id_is_incorrect_key() {
    let server = Server::start(&[]);
    let kms = server.client();
    let (a, b) = (create_key(&kms).await, create_key(&kms).await);
    let blob = kms
        .encrypt()
        .key_id(&a)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let err = kms
        .decrypt()
        .ciphertext_blob(blob)
        .key_id(&b)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IncorrectKeyException");
}

#[tokio::test]
async fn disabled_key_is_refused_until_enabled_again() {
    let server = Server::start(&[]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let blob = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();

    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let described = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        DecryptError::DisabledException(_)
    ));
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");

    kms.enable_key().key_id(&key_id).send().await.unwrap();
    kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
}

#[tokio::test]
async fn key_pending_deletion_is_an_invalid_state_and_survives_a_restart() {
    let mut server = Server::start(&[]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let scheduled = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.key_state(), Some(&KeyState::PendingDeletion));
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    let err = kms.enable_key().key_id(&key_id).send().await.unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");

    // The state lives in the key file: a restarted server still refuses the key.
    assert!(server
        .stop("TERM", std::time::Duration::from_secs(10))
        .is_some());
    let restarted = Server::start_in(
        std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap()),
        &[],
    );
    let kms = restarted.client();
    let described = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::PendingDeletion)
    );
    kms.cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
}

#[tokio::test]
async fn unknown_keys_and_aliases_are_not_found() {
    let server = Server::start(&[]);
    let kms = server.client();
    for id in [
        "6f1c0a56-0000-4000-8000-000000000000",
        "arn:aws:kms:us-east-1:000000000000:key/nope",
        "alias/vettid",
    ] {
        let err = kms.describe_key().key_id(id).send().await.unwrap_err();
        assert_eq!(code(&err), "NotFoundException", "{id}");
    }
    let err = kms
        .generate_data_key()
        .key_id("missing")
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
}

#[tokio::test]
async fn generate_random_and_describe_by_arn() {
    let server = Server::start(&["--ensure-key", "dev-key"]);
    let kms = server.client();
    let random = kms
        .generate_random()
        .number_of_bytes(48)
        .send()
        .await
        .unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 48);
    let err = kms
        .generate_random()
        .number_of_bytes(2000)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");

    let arn = "arn:aws:kms:us-east-1:000000000000:key/dev-key";
    let meta = kms.describe_key().key_id(arn).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    assert_eq!(meta.arn(), Some(arn));
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert!(meta.enabled());
}
