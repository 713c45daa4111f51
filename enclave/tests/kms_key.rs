//! Issue 11, hole 3, played as the host: the enclave's KMS key is named by its full ARN, every reply
//! must name that key, and nothing is sealed under a key whose policy lets anything but an attested
//! enclave with a trusted PCR0 obtain the material. Real aws-sdk-kms, TLS in this process, the local
//! KMS enforcing the policies it serves (kms_harness).

mod kms_harness;

use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use kms_harness::{
    key_arn, logs, mock_nsm, pcr0_hex, safe_policy, LocalKms, Setup, TestCredentials, Tunnel,
    ACCOUNT, HOST_ACCOUNT, HOST_AKID, KEY,
};
use serde_json::{json, Value};
use vettid_enclave::kms::{Kms, KmsConfig};
use vettid_enclave::sealing::{SealContext, Sealer};

const VAULT: &str = "6f1c0a56-5a8e-4c1e-9d0f-2b7e4a1c3d5e";

/// The alias an operator would have named the vault key by.
const ALIAS: &str = "alias/vettid-vault";

fn open_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "kms:*", "Resource": "*"}]})
}

#[tokio::test]
async fn a_host_lending_credentials_of_its_own_account_gets_no_material() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    // The operator's key carries the alias in the operator's account.
    local
        .admin
        .create_alias()
        .alias_name(ALIAS)
        .target_key_id(KEY)
        .send()
        .await
        .unwrap();
    // The host, in its own account: a key with an open policy, under the same alias name.
    let host = local.client_as(HOST_AKID);
    let theirs = host
        .create_key()
        .policy(open_policy().to_string())
        .send()
        .await
        .unwrap();
    let theirs = theirs.key_metadata().unwrap().key_id().to_owned();
    host.create_alias()
        .alias_name(ALIAS)
        .target_key_id(&theirs)
        .send()
        .await
        .unwrap();
    let context = SealContext::vault_material(VAULT);

    // The host changes nothing but the credentials it lends; whatever the key flag names, the host
    // never ends up able to decrypt what the enclave sealed.
    for key_flag in [ALIAS.to_owned(), theirs.clone(), key_arn(KEY)] {
        let setup = Setup {
            key_id: key_flag.clone(),
            credentials: TestCredentials::host_account(),
            ..Setup::new(&local)
        };
        let config = match KmsConfig::from_flags(&setup.flags(&tunnel)) {
            Err(errors) => {
                assert!(errors[0].contains("--kms-key-id"), "{errors:?}");
                continue;
            }
            Ok(config) => config.unwrap(),
        };
        let kms = Kms::start(config, std::sync::Arc::new(nsm()), setup.credentials)
            .await
            .unwrap();
        let Ok((material, blob)) = kms.generate(&context).await else {
            continue;
        };
        // The host holds the blob (it stores vault objects): with its own credentials and no
        // Recipient it asks for the plaintext.
        let mut request = host.decrypt().ciphertext_blob(Blob::new(blob));
        for (k, v) in context.pairs() {
            request = request.encryption_context(k, v);
        }
        if let Ok(out) = request.send().await {
            assert_ne!(
                out.plaintext().map(|p| p.as_ref().to_vec()),
                Some(material.expose().to_vec()),
                "the host recovered a vault's material through --kms-key-id {key_flag}"
            );
        }
    }
}

#[tokio::test]
async fn a_reply_naming_another_key_is_refused_and_its_material_discarded() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let context = SealContext::vault_material(VAULT);
    // A blob sealed honestly.
    let honest = Setup::new(&local).start(&local, &tunnel, nsm()).await;
    let (_, blob) = honest.generate(&context).await.unwrap();
    // The same keys served by a KMS that names another account's key in its replies.
    let other = format!("arn:aws:kms:us-east-1:{HOST_ACCOUNT}:key/{KEY}");
    let (port, _stop) = local.misreporting_twin(&nsm(), &other).await;
    let lying = Setup {
        port,
        ..Setup::new(&local)
    }
    .start(&local, &tunnel, nsm())
    .await;
    let err = lying.generate(&context).await.unwrap_err();
    assert_eq!(err.code(), "KMSKeyMismatch");
    let err = lying.unseal(&blob, &context).await.unwrap_err();
    assert_eq!(err.code(), "KMSKeyMismatch");
}

/// The safe policy plus one statement.
fn safe_plus(pcr0: &str, extra: Value) -> Value {
    let mut policy = safe_policy(&[pcr0.to_owned()]);
    policy["Statement"].as_array_mut().unwrap().push(extra);
    policy
}

