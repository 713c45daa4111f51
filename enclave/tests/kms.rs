//! The enclave's KMS client end to end, on this machine: the real `aws-sdk-kms` with TLS verified in the
//! "enclave" (this process), through the in-enclave forwarder and a test tunnel speaking the parent's preamble,
//! to the local KMS serving HTTPS for `kms.vettid.test` with the real Recipient and PCR0 policy, attested by
//! the mock NSM. Nothing here opens a vsock socket: the tunnel is a Unix socket.

mod kms_harness;

use std::time::{Duration, Instant};

use kms_harness::{
    key_arn, logs, mock_nsm, pcr0_hex, world, LocalKms, Setup, TestCredentials, Tunnel, HOST, KEY,
    SECOND_KEY,
};
use vettid_enclave::sealing::{SealContext, SealError, Sealer};

const VAULT: &str = "6f1c0a56-5a8e-4c1e-9d0f-2b7e4a1c3d5e";

// === tests ===

#[tokio::test]
async fn generate_then_unseal_round_trips_through_tls_and_the_tunnel() {
    let (local, tunnel, kms, _roots) = world().await;
    let context = SealContext::vault_material(VAULT);
    let (material, blob) = kms.generate(&context).await.unwrap();
    let again = kms.unseal(&blob, &context).await.unwrap();
    assert_eq!(material.expose(), again.expose());
    assert!(!blob.is_empty());
    assert!(kms.endpoint_url().starts_with("https://kms.vettid.test:"));
    assert_eq!(kms.forward_addr().ip().to_string(), "127.0.0.1");
    // The preamble names the endpoint's real host and port, not the forwarder's.
    let targets = tunnel.targets();
    assert!(!targets.is_empty());
    assert!(
        targets
            .iter()
            .all(|t| *t == format!("{HOST}:{}", local.tls_port)),
        "{targets:?}"
    );

    // Two generations give different material.
    let (other, _) = kms.generate(&context).await.unwrap();
    assert_ne!(other.expose(), material.expose());

    // Latency of one generate + unseal, warm (pooled TLS connection), each with a fresh RSA-2048 recipient key.
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let (m, b) = kms.generate(&context).await.unwrap();
        assert_eq!(kms.unseal(&b, &context).await.unwrap().expose(), m.expose());
    }
    let per_round = started.elapsed() / rounds;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "KMS generate+unseal ({profile} build, mock NSM, TLS via tunnel): {per_round:?} per round"
    );
    assert!(per_round < Duration::from_secs(10));
}

#[tokio::test]
async fn another_context_is_invalid_ciphertext() {
    let (_local, _tunnel, kms, _roots) = world().await;
    let (_, blob) = kms
        .generate(&SealContext::vault_material(VAULT))
        .await
        .unwrap();
    let other_vault = SealContext::vault_material("another-vault");
    assert_eq!(
        kms.unseal(&blob, &other_vault).await.unwrap_err(),
        SealError::InvalidCiphertext
    );
    let other_purpose = SealContext {
        vault: VAULT.into(),
        purpose: "something-else",
    };
    assert_eq!(
        kms.unseal(&blob, &other_purpose).await.unwrap_err(),
        SealError::InvalidCiphertext
    );
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        kms.unseal(&tampered, &SealContext::vault_material(VAULT))
            .await
            .unwrap_err(),
        SealError::InvalidCiphertext
    );
}

#[tokio::test]
async fn an_enclave_whose_pcr0_is_not_allowed_is_access_denied() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let allowed = mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&allowed, tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    // Same mock root, another measurement: a valid document with a PCR0 the key policy does not list.
    let intruder = mock_nsm(roots.path(), b"enclave-modified");
    assert_ne!(pcr0_hex(&intruder), pcr0_hex(&allowed));
    let context = SealContext::vault_material(VAULT);
    // Its own policy check already refuses: the policy lets a measurement it does not trust decrypt.
    let wary = Setup::new(&local)
        .start(&local, &tunnel, mock_nsm(roots.path(), b"enclave-modified"))
        .await;
    assert_eq!(
        wary.generate(&context).await.unwrap_err(),
        SealError::KeyPolicyUnsafe
    );
    // Told to trust it, it asks KMS, which refuses its PCR0.
    let kms = Setup {
        policy_pcr0: vec![pcr0_hex(&allowed)],
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, intruder)
    .await;
    assert_eq!(
        kms.generate(&context).await.unwrap_err(),
        SealError::AccessDenied
    );

    // A blob made by the allowed enclave does not open for the intruder either.
    let good = Setup::new(&local).start(&local, &tunnel, allowed).await;
    let (_, blob) = good.generate(&context).await.unwrap();
    assert_eq!(
        kms.unseal(&blob, &context).await.unwrap_err(),
        SealError::AccessDenied
    );
}

#[tokio::test]
async fn a_disabled_key_is_key_disabled_until_enabled_again() {
    let (local, _tunnel, kms, _roots) = world().await;
    let context = SealContext::vault_material(VAULT);
    let (material, blob) = kms.generate(&context).await.unwrap();

    local.admin.disable_key().key_id(KEY).send().await.unwrap();
    assert_eq!(
        kms.generate(&context).await.unwrap_err(),
        SealError::KeyDisabled
    );
    assert_eq!(
        kms.unseal(&blob, &context).await.unwrap_err(),
        SealError::KeyDisabled
    );

    local.admin.enable_key().key_id(KEY).send().await.unwrap();
    assert_eq!(
        kms.unseal(&blob, &context).await.unwrap().expose(),
        material.expose()
    );
}

