//! Key policies: every key has one, served by GetKeyPolicy exactly as stored, and every operation on
//! a key is allowed or refused by evaluating it — so what the enclave reads is what is enforced.
//!
//! A key created without a policy gets [`default_policy`], which spells out the behaviour this server had
//! before policies existed: the account root administers the key; an attested request whose PCR0 is in the
//! allow-list may Decrypt and GenerateDataKey; and, unless `require_recipient` holds, any request of the
//! account *without* a `Recipient` may Encrypt, Decrypt and GenerateDataKey (a `Null` condition).
//!
//! Evaluation follows IAM's rules for a key policy alone: an explicit `Deny` wins, else any matching
//! `Allow`, else refused. The caller is taken to be a principal of the account its access key id maps to
//! (`--credential-account`) with every IAM permission — the worst case of a host lending its own
//! credentials — so an `{"AWS": "arn:aws:iam::ACCOUNT:root"}` principal matches any caller of ACCOUNT, and a
//! named role or user matches it too (the server cannot tell roles apart). Condition keys known here:
//! `kms:RecipientAttestation:PCR0` and `:ImageSha384` (the verified document's PCR0), `kms:CallerAccount`.
//! Operators: the `String*` family with `IfExists` and `ForAnyValue:`/`ForAllValues:` forms, and `Null`; an
//! operator it does not know makes its statement not match (a test policy never silently widens).

use serde_json::{json, Value};

/// KMS's limit on a policy document.
pub const MAX_POLICY_LEN: usize = 32 * 1024;

/// What a request brings to policy evaluation.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `kms:Decrypt`, …
    pub action: &'a str,
    /// The caller's account.
    pub caller_account: &'a str,
    /// The verified attestation document's PCR0 (lower-case hex), when a `Recipient` was given.
    pub pcr0: Option<&'a str>,
}

/// The policy of a key created without one (module docs).
pub fn default_policy(account: &str, allow_pcr0: &[String], require_recipient: bool) -> String {
    let root = format!("arn:aws:iam::{account}:root");
    let mut statements = vec![json!({
        "Sid": "KeyAdministration",
        "Effect": "Allow",
        "Principal": {"AWS": root},
        "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListGrants",
                   "kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion",
                   "kms:CancelKeyDeletion", "kms:CreateAlias"],
        "Resource": "*"
    })];
    if !allow_pcr0.is_empty() {
        statements.push(json!({
            "Sid": "AttestedEnclave",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": allow_pcr0}}
        }));
    }
    if !require_recipient {
        statements.push(json!({
            "Sid": "WithoutRecipient",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"Null": {"kms:RecipientAttestation:PCR0": "true"}}
        }));
    }
    json!({"Version": "2012-10-17", "Id": "vettid-local-kms-default", "Statement": statements})
        .to_string()
}

/// Checks a document PutKeyPolicy or CreateKey was given: JSON, at most [`MAX_POLICY_LEN`], an object with
/// `Statement`.
///
/// # Errors
/// A message for `MalformedPolicyDocumentException`.
pub fn validate(document: &str) -> Result<(), String> {
    if document.is_empty() || document.len() > MAX_POLICY_LEN {
        return Err(format!("Policy must be 1 to {MAX_POLICY_LEN} bytes"));
    }
    let value: Value =
        serde_json::from_str(document).map_err(|e| format!("Policy is not JSON: {e}"))?;
    match value.get("Statement") {
        Some(Value::Array(_) | Value::Object(_)) => Ok(()),
        _ => Err("Policy has no Statement".into()),
    }
}

/// Whether `document` (a key of `key_account`) allows `request`. An unparsable document allows nothing.
pub fn allows(document: &str, request: &Request<'_>) -> bool {
    let Ok(policy) = serde_json::from_str::<Value>(document) else {
        return false;
    };
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return false,
    };
    let mut allowed = false;
    for s in statements {
        if !applies(s, request) {
            continue;
        }
        match s.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

fn applies(s: &Value, request: &Request<'_>) -> bool {
    let action_ok = match (s.get("Action"), s.get("NotAction")) {
        (Some(a), None) => strings(a).iter().any(|p| glob(p, request.action)),
        (None, Some(n)) => !strings(n).iter().any(|p| glob(p, request.action)),
        _ => false,
    };
    let principal_ok = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), None) => principal(p, request.caller_account),
        (None, Some(n)) => !principal(n, request.caller_account),
        _ => false,
    };
    action_ok && principal_ok && conditions(s.get("Condition"), request)
}

fn principal(p: &Value, caller: &str) -> bool {
    match p {
        Value::String(s) => s == "*",
        Value::Object(map) => map.iter().any(|(kind, names)| {
            kind == "AWS"
                && strings(names)
                    .iter()
                    .any(|name| *name == "*" || account_of(name) == Some(caller))
        }),
        _ => false,
    }
}

