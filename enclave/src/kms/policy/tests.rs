//! The policy checker over many documents: the good policy, one-change variants that must fail,
//! and property tests mixing harmless and dangerous statements.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const ACCOUNT: &str = "111122223333";
const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn pcr(byte: char) -> String {
    byte.to_string().repeat(96)
}

fn rules() -> Rules {
    Rules {
        key_arn: ARN.into(),
        partition: "aws".into(),
        account: ACCOUNT.into(),
        trusted_pcr0: [pcr('a'), pcr('b')].into_iter().collect(),
    }
}

fn enclave_statement() -> Value {
    json!({
        "Sid": "EnclaveOnly",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/vettid-enclave-host")},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": [pcr('a'), pcr('b')]}}
    })
}

fn admin_statement() -> Value {
    json!({
        "Sid": "Admin",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:EnableKey",
                   "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
                   "kms:TagResource", "kms:ListGrants", "kms:RevokeGrant"],
        "Resource": "*"
    })
}

fn good() -> Value {
    json!({"Version": "2012-10-17", "Id": "vettid", "Statement": [enclave_statement(), admin_statement()]})
}

fn verdict(policy: &Value) -> Result<(), Violation> {
    check(&policy.to_string(), &rules())
}

fn reason(policy: &Value) -> &'static str {
    verdict(policy).expect_err("policy must fail").reason
}

/// The good policy with `change` applied to its enclave statement.
fn enclave_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut policy = good();
    change(&mut policy["Statement"][0]);
    policy
}

/// The good policy with `extra` added.
fn with_statement(extra: Value) -> Value {
    let mut policy = good();
    policy["Statement"].as_array_mut().unwrap().push(extra);
    policy
}

#[test]
fn the_good_policy_passes_also_as_a_single_statement_object() {
    verdict(&good()).unwrap();
    verdict(&json!({"Version": "2012-10-17", "Statement": enclave_statement()})).unwrap();
    // Key names and action names are case-insensitive in AWS, so they are here.
    verdict(&enclave_with(|s| {
        s["Condition"] =
            json!({"StringEquals": {"kms:recipientattestation:imagesha384": pcr('A')}});
        s["Action"] = json!("KMS:decrypt");
    }))
    .unwrap();
    // An attested statement may use wildcards: KMS only satisfies it with a Recipient.
    verdict(&enclave_with(|s| s["Action"] = json!("kms:*"))).unwrap();
    // Extra condition entries only narrow.
    verdict(&enclave_with(|s| {
        s["Condition"]["StringEquals"] = json!({"kms:CallerAccount": ACCOUNT});
    }))
    .unwrap();
    // The key's own ARN as Resource, and the account id as principal.
    verdict(&enclave_with(|s| {
        s["Resource"] = json!(ARN);
        s["Principal"] =
            json!({"AWS": [ACCOUNT, format!("arn:aws:sts::{ACCOUNT}:assumed-role/host/i-1")]});
    }))
    .unwrap();
}

#[test]
fn the_default_root_policy_and_open_decrypt_fail() {
    // AWS's default key policy: the account root may do anything.
    let default = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "kms:*", "Resource": "*"}]});
    assert_eq!(reason(&default), "wildcard_action");
    assert_eq!(
        reason(&with_statement(json!({"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:Decrypt", "Resource": "*"}))),
        "unattested_action"
    );
    // `*` is fine only where the attestation condition gates it.
    let open = enclave_with(|s| {
        s["Action"] = json!("*");
        s.as_object_mut().unwrap().remove("Condition");
    });
    assert_eq!(reason(&open), "wildcard_action");
}