#[tokio::test]
async fn unsafe_key_policies_are_refused_before_anything_is_sealed() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let pcr0 = pcr0_hex(&nsm());
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let context = SealContext::vault_material(VAULT);
    let cases = [
        (
            "AWS's default policy (root kms:*)",
            json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"}]}),
        ),
        (
            "decrypt open to the account root",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow",
            "Principal": {"AWS": root}, "Action": "kms:Decrypt", "Resource": "*"}),
            ),
        ),
        (
            "a decrypt statement without the PCR0 condition",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow",
            "Principal": {"AWS": root}, "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
            "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT}}}),
            ),
        ),
        (
            "IfExists on PCR0",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow", "Principal": {"AWS": root},
            "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEqualsIgnoreCaseIfExists": {"kms:RecipientAttestation:PCR0": pcr0}}}),
            ),
        ),
        (
            "another PCR0 may decrypt",
            safe_policy(&[pcr0.clone(), "ab".repeat(48)]),
        ),
        (
            "CreateGrant to the root",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow",
            "Principal": {"AWS": root}, "Action": "kms:CreateGrant", "Resource": "*"}),
            ),
        ),
        (
            "ReEncrypt* to the root",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow",
            "Principal": {"AWS": root}, "Action": "kms:ReEncrypt*", "Resource": "*"}),
            ),
        ),
        (
            "another account's principal",
            safe_plus(
                &pcr0,
                json!({"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{HOST_ACCOUNT}:root")},
            "Action": "kms:DescribeKey", "Resource": "*"}),
            ),
        ),
    ];
    for (name, policy) in cases {
        local.put_policy(KEY, &policy).await;
        let kms = Setup::new(&local).start(&local, &tunnel, nsm()).await;
        let err = kms.generate(&context).await.unwrap_err();
        assert_eq!(err.code(), "KMSKeyPolicyUnsafe", "{name}");
        let health = serde_json::to_value(kms.key_check().unwrap()).unwrap();
        assert_eq!(health["state"], "refused", "{name}: {health}");
        assert_eq!(health["code"], "KMSKeyPolicyUnsafe", "{name}");
        // Back to the safe policy for the next case, so only one thing changes each time.
        local
            .put_policy(KEY, &safe_policy(std::slice::from_ref(&pcr0)))
            .await;
    }
    // The safe policy passes, and health says so.
    let kms = Setup::new(&local).start(&local, &tunnel, nsm()).await;
    kms.generate(&context).await.unwrap();
    assert_eq!(kms.key_check().unwrap().state, "passed");
}

#[tokio::test]
async fn a_policy_rewritten_after_start_stops_new_seals_at_the_next_check() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let context = SealContext::vault_material(VAULT);
    let kms = Setup::new(&local).start(&local, &tunnel, nsm()).await;
    let (material, blob) = kms.generate(&context).await.unwrap();
    // The administrator's door: PutKeyPolicy opens decrypt to the account.
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let open = safe_plus(
        &pcr0_hex(&nsm()),
        json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:Decrypt", "Resource": "*"}),
    );
    local.put_policy(KEY, &open).await;
    assert_eq!(
        kms.check_key_now().await.unwrap_err().code(),
        "KMSKeyPolicyUnsafe"
    );
    assert_eq!(
        kms.generate(&context).await.unwrap_err().code(),
        "KMSKeyPolicyUnsafe"
    );
    // Existing vaults still open (Decrypt returns material to this enclave only).
    assert_eq!(
        kms.unseal(&blob, &context).await.unwrap().expose(),
        material.expose()
    );
}

#[tokio::test]
async fn the_policy_check_costs_a_few_kms_calls_at_start() {
    logs();
    let roots = tempfile::tempdir().unwrap();
    let nsm = || mock_nsm(roots.path(), b"enclave-release-1");
    let local = LocalKms::start(&nsm(), tempfile::tempdir().unwrap(), false).await;
    let tunnel = Tunnel::start(false).await;
    let kms = Setup::new(&local).start(&local, &tunnel, nsm()).await;
    // Cold: the background check at start (TLS handshake through the tunnel included).
    let started = Instant::now();
    while kms.key_check().unwrap().state != "passed" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no check result"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cold = started.elapsed();
    // Warm: DescribeKey + GetKeyPolicy + ListGrants on the pooled connection.
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        kms.check_key_now().await.unwrap();
    }
    let warm = started.elapsed() / rounds;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("KMS key policy check ({profile} build, TLS via tunnel): first {cold:?} (incl. TLS handshake), then {warm:?} per check");
    assert!(warm < Duration::from_secs(2));
}

#[test]
fn aliases_and_bare_key_ids_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix://{}", dir.path().join("enclave.sock").display());
    for key in [
        "alias/vettid-vault",
        "arn:aws:kms:us-east-1:111122223333:alias/vettid-vault",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vettid-enclave"))
            .args(["--listen", &listen])
            .args(["--kms-endpoint", "https://kms.us-east-1.amazonaws.com"])
            .args([
                "--kms-region",
                "us-east-1",
                "--kms-tunnel",
                "vsock://3:8000",
            ])
            .args(["--kms-key-id", key])
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A refused flag exits at once; an accepted one would start serving.
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(64), "{key}: {stderr}");
        assert!(stderr.contains("--kms-key-id"), "{key}: {stderr}");
    }
}