/// `ACCOUNT`, or the account field of an `iam`/`sts` ARN.
fn account_of(name: &str) -> Option<&str> {
    if name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(name);
    }
    let parts: Vec<&str> = name.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, "iam" | "sts", "", account, _] => Some(account),
        _ => None,
    }
}

fn conditions(block: Option<&Value>, request: &Request<'_>) -> bool {
    let Some(blocks) = block else {
        return true;
    };
    let Some(blocks) = blocks.as_object() else {
        return false;
    };
    blocks.iter().all(|(operator, entries)| {
        entries.as_object().is_some_and(|entries| {
            entries
                .iter()
                .all(|(key, values)| condition(operator, &context(key, request), &strings(values)))
        })
    })
}

/// The request's value for a condition key (names compared case-insensitively, as AWS does).
fn context(key: &str, request: &Request<'_>) -> Option<String> {
    match key.to_ascii_lowercase().as_str() {
        "kms:recipientattestation:pcr0" | "kms:recipientattestation:imagesha384" => {
            request.pcr0.map(str::to_owned)
        }
        "kms:calleraccount" => Some(request.caller_account.to_owned()),
        _ => None,
    }
}

fn condition(operator: &str, actual: &Option<String>, values: &[&str]) -> bool {
    if operator == "Null" {
        let want_absent = values
            .first()
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        return actual.is_none() == want_absent;
    }
    let (set, op) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
        (Some(false), rest)
    } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
        (Some(true), rest)
    } else {
        (None, operator)
    };
    let (op, if_exists) = match op.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op, false),
    };
    let (positive, negated) = match op {
        "StringEquals" | "StringEqualsIgnoreCase" | "StringLike" => (op, false),
        "StringNotEquals" => ("StringEquals", true),
        "StringNotEqualsIgnoreCase" => ("StringEqualsIgnoreCase", true),
        "StringNotLike" => ("StringLike", true),
        _ => return false,
    };
    let Some(actual) = actual else {
        // A missing key: IfExists and ForAllValues (over an empty set) hold, negations hold, the rest fail.
        return if_exists || set == Some(true) || (negated && set.is_none());
    };
    let hit = values.iter().any(|v| match positive {
        "StringEquals" => *v == actual,
        "StringEqualsIgnoreCase" => v.eq_ignore_ascii_case(actual),
        _ => glob(v, actual),
    });
    hit != negated
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM wildcards (`*`, `?`), case-insensitively (action names are).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<u8> = pattern.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let t: Vec<u8> = text.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "111122223333";
    const B: &str = "444455556666";

    fn req<'a>(action: &'a str, caller: &'a str, pcr0: Option<&'a str>) -> Request<'a> {
        Request {
            action,
            caller_account: caller,
            pcr0,
        }
    }

    #[test]
    fn the_default_policy_is_what_the_server_did_before_policies() {
        let pcr = "ab".repeat(48);
        let open = default_policy(A, std::slice::from_ref(&pcr), false);
        assert!(allows(&open, &req("kms:Decrypt", A, Some(&pcr))));
        assert!(allows(&open, &req("kms:Decrypt", A, None)));
        assert!(!allows(
            &open,
            &req("kms:Decrypt", A, Some(&"cd".repeat(48)))
        ));
        assert!(!allows(&open, &req("kms:Decrypt", B, None)));
        assert!(allows(&open, &req("kms:DisableKey", A, None)));
        let strict = default_policy(A, std::slice::from_ref(&pcr), true);
        assert!(allows(&strict, &req("kms:GenerateDataKey", A, Some(&pcr))));
        assert!(!allows(&strict, &req("kms:GenerateDataKey", A, None)));
        assert!(!allows(&strict, &req("kms:Encrypt", A, None)));
        assert!(!allows(
            &default_policy(A, &[], true),
            &req("kms:Decrypt", A, Some(&pcr))
        ));
    }

    #[test]
    fn deny_wins_and_operators_behave_like_iam() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": B}, "Action": "kms:Decrypt", "Resource": "*"}
        ]})
        .to_string();
        assert!(allows(&policy, &req("kms:Decrypt", A, None)));
        assert!(!allows(&policy, &req("kms:Decrypt", B, None)));
        assert!(allows(&policy, &req("kms:ReEncryptFrom", B, None)));
        let if_exists = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": A}, "Action": "kms:Decrypt",
            "Condition": {"StringEqualsIfExists": {"kms:RecipientAttestation:PCR0": "x"}}}})
        .to_string();
        assert!(allows(&if_exists, &req("kms:Decrypt", A, None)));
        assert!(!allows(&if_exists, &req("kms:Decrypt", A, Some("y"))));
        let unknown = json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "true"}}}})
        .to_string();
        assert!(!allows(&unknown, &req("kms:Decrypt", A, None)));
        assert!(glob("kms:Re*", "kms:ReEncryptFrom") && glob("KMS:decrypt", "kms:Decrypt"));
        assert!(!glob("kms:Get*", "kms:Decrypt"));
    }
}
