//! The enclave and KMS sections of `vettid health`, from the enclave's `enclave.health` reply
//! and the parent's `/health`.

use serde_json::{Map, Value};

use super::report::{Section, Status};
use crate::error::CliError;

/// The enclave section: DOWN when it cannot be asked or says it is unhealthy, DEGRADED while it
/// drains (a signed `drain`: new vault work refused). The JSON carries the whole reply.
pub fn enclave(reply: &Result<Value, CliError>) -> Section {
    let r = match reply {
        Err(e) => return Section::new(Status::Down, e.to_string()).with("error", e.to_string()),
        Ok(r) => r,
    };
    let mut section = if r.get("healthy").and_then(Value::as_bool) != Some(true) {
        Section::new(Status::Down, "enclave reports unhealthy")
    } else {
        let phase = r["phase"].as_str().unwrap_or("serving");
        let n = |k: &str| r[k].as_u64().map_or("?".into(), |v| v.to_string());
        let mut summary = format!(
            "{} up {} s, {phase}; vaults {} active, {} unlocked, {} max; memory {}/{} MB",
            r["version"].as_str().unwrap_or("?"),
            n("uptime_seconds"),
            n("active_vaults"),
            n("unlocked_vaults"),
            n("total_vaults"),
            n("memory_used_mb"),
            n("memory_total_mb"),
        );
        if r["mock_nsm"] == true {
            summary.push_str("; MOCK NSM (dev build)");
        }
        if phase == "draining" {
            Section::new(Status::Degraded, summary)
        } else {
            Section::new(Status::Ok, summary)
        }
    };
    if let Some(fields) = r.as_object() {
        section.fields.extend(fields.clone());
    }
    section
}

/// The KMS section: the enclave's client (configured? what KMS answered, by code) and the
/// parent's tunnel (allow-list, tunnels, credentials lent). DEGRADED when either side is not
/// configured or the allow-list is empty: then every vault enrolment and cold unlock fails.
/// Counters are shown, not judged: they count since start, and rates are for `/metrics` alerts.
pub fn kms(enclave: Option<&Value>, parent: Option<&Value>) -> Section {
    if enclave.is_none() && parent.is_none() {
        return Section::new(Status::NotChecked, "unknown: neither side answered");
    }
    let mut problems = Vec::new();
    let mut parts = Vec::new();
    let enclave_configured = enclave.and_then(|e| e["kms_configured"].as_bool());
    let outcomes = enclave.map(|e| e["kms_outcomes"].clone());
    match enclave_configured {
        Some(false) => problems.push("the enclave has no KMS configured".to_string()),
        Some(true) => parts.push(format!(
            "enclave client configured, KMS answered {}",
            counts(outcomes.as_ref().and_then(Value::as_object), "nothing yet")
        )),
        None => {}
    }
    // The enclave's check of its own key's policy: while it is not passed, no new vault can be
    // set up (existing ones still open).
    let key_check = enclave.map(|e| &e["kms_key_check"]);
    match key_check.and_then(|c| c["state"].as_str()) {
        Some("refused") | Some("unavailable") => {
            let c = key_check.unwrap_or(&Value::Null);
            problems.push(format!(
                "the enclave will not seal under its KMS key ({}{}): no new vaults",
                c["code"].as_str().unwrap_or("?"),
                c["detail"]
                    .as_str()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ))
        }
        Some(state) => parts.push(format!("key policy check {state}")),
        None => {}
    }
    if let Some(p) = parent {
        match p["configured"].as_bool() {
            Some(false) => {
                problems.push("the parent has no [kms] section (no tunnel to KMS)".to_string())
            }
            Some(true) => {
                let allowed = p["allow_entries"].as_u64().unwrap_or(0);
                if allowed == 0 {
                    problems.push("[kms] allow is empty (every tunnel denied)".to_string());
                }
                let expiry = match p["credentials_expiry_seconds"].as_f64() {
                    None => "none lent yet".to_string(),
                    Some(s) if s <= 0.0 => "long-lived or expired".to_string(),
                    Some(s) => format!("expire in {s:.0} s"),
                };
                parts.push(format!(
                    "tunnel allows {allowed}, {} open, tunnels {}, credentials {expiry}",
                    p["tunnels_active"].as_i64().unwrap_or(0),
                    counts(p["tunnels"].as_object(), "none yet"),
                ));
            }
            None => {}
        }
    }
    let status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Degraded
    };
    let summary = problems
        .into_iter()
        .chain(parts)
        .collect::<Vec<_>>()
        .join("; ");
    Section::new(status, summary)
        .with("enclave_configured", enclave_configured)
        .with("outcomes", outcomes.unwrap_or(Value::Null))
        .with("parent", parent.cloned().unwrap_or(Value::Null))
}