#[test]
fn every_one_change_variant_of_the_good_policy_fails() {
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no condition",
            enclave_with(|s| {
                s.as_object_mut().unwrap().remove("Condition");
            }),
            "unattested_action",
        ),
        (
            "IfExists",
            enclave_with(
                |s| s["Condition"] = json!({"StringEqualsIgnoreCaseIfExists": {"kms:RecipientAttestation:PCR0": pcr('a')}}),
            ),
            "unattested_action",
        ),
        (
            "ForAnyValue",
            enclave_with(|s| {
                s["Condition"] =
                    json!({"ForAnyValue:StringEquals": {"kms:RecipientAttestation:PCR0": pcr('a')}})
            }),
            "unattested_action",
        ),
        (
            "StringLike *",
            enclave_with(|s| {
                s["Condition"] =
                    json!({"StringLike": {"kms:RecipientAttestation:ImageSha384": "*"}})
            }),
            "unattested_action",
        ),
        (
            "Null",
            enclave_with(|s| {
                s["Condition"] = json!({"Null": {"kms:RecipientAttestation:PCR0": "false"}})
            }),
            "unattested_action",
        ),
        (
            "negated",
            enclave_with(|s| {
                s["Condition"] =
                    json!({"StringNotEquals": {"kms:RecipientAttestation:PCR0": pcr('c')}})
            }),
            "unattested_action",
        ),
        (
            "PCR1 only",
            enclave_with(|s| {
                s["Condition"] =
                    json!({"StringEquals": {"kms:RecipientAttestation:PCR1": pcr('a')}})
            }),
            "unattested_action",
        ),
        (
            "untrusted PCR0",
            enclave_with(|s| {
                s["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
                    json!([pcr('a'), pcr('c')])
            }),
            "untrusted_pcr0",
        ),
        (
            "all-zero PCR0",
            enclave_with(|s| {
                s["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
                    json!(pcr('0'))
            }),
            "untrusted_pcr0",
        ),
        (
            "short PCR0",
            enclave_with(|s| {
                s["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
                    json!("aa")
            }),
            "untrusted_pcr0",
        ),
        (
            "empty PCR0 list",
            enclave_with(|s| {
                s["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
                    json!([])
            }),
            "bad_condition",
        ),
        (
            "principal *",
            enclave_with(|s| s["Principal"] = json!("*")),
            "foreign_principal",
        ),
        (
            "AWS *",
            enclave_with(|s| s["Principal"] = json!({"AWS": "*"})),
            "foreign_principal",
        ),
        (
            "other account",
            enclave_with(|s| s["Principal"] = json!({"AWS": "arn:aws:iam::444455556666:role/x"})),
            "foreign_principal",
        ),
        (
            "other partition",
            enclave_with(|s| {
                s["Principal"] = json!({"AWS": format!("arn:aws-cn:iam::{ACCOUNT}:root")})
            }),
            "foreign_principal",
        ),
        (
            "role wildcard",
            enclave_with(|s| {
                s["Principal"] = json!({"AWS": format!("arn:aws:iam::{ACCOUNT}:role/*")})
            }),
            "foreign_principal",
        ),
        (
            "service",
            enclave_with(|s| s["Principal"] = json!({"Service": "ec2.amazonaws.com"})),
            "foreign_principal",
        ),
        (
            "no principal",
            enclave_with(|s| {
                s.as_object_mut().unwrap().remove("Principal");
            }),
            "foreign_principal",
        ),
        (
            "NotPrincipal",
            enclave_with(|s| s["NotPrincipal"] = json!({"AWS": root})),
            "negated_element",
        ),
        (
            "NotAction",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "NotAction": "kms:PutKeyPolicy", "Resource": "*"}),
            ),
            "negated_element",
        ),
        (
            "NotResource",
            enclave_with(|s| s["NotResource"] = json!("arn:aws:kms:us-east-1:111122223333:key/x")),
            "negated_element",
        ),
        (
            "other resource",
            enclave_with(|s| s["Resource"] = json!("arn:aws:kms:us-east-1:111122223333:key/other")),
            "resource",
        ),
        (
            "CreateGrant",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:CreateGrant", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "ReEncrypt*",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:ReEncrypt*", "Resource": "*"}),
            ),
            "wildcard_action",
        ),
        (
            "ReEncryptFrom",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:ReEncryptFrom", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "ReplicateKey",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:ReplicateKey", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "Encrypt",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:Encrypt", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:GenerateDataKeyWithoutPlaintext", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "kms:Get*",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:Get*", "Resource": "*"}),
            ),
            "wildcard_action",
        ),
        (
            "unknown action",
            with_statement(
                json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:FutureDecryptAll", "Resource": "*"}),
            ),
            "unattested_action",
        ),
        (
            "no action",
            enclave_with(|s| {
                s.as_object_mut().unwrap().remove("Action");
            }),
            "malformed",
        ),
        (
            "unknown member",
            enclave_with(|s| s["Condition2"] = json!({})),
            "unknown_member",
        ),
        (
            "bad effect",
            enclave_with(|s| s["Effect"] = json!("allow")),
            "malformed",
        ),
        (
            "top-level member",
            {
                let mut p = good();
                p["Extra"] = json!(1);
                p
            },
            "unknown_member",
        ),
        (
            "old version",
            {
                let mut p = good();
                p["Version"] = json!("2008-10-17");
                p
            },
            "version",
        ),
        (
            "no statements",
            json!({"Version": "2012-10-17"}),
            "malformed",
        ),
    ];
    for (name, policy, want) in cases {
        assert_eq!(reason(&policy), want, "{name}: {:?}", verdict(&policy));
    }
}

