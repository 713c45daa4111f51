//! The attested `Recipient` flow through the real SDK: mock-NSM documents, PCR0 allow-lists, the CMS reply
//! opened by `vettid-recipient`, and the moto-like `--ignore-recipient` downgrade.

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyEncryptionMechanism, RecipientInfo};
use common::{code, create_key, mock_nsm, pcr0_hex, recipient, root_pem, Server};
use vettid_recipient::{open_ciphertext_for_recipient, RecipientKey};

/// A server trusting one mock root, plus that root's directory for more mocks.
fn server_with_root(measurement: &[u8], extra: &[&str]) -> (Server, vettid_nsm::MockNsm) {
    let dir = tempfile::tempdir().unwrap();
    let nsm = mock_nsm(dir.path(), measurement);
    let root = root_pem(&nsm, dir.path());
    let mut args = vec!["--attestation-root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start_in(dir, &args), nsm)
}

#[tokio::test]
async fn generate_data_key_with_recipient_returns_only_ciphertext_for_recipient() {
    let probe = mock_nsm(tempfile::tempdir().unwrap().path(), b"release-1");
    let (server, nsm) = server_with_root(b"release-1", &["--allow-pcr0", &pcr0_hex(&probe)]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let recipient_key = RecipientKey::generate().unwrap();

    let out = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(&nsm, recipient_key.public_key_der()))
        .send()
        .await
        .unwrap();
    assert!(
        out.plaintext().is_none(),
        "Plaintext must be absent with a Recipient"
    );
    let envelope = out
        .ciphertext_for_recipient()
        .expect("CiphertextForRecipient");
    let data_key = open_ciphertext_for_recipient(&recipient_key, envelope.as_ref()).unwrap();
    assert_eq!(data_key.len(), 32);

    // Decrypt of the blob with a fresh recipient key yields the same data key, again only as an envelope.
    let second_key = RecipientKey::generate().unwrap();
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob().unwrap().clone())
        .recipient(recipient(&nsm, second_key.public_key_der()))
        .send()
        .await
        .unwrap();
    assert!(decrypted.plaintext().is_none());
    let reopened = open_ciphertext_for_recipient(
        &second_key,
        decrypted.ciphertext_for_recipient().unwrap().as_ref(),
    )
    .unwrap();
    assert_eq!(reopened.as_slice(), data_key.as_slice());
    // The first key cannot open the second envelope.
    assert!(open_ciphertext_for_recipient(
        &recipient_key,
        decrypted.ciphertext_for_recipient().unwrap().as_ref()
    )
    .is_err());

    let random = kms
        .generate_random()
        .number_of_bytes(32)
        .recipient(recipient(&nsm, second_key.public_key_der()))
        .send()
        .await
        .unwrap();
    assert!(random.plaintext().is_none());
    let bytes = open_ciphertext_for_recipient(
        &second_key,
        random.ciphertext_for_recipient().unwrap().as_ref(),
    )
    .unwrap();
    assert_eq!(bytes.len(), 32);
}

