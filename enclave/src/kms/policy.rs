//! The key-policy self-check: does this policy let anything but an attested enclave with a
//! trusted PCR0 obtain vault material? Pure: a policy document and [`Rules`] in, a verdict out.
//!
//! The rules (docs/VAULT.md, "The KMS key and its policy", is the reference text):
//!
//! 1. **Shape.** At most [`MAX_POLICY_LEN`] bytes of strict JSON (a duplicated member name is
//!    refused: AWS and this parser could read it differently). Top level: `Version`
//!    (`2012-10-17`), `Id`, `Statement` (object or array), nothing else. Statement members:
//!    `Sid`, `Effect` (`Allow` | `Deny`), `Principal`, `NotPrincipal`, `Action`, `NotAction`,
//!    `Resource`, `NotResource`, `Condition`, nothing else.
//! 2. **`Deny` statements** are not evaluated further: they only take access away, so ignoring
//!    them over-approximates what the policy allows.
//! 3. **Every `Allow` statement**: no `NotAction`, `NotPrincipal` or `NotResource` (each allows
//!    "everything but", which no list can bound); `Resource` `*` or this key's ARN; `Principal`
//!    only `{"AWS": …}` naming the key's own account (its root, a role, a user, an assumed role,
//!    or the 12-digit id) in the key's partition. `*`, other accounts, services, federated and
//!    canonical-user principals are refused: a genuine release image is public, so anyone can
//!    run it in their own account and present a valid attestation.
//! 4. **An attested statement** is one whose `Condition` has `StringEquals` or
//!    `StringEqualsIgnoreCase` on `kms:RecipientAttestation:PCR0` or `…:ImageSha384` (key names
//!    case-insensitive, as AWS compares them) whose every value is a trusted PCR0 (96 hex
//!    digits). Never an `…IfExists`, `ForAnyValue:`/`ForAllValues:`, `Null`, `Like` or negated
//!    form: each is satisfied by a request without attestation or by other measurements. Other
//!    condition entries are ANDed by AWS, so they can only narrow the statement.
//! 5. **Actions** (names case-insensitive, as AWS compares them). An attested statement may
//!    allow anything, wildcards included: KMS evaluates the attestation keys only for requests
//!    that carry a `Recipient`, so the statement never matches `ReEncrypt*`, `CreateGrant`,
//!    `Encrypt` or any other operation without one, and a `Recipient` reply is readable only by
//!    the attested enclave. A statement that is not attested may allow only names from
//!    [`UNATTESTED_OK`] — metadata reads, lifecycle (enable, disable, deletion: availability,
//!    never confidentiality), tags, rotation, revoking grants, and `kms:PutKeyPolicy` (the
//!    administrator's way to add a release's PCR0; see below) — and no wildcard. Everything else
//!    (`kms:Decrypt`, `kms:GenerateDataKey*`, `kms:ReEncrypt*`, `kms:CreateGrant`,
//!    `kms:ReplicateKey`, `kms:Encrypt`, `kms:ImportKeyMaterial`, `kms:*`, `*`, unknown names)
//!    makes the key unsafe.
//!
//! 6. **Sealing the trusted store's credentials.** One unattested action more is accepted:
//!    `kms:Encrypt` in a statement whose `Condition` has `StringEquals` on
//!    `kms:EncryptionContext:vettid:purpose` with exactly the one value
//!    `trusted-store-credentials` (the operator seals the table's access key with it; see
//!    docs/OPERATIONS.md). A blob so made can only ever be opened as credentials (the enclave
//!    decrypts them under that context), never as vault material or the fleet key (other
//!    purposes), and credentials the host might seal for the measured table give it nothing
//!    unless their principal may already write that table.
//!
//! `kms:PutKeyPolicy` is the one door left open on purpose: without it no release could ever be
//! added to the policy. Whoever holds it can rewrite the policy and then decrypt every blob. The
//! enclave cannot see IAM policies, so it cannot tell whether the host's role is among those
//! holders; it re-reads the policy (see `key_check`) so a rewrite stops new seals within the
//! refresh interval, and the operator must keep `kms:PutKeyPolicy` away from the host's role.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// KMS's own limit on a key policy (32 KiB).
pub const MAX_POLICY_LEN: usize = 32 * 1024;

/// Actions a statement without an attestation condition may allow (lower case). None of them
/// returns plaintext, re-encrypts, forges a blob, or authorises anyone outside the policy.
pub const UNATTESTED_OK: &[&str] = &[
    "kms:describekey",
    "kms:getkeypolicy",
    "kms:listkeypolicies",
    "kms:listgrants",
    "kms:listretirablegrants",
    "kms:listresourcetags",
    "kms:getkeyrotationstatus",
    "kms:listkeyrotations",
    "kms:enablekey",
    "kms:disablekey",
    "kms:schedulekeydeletion",
    "kms:cancelkeydeletion",
    "kms:tagresource",
    "kms:untagresource",
    "kms:updatekeydescription",
    "kms:enablekeyrotation",
    "kms:disablekeyrotation",
    "kms:rotatekeyondemand",
    "kms:revokegrant",
    "kms:retiregrant",
    "kms:createalias",
    "kms:updatealias",
    "kms:deletealias",
    "kms:putkeypolicy",
];

