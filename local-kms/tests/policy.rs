//! Key policies, accounts and aliases as AWS has them: GetKeyPolicy serves the policy that is enforced,
//! PutKeyPolicy changes both, bare ids and aliases resolve in the caller's account, and a caller of another
//! account is refused by a policy that names only the key's own.

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use common::{client_as, Server};
use serde_json::{json, Value};

const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const OWN: &str = "111122223333";
const HOST: &str = "444455556666";

fn code<E: aws_sdk_kms::error::ProvideErrorMetadata>(
    e: &aws_sdk_kms::error::SdkError<E>,
) -> String {
    aws_sdk_kms::error::ProvideErrorMetadata::code(e)
        .unwrap_or_default()
        .to_owned()
}

fn server(extra: &[&str]) -> Server {
    let ensure = format!("{KEY}@{OWN}");
    let own = format!("owner={OWN}");
    let host = format!("host={HOST}");
    let mut args = vec![
        "--account",
        OWN,
        "--ensure-key",
        &ensure,
        "--credential-account",
        &own,
        "--credential-account",
        &host,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn get_key_policy_serves_the_enforced_default_and_describe_names_the_account() {
    let server = server(&[]);
    let owner = client_as(server.port, "owner");
    let arn = format!("arn:aws:kms:us-east-1:{OWN}:key/{KEY}");
    let meta = owner.describe_key().key_id(&arn).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    assert_eq!(meta.arn(), Some(arn.as_str()));
    assert_eq!(meta.aws_account_id(), Some(OWN));
    let out = owner
        .get_key_policy()
        .key_id(KEY)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(out.policy().unwrap()).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    assert_eq!(out.policy_name(), Some("default"));
    // The default policy allows plaintext without a Recipient (no --require-recipient) to the account.
    let without = owner
        .generate_data_key()
        .key_id(&arn)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert!(without.plaintext().is_some());
    assert_eq!(without.key_id(), Some(arn.as_str()));
    let grants = owner.list_grants().key_id(&arn).send().await.unwrap();
    assert!(grants.grants().is_empty() && !grants.truncated());
}

#[tokio::test]
async fn another_account_resolves_its_own_ids_and_aliases_and_is_refused_by_ours() {
    let server = server(&[]);
    let owner = client_as(server.port, "owner");
    let host = client_as(server.port, "host");
    let arn = format!("arn:aws:kms:us-east-1:{OWN}:key/{KEY}");
    // The bare id names no key in the host's account.
    let err = host.describe_key().key_id(KEY).send().await.unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    // By ARN it is our key, and our default policy names only our account.
    let err = host
        .generate_data_key()
        .key_id(&arn)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    // The host makes its own key with an open policy and gives it the alias we use.
    let open = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "kms:*", "Resource": "*"}]});
    let created = host
        .create_key()
        .policy(open.to_string())
        .send()
        .await
        .unwrap();
    let theirs = created.key_metadata().unwrap();
    assert_eq!(theirs.aws_account_id(), Some(HOST));
    host.create_alias()
        .alias_name("alias/vettid")
        .target_key_id(theirs.key_id())
        .send()
        .await
        .unwrap();
    owner
        .create_alias()
        .alias_name("alias/vettid")
        .target_key_id(KEY)
        .send()
        .await
        .unwrap();
    // The same alias name resolves per account.
    let for_host = host
        .describe_key()
        .key_id("alias/vettid")
        .send()
        .await
        .unwrap();
    assert_eq!(for_host.key_metadata().unwrap().arn(), theirs.arn());
    let for_owner = owner
        .describe_key()
        .key_id("alias/vettid")
        .send()
        .await
        .unwrap();
    assert_eq!(for_owner.key_metadata().unwrap().arn(), Some(arn.as_str()));
    // Its open policy lets anyone decrypt under it.
    let sealed = host
        .encrypt()
        .key_id("alias/vettid")
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let opened = owner
        .decrypt()
        .ciphertext_blob(sealed.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref(), b"x");
}

#[tokio::test]
async fn put_key_policy_changes_what_is_served_and_enforced() {
    let server = server(&["--require-recipient"]);
    let owner = client_as(server.port, "owner");
    let err = owner
        .generate_data_key()
        .key_id(KEY)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    let open = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{OWN}:root")}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    owner
        .put_key_policy()
        .key_id(KEY)
        .policy_name("default")
        .policy(&open)
        .send()
        .await
        .unwrap();
    let served = owner
        .get_key_policy()
        .key_id(KEY)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(served.policy(), Some(open.as_str()));
    owner
        .generate_data_key()
        .key_id(KEY)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    // A policy without PutKeyPolicy locks it; a malformed document is refused.
    let locked = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": OWN}, "Action": "kms:GetKeyPolicy", "Resource": "*"}]})
    .to_string();
    let err = owner
        .put_key_policy()
        .key_id(KEY)
        .policy("{")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "MalformedPolicyDocumentException");
    owner
        .put_key_policy()
        .key_id(KEY)
        .policy(&locked)
        .send()
        .await
        .unwrap();
    let err = owner
        .put_key_policy()
        .key_id(KEY)
        .policy(&open)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    let err = owner.describe_key().key_id(KEY).send().await.unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
}

#[tokio::test]
async fn misreport_key_id_answers_with_another_key() {
    let other = format!("arn:aws:kms:us-east-1:{HOST}:key/{KEY}");
    let server = server(&["--misreport-key-id", &other]);
    let owner = client_as(server.port, "owner");
    let out = owner
        .generate_data_key()
        .key_id(KEY)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_id(), Some(other.as_str()));
}