#[tokio::test]
async fn pcr0_outside_the_allow_list_is_access_denied() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = mock_nsm(dir.path(), b"release-1");
    let other = mock_nsm(dir.path(), b"attacker build");
    let root = root_pem(&allowed, dir.path());
    let pcr0 = pcr0_hex(&allowed);
    let server = Server::start_in(
        dir,
        &[
            "--attestation-root",
            root.to_str().unwrap(),
            "--allow-pcr0",
            &pcr0,
        ],
    );
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let key = RecipientKey::generate().unwrap();
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(&other, key.public_key_der()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(
        server.log_contains("is not allowed by the key policy"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn two_allowed_pcr0_values_both_work_for_a_rolling_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let old = mock_nsm(dir.path(), b"release-1");
    let new = mock_nsm(dir.path(), b"release-2");
    assert_ne!(pcr0_hex(&old), pcr0_hex(&new));
    let root = root_pem(&old, dir.path());
    let (p_old, p_new) = (pcr0_hex(&old), pcr0_hex(&new));
    let server = Server::start_in(
        dir,
        &[
            "--attestation-root",
            root.to_str().unwrap(),
            "--allow-pcr0",
            &p_old,
            "--allow-pcr0",
            &p_new,
        ],
    );
    let kms = server.client();
    let key_id = create_key(&kms).await;
    for nsm in [&old, &new] {
        let key = RecipientKey::generate().unwrap();
        let out = kms
            .generate_data_key()
            .key_id(&key_id)
            .key_spec(DataKeySpec::Aes256)
            .recipient(recipient(nsm, key.public_key_der()))
            .send()
            .await
            .unwrap();
        open_ciphertext_for_recipient(&key, out.ciphertext_for_recipient().unwrap().as_ref())
            .unwrap();
    }
}

#[tokio::test]
async fn per_key_allow_list_in_the_key_file_overrides_the_global_one() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let global = mock_nsm(dir.path(), b"release-1");
    let pinned = mock_nsm(dir.path(), b"vault-only build");
    let root = root_pem(&global, dir.path());
    let file = serde_json::json!({ "version": 1, "keys": [{
        "key_id": "pinned-key", "state": "Enabled", "creation_date": 1_700_000_000u64,
        "allowed_pcr0": [pcr0_hex(&pinned)],
        "material": base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    }]});
    std::fs::write(dir.path().join("keys.json"), file.to_string()).unwrap();
    let p_global = pcr0_hex(&global);
    let server = Server::start_in(
        dir,
        &[
            "--attestation-root",
            root.to_str().unwrap(),
            "--allow-pcr0",
            &p_global,
        ],
    );
    let kms = server.client();
    let key = RecipientKey::generate().unwrap();
    let request = |nsm| {
        kms.generate_data_key()
            .key_id("pinned-key")
            .key_spec(DataKeySpec::Aes256)
            .recipient(recipient(nsm, key.public_key_der()))
            .send()
    };
    request(&pinned).await.unwrap();
    assert_eq!(
        code(&request(&global).await.unwrap_err()),
        "AccessDeniedException"
    );
}

#[tokio::test]
async fn documents_from_an_untrusted_root_are_access_denied() {
    // The server trusts only the AWS root: a mock document must fail verification.
    let nsm = mock_nsm(tempfile::tempdir().unwrap().path(), b"release-1");
    let server = Server::start(&["--allow-pcr0", &pcr0_hex(&nsm)]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let key = RecipientKey::generate().unwrap();
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(&nsm, key.public_key_der()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");

    // Garbage in place of a document is refused the same way.
    let garbage = RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .attestation_document(Blob::new(vec![0xA0; 64]))
        .build();
    let err = kms
        .generate_random()
        .number_of_bytes(8)
        .recipient(garbage)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
}

#[tokio::test]
async fn malformed_recipients_are_validation_errors() {
    let probe = mock_nsm(tempfile::tempdir().unwrap().path(), b"release-1");
    let (server, nsm) = server_with_root(b"release-1", &["--allow-pcr0", &pcr0_hex(&probe)]);
    let kms = server.client();
    let key = RecipientKey::generate().unwrap();
    let mut wrong_algorithm = recipient(&nsm, key.public_key_der());
    wrong_algorithm = RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::from("RSAES_PKCS1_V1_5"))
        .set_attestation_document(wrong_algorithm.attestation_document().cloned())
        .build();
    let err = kms
        .generate_random()
        .number_of_bytes(8)
        .recipient(wrong_algorithm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");

    // A verified document whose public_key is not an RSA SPKI.
    let err = kms
        .generate_random()
        .number_of_bytes(8)
        .recipient(recipient(&nsm, &[0x30, 0x03, 0x02, 0x01, 0x01]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn disabled_key_with_recipient_is_disabled_not_access_denied() {
    let probe = mock_nsm(tempfile::tempdir().unwrap().path(), b"release-1");
    let (server, nsm) = server_with_root(b"release-1", &["--allow-pcr0", &pcr0_hex(&probe)]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let key = RecipientKey::generate().unwrap();
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(&nsm, key.public_key_der()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
}

#[tokio::test]
async fn require_recipient_refuses_plaintext_requests() {
    let server = Server::start(&["--require-recipient"]);
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    // The default policy then conditions every use on attestation, and Encrypt carries none: refused, as
    // AWS refuses it under such a policy (an unattested Encrypt could forge a blob the enclave trusts).
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
}

#[tokio::test]
async fn ignore_recipient_behaves_like_moto() {
    let probe = mock_nsm(tempfile::tempdir().unwrap().path(), b"release-1");
    let (server, nsm) = server_with_root(b"release-1", &["--ignore-recipient"]);
    let _ = probe;
    let kms = server.client();
    let key_id = create_key(&kms).await;
    let key = RecipientKey::generate().unwrap();
    let out = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(&nsm, key.public_key_der()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext().expect("Plaintext").as_ref().len(), 32);
    assert!(out.ciphertext_for_recipient().is_none());
}