/// The condition keys that carry the enclave's measurement (lower case; PCR0 and ImageSha384
/// are the same value on Nitro).
pub const ATTESTATION_KEYS: [&str; 2] = [
    "kms:recipientattestation:pcr0",
    "kms:recipientattestation:imagesha384",
];

/// What the policy is checked against.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The key's ARN (a `Resource` may name it).
    pub key_arn: String,
    /// The key's partition (`aws`, …).
    pub partition: String,
    /// The key's account: the only account a principal may be in.
    pub account: String,
    /// PCR0 values (lower-case hex) that may decrypt: this enclave's own and `--kms-policy-pcr0`.
    pub trusted_pcr0: BTreeSet<String>,
}

/// Why a policy is unsafe: a stable reason for logs and health, the statement, and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Stable reason (`unattested_action`, `foreign_principal`, …).
    pub reason: &'static str,
    /// `Sid`, or `#N` (0-based) for a statement without one; empty for the document.
    pub statement: String,
    /// What exactly (an action, a principal, a value).
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.statement.is_empty() {
            write!(f, "{}: {}", self.reason, self.detail)
        } else {
            write!(
                f,
                "{} in statement {}: {}",
                self.reason, self.statement, self.detail
            )
        }
    }
}

/// Checks `document` (the `Policy` string GetKeyPolicy returns) against `rules`.
///
/// # Errors
/// The first [`Violation`] found.
pub fn check(document: &str, rules: &Rules) -> Result<(), Violation> {
    let doc = |reason, detail: String| Violation {
        reason,
        statement: String::new(),
        detail,
    };
    if document.len() > MAX_POLICY_LEN {
        return Err(doc("too_large", format!("{} bytes", document.len())));
    }
    let value = parse_strict(document).map_err(|e| doc("malformed", e))?;
    let top = value
        .as_object()
        .ok_or_else(|| doc("malformed", "not a JSON object".into()))?;
    for name in top.keys() {
        if !matches!(name.as_str(), "Version" | "Id" | "Statement") {
            return Err(doc("unknown_member", name.clone()));
        }
    }
    if top.get("Version").and_then(Value::as_str) != Some("2012-10-17") {
        return Err(doc("version", "Version must be 2012-10-17".into()));
    }
    let statements = match top.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => {
            return Err(doc(
                "malformed",
                "Statement must be an object or array".into(),
            ))
        }
    };
    for (index, statement) in statements.into_iter().enumerate() {
        check_statement(index, statement, rules)?;
    }
    Ok(())
}

fn check_statement(index: usize, statement: &Value, rules: &Rules) -> Result<(), Violation> {
    let Some(s) = statement.as_object() else {
        return Err(Violation {
            reason: "malformed",
            statement: format!("#{index}"),
            detail: "a statement must be an object".into(),
        });
    };
    let name = match s.get("Sid") {
        Some(Value::String(sid)) if !sid.is_empty() => sid.clone(),
        _ => format!("#{index}"),
    };
    let fail = |reason, detail: String| Violation {
        reason,
        statement: name.clone(),
        detail,
    };
    for member in s.keys() {
        if !matches!(
            member.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(fail("unknown_member", member.clone()));
        }
    }
    match s.get("Effect").and_then(Value::as_str) {
        Some("Deny") => return Ok(()),
        Some("Allow") => {}
        _ => return Err(fail("malformed", "Effect must be Allow or Deny".into())),
    }
    for negated in ["NotAction", "NotPrincipal", "NotResource"] {
        if s.contains_key(negated) {
            return Err(fail(
                "negated_element",
                format!("{negated} in an Allow statement allows everything it does not name"),
            ));
        }
    }
    let resources = strings(s.get("Resource")).map_err(|e| fail("malformed", e))?;
    if let Some(r) = resources
        .iter()
        .find(|r| **r != "*" && **r != rules.key_arn)
    {
        return Err(fail(
            "resource",
            format!("Resource {r:?} is not * or this key"),
        ));
    }
    check_principal(s.get("Principal"), rules).map_err(|e| fail("foreign_principal", e))?;
    let attested = attested(s.get("Condition"), rules).map_err(|e| fail(e.0, e.1))?;
    let actions = strings(s.get("Action")).map_err(|e| fail("malformed", e))?;
    if actions.is_empty() {
        return Err(fail("malformed", "Action is missing".into()));
    }
    if attested {
        return Ok(());
    }
    let credentials_only = seals_credentials_only(s.get("Condition"));
    for action in actions {
        let lower = action.to_ascii_lowercase();
        if lower == "kms:encrypt" && credentials_only {
            continue;
        }
        if lower.contains(['*', '?']) {
            return Err(fail(
                "wildcard_action",
                format!("{action} without an attestation condition"),
            ));
        }
        if !UNATTESTED_OK.contains(&lower.as_str()) {
            return Err(fail(
                "unattested_action",
                format!("{action} without a trusted kms:RecipientAttestation:PCR0 condition"),
            ));
        }
    }
    Ok(())
}