#[test]
fn duplicate_members_oversize_and_junk_are_malformed() {
    let duplicated = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:DescribeKey","Action":"kms:Decrypt","Resource":"*"}}"#;
    assert_eq!(check(duplicated, &rules()).unwrap_err().reason, "malformed");
    let big = format!(
        r#"{{"Version":"2012-10-17","Id":"{}","Statement":[]}}"#,
        "x".repeat(MAX_POLICY_LEN)
    );
    assert_eq!(check(&big, &rules()).unwrap_err().reason, "too_large");
    for junk in [
        "",
        "null",
        "[]",
        "{",
        "\"policy\"",
        r#"{"Version":"2012-10-17","Statement":[1]}"#,
    ] {
        assert!(check(junk, &rules()).is_err(), "{junk:?}");
    }
}

#[test]
fn deny_statements_are_ignored_and_violations_name_the_statement() {
    let deny = json!({"Effect": "Deny", "NotPrincipal": {"AWS": "*"}, "NotAction": "kms:*", "Resource": "*"});
    verdict(&with_statement(deny)).unwrap();
    let bad = with_statement(
        json!({"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "kms:Decrypt", "Resource": "*"}),
    );
    let v = verdict(&bad).unwrap_err();
    assert_eq!(v.statement, "#2");
    assert!(v.to_string().contains("kms:Decrypt"), "{v}");
}

// === properties ===

/// Statements that never let anything but a trusted enclave obtain plaintext.
fn harmless() -> impl Strategy<Value = Value> {
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let safe_actions = proptest::sample::subsequence(UNATTESTED_OK.to_vec(), 1..6);
    let any_actions = proptest::sample::subsequence(
        vec![
            "kms:*",
            "*",
            "kms:Decrypt",
            "kms:ReEncrypt*",
            "kms:CreateGrant",
            "kms:GenerateDataKey",
        ],
        1..4,
    );
    prop_oneof![
        safe_actions.prop_map(move |a| json!({"Effect": "Allow", "Principal": {"AWS": root.clone()}, "Action": a, "Resource": "*"})),
        any_actions.clone().prop_map(|a| json!({"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": a, "Resource": "*",
            "Condition": {"StringEquals": {"kms:RecipientAttestation:ImageSha384": pcr('b')}}})),
        any_actions.prop_map(|a| json!({"Effect": "Deny", "Principal": "*", "Action": a, "Resource": "*"})),
    ]
}

/// Statements that each make a policy unsafe.
fn dangerous() -> impl Strategy<Value = Value> {
    let bypass = proptest::sample::select(vec![
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:CreateGrant",
        "kms:ReplicateKey",
        "kms:GenerateDataKey",
        "kms:Encrypt",
        "kms:*",
        "*",
        "kms:Re*",
        "kms:ImportKeyMaterial",
    ]);
    let principal = proptest::sample::select(vec![
        json!({"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}),
        json!({"AWS": "*"}),
        json!("*"),
        json!({"AWS": "arn:aws:iam::444455556666:root"}),
    ]);
    let condition = proptest::sample::select(vec![
        json!(null),
        json!({"StringEqualsIfExists": {"kms:RecipientAttestation:PCR0": pcr('a')}}),
        json!({"StringEquals": {"kms:RecipientAttestation:PCR0": pcr('c')}}),
        json!({"StringLike": {"kms:RecipientAttestation:PCR0": "*"}}),
        json!({"StringEquals": {"kms:CallerAccount": ACCOUNT}}),
    ]);
    (bypass, principal, condition).prop_map(|(action, principal, condition)| {
        let mut s =
            json!({"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*"});
        if !condition.is_null() {
            s["Condition"] = condition;
        }
        s
    })
}

proptest! {
    #[test]
    fn harmless_statements_keep_a_policy_safe(extra in proptest::collection::vec(harmless(), 0..6)) {
        let mut policy = good();
        policy["Statement"].as_array_mut().unwrap().extend(extra);
        prop_assert!(verdict(&policy).is_ok(), "{:?}", verdict(&policy));
    }

    #[test]
    fn one_dangerous_statement_anywhere_makes_it_unsafe(
        extra in proptest::collection::vec(harmless(), 0..4),
        bad in dangerous(),
        at in 0usize..6,
    ) {
        let mut statements = vec![enclave_statement(), admin_statement()];
        statements.extend(extra);
        let at = at.min(statements.len());
        statements.insert(at, bad);
        let policy = json!({"Version": "2012-10-17", "Statement": statements});
        prop_assert!(verdict(&policy).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = check(&text, &rules());
    }
}

fn seal_credentials(condition: Value) -> Value {
    json!({
        "Sid": "SealTrustedStoreCredentials",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/vettid-operator")},
        "Action": "kms:Encrypt",
        "Resource": "*",
        "Condition": condition
    })
}

#[test]
fn encrypt_is_accepted_only_to_seal_the_trusted_store_credentials() {
    let purpose = |v: Value| json!({"StringEquals": {"kms:EncryptionContext:vettid:purpose": v}});
    assert_eq!(
        verdict(&with_statement(seal_credentials(purpose(json!(
            "trusted-store-credentials"
        ))))),
        Ok(())
    );
    assert_eq!(
        verdict(&with_statement(seal_credentials(purpose(json!([
            "trusted-store-credentials"
        ]))))),
        Ok(())
    );
    for bad in [
        json!({}),
        purpose(json!("vault-material-v2")),
        purpose(json!(["trusted-store-credentials", "vault-material-v2"])),
        json!({"StringLike": {"kms:EncryptionContext:vettid:purpose": "trusted-store-*"}}),
        json!({"StringEqualsIfExists": {"kms:EncryptionContext:vettid:purpose": "trusted-store-credentials"}}),
        json!({"StringEquals": {"kms:EncryptionContext:vettid:vault": "trusted-store-credentials"}}),
    ] {
        assert_eq!(
            reason(&with_statement(seal_credentials(bad.clone()))),
            "unattested_action",
            "{bad}"
        );
    }
    // Only Encrypt: the same condition does not admit Decrypt or GenerateDataKey.
    for action in ["kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"] {
        let mut s = seal_credentials(purpose(json!("trusted-store-credentials")));
        s["Action"] = json!(["kms:Encrypt", action]);
        assert_eq!(reason(&with_statement(s)), "unattested_action", "{action}");
    }
}
