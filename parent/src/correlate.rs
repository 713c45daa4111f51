//! Where an app's answer goes besides the reply inbox: the v1 app subjects.
//!
//! A request on `OwnerSpace.{guid}.forVault.{op}` is answered, as by VettID's v1 parent, on
//!
//! - the reply inbox, when the request has one (Lambdas and request/reply clients);
//! - `OwnerSpace.{guid}.forApp.{op}.response` (the enclave names it in its reply; old apps);
//! - `OwnerSpace.{guid}.forApp.{op}.{event_id}.response`, where `event_id` is the request's
//!   top-level `id`: the *correlated* subject. Apps that publish without an inbox (VettID's
//!   enrollment driver, Android through the `ENROLLMENT` stream) wait there, so two concurrent
//!   requests of one op cannot take each other's answer.
//!
//! The correlated subject is the one place the parent reads anything of an app payload: the
//! top-level `id` string, to name a subject. It decides nothing with it; the answer is the
//! enclave's, byte for byte. An `id` that is not a single NATS token (empty, longer than
//! [`MAX_EVENT_ID_LEN`], or holding `.`, `*`, `>`, whitespace or control characters) gets no
//! correlated subject: v1 pasted any `id` into the subject, so `a.b` answered on a subject with
//! an extra token and `*` made the publish fail. A number is no id either (v1 parsed `id` as a
//! string; a number failed that parse).

use serde::Deserialize;

/// Longest `id` that names a correlated subject; the same bound as the enclave's `event_id`.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// The v1 app subjects of one `forVault` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSubjects {
    /// `OwnerSpace.{guid}.forApp.{op}.response`.
    pub legacy: String,
    /// `OwnerSpace.{guid}.forApp.{op}.{event_id}.response`, when the request has a usable `id`.
    pub correlated: Option<String>,
    /// The request's `id`, when usable (the parent's own error replies echo it as `event_id`).
    pub event_id: Option<String>,
    /// The op (everything after `forVault.`), echoed as `request_type` by parent errors.
    pub op: String,
}

impl AppSubjects {
    /// The app subjects of a request on `subject` with `payload`; `None` unless `subject` is
    /// `OwnerSpace.{guid}.forVault.{op}`.
    pub fn of(subject: &str, payload: &[u8]) -> Option<Self> {
        let mut parts = subject.splitn(4, '.');
        let (Some("OwnerSpace"), Some(guid), Some("forVault"), Some(op)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if guid.is_empty() || op.is_empty() {
            return None;
        }
        let event_id = request_id(payload);
        Some(Self {
            legacy: format!("OwnerSpace.{guid}.forApp.{op}.response"),
            correlated: event_id
                .as_ref()
                .map(|id| format!("OwnerSpace.{guid}.forApp.{op}.{id}.response")),
            event_id,
            op: op.to_owned(),
        })
    }
}

/// Only the `id` of a request object; every other field is skipped unparsed. A duplicated `id`
/// fails the parse (and so names no subject) instead of picking one of the two.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// The request's top-level `id`, if it is a string that can be one subject token.
fn request_id(payload: &[u8]) -> Option<String> {
    // Only an object has fields (serde would also read a struct from an array).
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let IdOnly { id } = serde_json::from_slice(payload).ok()?;
    match id? {
        serde_json::Value::String(s) if valid_id(&s) => Some(s),
        _ => None,
    }
}

/// One NATS subject token of printable ASCII: no separator, wildcard, space or control.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forvault_requests_get_the_legacy_and_the_correlated_subject() {
        let s = AppSubjects::of(
            "OwnerSpace.u-1.forVault.pin",
            br#"{"id":"7f0c2b1e-aa","type":"pin.setup","payload":{}}"#,
        )
        .unwrap();
        assert_eq!(s.legacy, "OwnerSpace.u-1.forApp.pin.response");
        assert_eq!(
            s.correlated.as_deref(),
            Some("OwnerSpace.u-1.forApp.pin.7f0c2b1e-aa.response")
        );
        assert_eq!(s.event_id.as_deref(), Some("7f0c2b1e-aa"));
        let s =
            AppSubjects::of("OwnerSpace.u.forVault.credential.create", br#"{"id":"E1"}"#).unwrap();
        assert_eq!(
            s.correlated.as_deref(),
            Some("OwnerSpace.u.forApp.credential.create.E1.response")
        );
        assert_eq!(s.op, "credential.create");
    }

    #[test]
    fn ids_that_are_not_one_token_name_no_correlated_subject() {
        for payload in [
            &br#"{"type":"pin.setup"}"#[..],
            br#"{"id":""}"#,
            br#"{"id":"a.b"}"#,
            br#"{"id":"*"}"#,
            br#"{"id":"x>"}"#,
            br#"{"id":"a b"}"#,
            br#"{"id":"tab\there"}"#,
            br#"{"id":"caf\u00e9"}"#,
            br#"{"id":42}"#,
            br#"{"id":null}"#,
            br#"{"id":"a","id":"b"}"#,
            b"not json",
            br#"["id"]"#,
        ] {
            let s = AppSubjects::of("OwnerSpace.u.forVault.pin", payload).unwrap();
            assert_eq!(s.correlated, None, "{}", String::from_utf8_lossy(payload));
            assert_eq!(s.legacy, "OwnerSpace.u.forApp.pin.response");
        }
        let long = format!(r#"{{"id":"{}"}}"#, "a".repeat(MAX_EVENT_ID_LEN + 1));
        assert_eq!(
            AppSubjects::of("OwnerSpace.u.forVault.pin", long.as_bytes())
                .unwrap()
                .correlated,
            None
        );
        let longest = format!(r#"{{"id":"{}"}}"#, "a".repeat(MAX_EVENT_ID_LEN));
        assert!(
            AppSubjects::of("OwnerSpace.u.forVault.pin", longest.as_bytes())
                .unwrap()
                .correlated
                .is_some()
        );
    }

    #[test]
    fn other_subjects_have_no_app_subjects() {
        for subject in [
            "enclave.attestation.request",
            "MessageSpace.u.forOwner.agent",
            "Control.user.u.vault.reset",
            "OwnerSpace.u.forApp.pin.response",
            "OwnerSpace.u.forVault",
            "OwnerSpace..forVault.pin",
        ] {
            assert_eq!(
                AppSubjects::of(subject, br#"{"id":"e"}"#),
                None,
                "{subject}"
            );
        }
    }
}