/// `ok 2, denied 1` from a map of counters: `ok` first, then the others by name, zeros left out.
fn counts(map: Option<&Map<String, Value>>, none: &str) -> String {
    let mut entries: Vec<(&String, u64)> = map
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k, n)))
        .collect();
    entries.sort_by_key(|(k, _)| (k.as_str() != "ok", k.as_str()));
    let listed: Vec<String> = entries.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if listed.is_empty() {
        none.to_string()
    } else {
        listed.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn enclave_section_grades_health_and_phase() {
        let ok = json!({"healthy": true, "phase": "serving", "version": "0.1.0",
            "uptime_seconds": 5, "active_vaults": 1, "unlocked_vaults": 0, "total_vaults": 100,
            "memory_used_mb": 10, "memory_total_mb": 20, "mock_nsm": true});
        let s = enclave(&Ok(ok.clone()));
        assert_eq!(s.status, Status::Ok);
        assert!(s.summary.contains("vaults 1 active, 0 unlocked, 100 max"));
        assert!(s.summary.contains("MOCK NSM"));
        assert_eq!(s.fields["uptime_seconds"], 5);
        let mut draining = ok;
        draining["phase"] = "draining".into();
        assert_eq!(enclave(&Ok(draining)).status, Status::Degraded);
        assert_eq!(enclave(&Ok(json!({"healthy": false}))).status, Status::Down);
        let e = enclave(&Err(CliError::NoResponders("enclave.health".into())));
        assert_eq!(e.status, Status::Down);
        assert!(e.summary.contains("no responders"));
    }

    #[test]
    fn kms_section_degrades_on_configuration_only() {
        let enclave =
            json!({"kms_configured": true, "kms_outcomes": {"ok": 2, "KMSAccessDenied": 0}});
        let parent = json!({"configured": true, "allow_entries": 1, "tunnels_active": 0,
            "tunnels": {"ok": 3, "denied": 1}, "credentials_expiry_seconds": 0.0});
        let s = kms(Some(&enclave), Some(&parent));
        assert_eq!(s.status, Status::Ok, "{}", s.summary);
        assert!(s.summary.contains("KMS answered ok 2"), "{}", s.summary);
        assert!(
            s.summary.contains("tunnels ok 3, denied 1"),
            "{}",
            s.summary
        );

        let s = kms(Some(&json!({"kms_configured": false})), Some(&parent));
        assert_eq!(s.status, Status::Degraded);
        let s = kms(Some(&enclave), Some(&json!({"configured": false})));
        assert_eq!(s.status, Status::Degraded);
        assert!(s.summary.starts_with("the parent has no [kms] section"));
        let empty = json!({"configured": true, "allow_entries": 0});
        assert_eq!(kms(Some(&enclave), Some(&empty)).status, Status::Degraded);
        assert_eq!(kms(Some(&enclave), None).status, Status::Ok);
        assert_eq!(kms(None, None).status, Status::NotChecked);
    }

    #[test]
    fn kms_section_degrades_while_the_key_policy_check_refuses() {
        let with = |check: Value| json!({"kms_configured": true, "kms_key_check": check});
        let passed = kms(Some(&with(json!({"state": "passed"}))), None);
        assert_eq!(passed.status, Status::Ok);
        assert!(passed.summary.contains("key policy check passed"));
        let refused = with(json!({"state": "refused", "code": "KMSKeyPolicyUnsafe",
            "detail": "unattested_action in statement Admin: kms:Decrypt"}));
        let s = kms(Some(&refused), None);
        assert_eq!(s.status, Status::Degraded);
        assert!(
            s.summary.contains("KMSKeyPolicyUnsafe: unattested_action"),
            "{}",
            s.summary
        );
        let unavailable = with(json!({"state": "unavailable", "code": "KMSUnavailable"}));
        assert_eq!(kms(Some(&unavailable), None).status, Status::Degraded);
    }
}