/// `Principal` must be `{"AWS": ARN | [ARN…]}` in the key's own account.
fn check_principal(principal: Option<&Value>, rules: &Rules) -> Result<(), String> {
    let map = match principal {
        Some(Value::Object(map)) => map,
        Some(Value::String(s)) => return Err(format!("Principal {s:?} (anyone)")),
        _ => return Err("Principal is missing or malformed".into()),
    };
    if let Some(other) = map.keys().find(|k| *k != "AWS") {
        return Err(format!("{other} principals are not accepted"));
    }
    let names = strings(map.get("AWS"))?;
    if names.is_empty() {
        return Err("Principal AWS is empty".into());
    }
    for name in names {
        if !in_account(name, rules) {
            return Err(format!("{name:?} is not in account {}", rules.account));
        }
    }
    Ok(())
}

/// `ACCOUNT`, or `arn:PARTITION:iam::ACCOUNT:root|role/…|user/…`, or
/// `arn:PARTITION:sts::ACCOUNT:assumed-role/…`.
fn in_account(name: &str, rules: &Rules) -> bool {
    if name == rules.account {
        return true;
    }
    let iam = format!("arn:{}:iam::{}:", rules.partition, rules.account);
    let sts = format!("arn:{}:sts::{}:", rules.partition, rules.account);
    let ok_path = |rest: &str| {
        !rest.is_empty() && !rest.contains(['*', '?']) && rest.bytes().all(|b| b.is_ascii_graphic())
    };
    if let Some(rest) = name.strip_prefix(&iam) {
        return rest == "root"
            || rest.strip_prefix("role/").is_some_and(ok_path)
            || rest.strip_prefix("user/").is_some_and(ok_path);
    }
    name.strip_prefix(&sts)
        .and_then(|rest| rest.strip_prefix("assumed-role/"))
        .is_some_and(ok_path)
}

/// Whether `Condition` holds a valid attestation entry (rule 4); an error for a malformed block
/// or an attestation entry with an untrusted value.
fn attested(condition: Option<&Value>, rules: &Rules) -> Result<bool, (&'static str, String)> {
    let Some(condition) = condition else {
        return Ok(false);
    };
    let blocks = condition
        .as_object()
        .ok_or(("malformed", "Condition must be an object".to_string()))?;
    let mut attested = false;
    for (operator, entries) in blocks {
        let entries = entries.as_object().ok_or((
            "malformed",
            format!("Condition {operator} must be an object"),
        ))?;
        let exact = matches!(operator.as_str(), "StringEquals" | "StringEqualsIgnoreCase");
        for (key, values) in entries {
            if !ATTESTATION_KEYS.contains(&key.to_ascii_lowercase().as_str()) || !exact {
                continue;
            }
            let values = strings(Some(values)).map_err(|e| ("malformed", e))?;
            if values.is_empty() {
                return Err(("bad_condition", format!("{key} has no value")));
            }
            for v in values {
                let lower = v.to_ascii_lowercase();
                let hex = lower.len() == 96 && lower.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex || !rules.trusted_pcr0.contains(&lower) {
                    return Err((
                        "untrusted_pcr0",
                        format!("{key} allows {v:?}, which is not a trusted PCR0"),
                    ));
                }
            }
            attested = true;
        }
    }
    Ok(attested)
}

/// The encryption-context purpose rule 6 accepts unattested `kms:Encrypt` for.
pub const CREDENTIALS_PURPOSE: &str = "trusted-store-credentials";

/// Whether `Condition` binds the purpose to [`CREDENTIALS_PURPOSE`] and nothing else (rule 6):
/// `StringEquals` (case-sensitive, as context values are compared) on
/// `kms:EncryptionContext:vettid:purpose` with that single value.
fn seals_credentials_only(condition: Option<&Value>) -> bool {
    let Some(Value::Object(blocks)) = condition else {
        return false;
    };
    let Some(Value::Object(entries)) = blocks.get("StringEquals") else {
        return false;
    };
    entries.iter().any(|(key, values)| {
        key.eq_ignore_ascii_case("kms:EncryptionContext:vettid:purpose")
            && strings(Some(values)).is_ok_and(|v| v == [CREDENTIALS_PURPOSE])
    })
}

/// A string or an array of strings (absent: empty).
fn strings(value: Option<&Value>) -> Result<Vec<&str>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| "expected strings".to_string()))
            .collect(),
        Some(_) => Err("expected a string or an array of strings".into()),
    }
}

// === strict JSON ===

/// Parses JSON like `serde_json`, but refuses an object with a member name twice.
pub fn parse_strict(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = <Strict as serde::Deserialize>::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate member {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