#[tokio::test]
async fn pending_deletion_and_unknown_keys_are_typed() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm, tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    local
        .admin
        .schedule_key_deletion()
        .key_id(SECOND_KEY)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let context = SealContext::vault_material(VAULT);
    let pending = Setup {
        key_id: key_arn(SECOND_KEY),
        ..Setup::new(&local)
    }
    .start(
        &local,
        &tunnel,
        mock_nsm(roots.path(), b"enclave-release-1"),
    )
    .await;
    assert_eq!(
        pending.generate(&context).await.unwrap_err(),
        SealError::KeyPendingDeletion
    );
    let missing = Setup {
        key_id: key_arn("3234abcd-12ab-34cd-56ef-1234567890ab"),
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm)
    .await;
    assert_eq!(
        missing.generate(&context).await.unwrap_err(),
        SealError::KeyNotFound
    );
}

#[tokio::test]
async fn a_plaintext_reply_is_refused_as_a_downgrade() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = mock_nsm(roots.path(), b"enclave-release-1");
    // Like moto: Recipient ignored, Plaintext returned.
    let local = LocalKms::start(&nsm, tempfile::tempdir().unwrap(), true).await;
    let tunnel = Tunnel::start(false).await;
    let kms = Setup::new(&local).start(&local, &tunnel, nsm).await;
    let context = SealContext::vault_material(VAULT);
    assert_eq!(
        kms.generate(&context).await.unwrap_err(),
        SealError::Downgrade
    );

    let mut request = local
        .admin
        .generate_data_key()
        .key_id(KEY)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256);
    for (k, v) in context.pairs() {
        request = request.encryption_context(k, v);
    }
    let blob = request
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    assert_eq!(
        kms.unseal(&blob, &context).await.unwrap_err(),
        SealError::Downgrade
    );
}

#[tokio::test]
async fn tls_is_verified_in_the_enclave_and_untrusted_certificates_are_unavailable() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let context = SealContext::vault_material(VAULT);

    // Public roots only: the dev CA is not among them.
    let public_only = Setup {
        ca: None,
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    assert_eq!(
        public_only.generate(&context).await.unwrap_err(),
        SealError::Unavailable
    );

    // Another CA (a second local KMS's).
    let other = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let wrong_ca = Setup {
        ca: Some(other.ca()),
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    assert_eq!(
        wrong_ca.generate(&context).await.unwrap_err(),
        SealError::Unavailable
    );

    // The right CA but another host name: the tunnel reaches the same server, whose certificate is for
    // kms.vettid.test only.
    let wrong_name = Setup {
        endpoint_host: "other.vettid.test",
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    assert_eq!(
        wrong_name.generate(&context).await.unwrap_err(),
        SealError::Unavailable
    );
    assert!(tunnel
        .targets()
        .contains(&format!("other.vettid.test:{}", local.tls_port)));
}

#[tokio::test]
async fn a_denied_tunnel_is_unavailable() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm, tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(true).await;
    let kms = Setup::new(&local).start(&local, &tunnel, nsm).await;
    let started = Instant::now();
    assert_eq!(
        kms.generate(&SealContext::vault_material(VAULT))
            .await
            .unwrap_err(),
        SealError::Unavailable
    );
    // Refused at once (with the SDK's retries), not after the operation timeout.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(!tunnel.targets().is_empty());
}

#[tokio::test]
async fn credentials_close_to_expiry_are_fetched_again_and_long_lived_ones_are_cached() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let context = SealContext::vault_material(VAULT);

    // Expiring within the refresh window: every call fetches fresh credentials.
    let expiring = TestCredentials::new(Some(Duration::from_secs(20)));
    let kms = Setup {
        credentials: expiring.clone(),
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    // The first seal waits for the key policy check (three KMS calls); count from there.
    let (_, blob) = kms.generate(&context).await.unwrap();
    let before = expiring.fetches();
    kms.unseal(&blob, &context).await.unwrap();
    kms.unseal(&blob, &context).await.unwrap();
    assert_eq!(expiring.fetches() - before, 2);

    // Valid for an hour: fetched once.
    let long_lived = TestCredentials::new(Some(Duration::from_secs(3600)));
    let kms = Setup {
        credentials: long_lived.clone(),
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    let (_, blob) = kms.generate(&context).await.unwrap();
    kms.unseal(&blob, &context).await.unwrap();
    kms.unseal(&blob, &context).await.unwrap();
    kms.check_key_now().await.unwrap();
    assert_eq!(long_lived.fetches(), 1);
}

#[test]
fn half_a_kms_configuration_is_a_usage_error_before_anything_binds() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix://{}", dir.path().join("enclave.sock").display());
    for flags in [
        &["--kms-endpoint", "https://kms.us-east-1.amazonaws.com"][..],
        &["--kms-forward-port", "0"][..],
        &[
            "--kms-endpoint",
            "http://kms.us-east-1.amazonaws.com",
            "--kms-region",
            "us-east-1",
            "--kms-key-id",
            "alias/vettid",
            "--kms-tunnel",
            "vsock://3:8000",
        ][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vettid-enclave"))
            .args(["--listen", &listen])
            .args(flags)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid KMS configuration"), "{stderr}");
    }
}
