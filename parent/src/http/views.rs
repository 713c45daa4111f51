//! The parts of `/health` built from configuration and metrics rather than probed: what the
//! enclave's attestation is checked against, and the state of the KMS tunnel.
//!
//! The KMS view reads the same counters `/metrics` exports, so the two never disagree. Counters
//! are cumulative since the parent started; judging them (a rate of `denied`, say) is for alerts
//! on `/metrics`, not for this snapshot.

use serde_json::{json, Map, Value};

use crate::config::{AttestationConfig, PcrSource};
use crate::metrics::{CredentialsLabels, CredentialsOutcome, Metrics, TunnelLabels, TunnelOutcome};

/// Every tunnel outcome, in the order `/health` lists them.
const TUNNEL_OUTCOMES: [TunnelOutcome; 5] = [
    TunnelOutcome::Ok,
    TunnelOutcome::Denied,
    TunnelOutcome::Unreachable,
    TunnelOutcome::Busy,
    TunnelOutcome::BadPreamble,
];

/// Every credentials outcome.
const CREDENTIALS_OUTCOMES: [CredentialsOutcome; 2] =
    [CredentialsOutcome::Ok, CredentialsOutcome::Error];

/// What the parent verifies the enclave's attestation against (`attestation_policy` of
/// `/health`): `manifest` (with its path), `pcr_sets` (with their ids) or `dev_any_pcrs`, and
/// whether a dev trust root (the mock NSM's) is trusted besides the AWS root.
pub fn attestation_policy(cfg: &AttestationConfig) -> Value {
    let mut v = match &cfg.pcrs {
        PcrSource::Manifest { path, .. } => json!({
            "against": "manifest",
            "manifest": path.display().to_string(),
        }),
        PcrSource::Sets(sets) => json!({
            "against": "pcr_sets",
            "pcr_sets": sets.iter().map(|(id, ..)| id.as_str()).collect::<Vec<_>>(),
        }),
        PcrSource::DevAny => json!({ "against": "dev_any_pcrs" }),
    };
    v["dev_trust_root"] = cfg.dev_trust_root.is_some().into();
    v
}

/// The `kms` object of `/health`. `allow_entries` is the size of `[kms] allow`, `None` without a
/// `[kms]` section (then the enclave cannot reach KMS at all, and only `configured` is reported).
pub fn kms(metrics: &Metrics, allow_entries: Option<usize>) -> Value {
    let Some(allow_entries) = allow_entries else {
        return json!({ "configured": false });
    };
    let tunnels: Map<String, Value> = TUNNEL_OUTCOMES
        .iter()
        .map(|&outcome| {
            let n = metrics
                .kms_tunnels
                .get(&TunnelLabels { outcome })
                .map_or(0, |c| c.get());
            (outcome.as_str().to_owned(), n.into())
        })
        .collect();
    let credentials: Map<String, Value> = CREDENTIALS_OUTCOMES
        .iter()
        .map(|&outcome| {
            let n = metrics
                .aws_credentials_served
                .get(&CredentialsLabels { outcome })
                .map_or(0, |c| c.get());
            (outcome.as_str().to_owned(), n.into())
        })
        .collect();
    let lent = credentials.get("ok").and_then(Value::as_u64).unwrap_or(0) > 0;
    json!({
        "configured": true,
        "allow_entries": allow_entries,
        "tunnels_active": metrics.kms_tunnels_active.get(),
        "tunnels": tunnels,
        "credentials_served": credentials,
        // null until credentials were first lent; 0 for long-lived ones (or expired).
        "credentials_expiry_seconds": lent.then(|| credentials_expiry_seconds(metrics)),
    })
}

/// Seconds until the credentials last lent to the enclave expire. The gauge is brought up to
/// date only when the metrics are rendered (metrics.rs keeps the expiry instant private), so
/// render first; the text is a few kilobytes and dropped.
fn credentials_expiry_seconds(metrics: &Metrics) -> f64 {
    let _ = metrics.render();
    metrics.aws_credentials_expiry.get()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn cfg(pcrs: PcrSource, dev_root: bool) -> AttestationConfig {
        AttestationConfig {
            pcrs,
            max_age: Duration::from_secs(300),
            dev_trust_root: dev_root.then(|| PathBuf::from("/dev/mock-root.pem")),
        }
    }

    #[test]
    fn attestation_policy_names_its_source() {
        let m = attestation_policy(&cfg(
            PcrSource::Manifest {
                path: "/etc/vettid/pcrs.json".into(),
                public_key: "/etc/vettid/pcrs.pem".into(),
            },
            false,
        ));
        assert_eq!(m["against"], "manifest");
        assert_eq!(m["manifest"], "/etc/vettid/pcrs.json");
        assert_eq!(m["dev_trust_root"], false);
        let s = attestation_policy(&cfg(
            PcrSource::Sets(vec![("v1".into(), "a".into(), "b".into(), "c".into())]),
            false,
        ));
        assert_eq!(s["against"], "pcr_sets");
        assert_eq!(s["pcr_sets"], json!(["v1"]));
        let d = attestation_policy(&cfg(PcrSource::DevAny, true));
        assert_eq!(d["against"], "dev_any_pcrs");
        assert_eq!(d["dev_trust_root"], true);
    }

    #[test]
    fn kms_without_a_section_says_only_that() {
        assert_eq!(kms(&Metrics::new(), None), json!({ "configured": false }));
    }

    #[test]
    fn kms_reports_counters_without_creating_series() {
        let m = Metrics::new();
        let fresh = kms(&m, Some(1));
        assert_eq!(fresh["allow_entries"], 1);
        assert_eq!(fresh["tunnels"]["ok"], 0);
        assert_eq!(fresh["tunnels"]["bad_preamble"], 0);
        assert!(fresh["credentials_expiry_seconds"].is_null());
        // Reading must not add zero-valued series to /metrics.
        assert!(!m.render().contains("vettid_kms_tunnels_total{"));

        m.kms_tunnel(TunnelOutcome::Ok);
        m.kms_tunnel(TunnelOutcome::Ok);
        m.kms_tunnel(TunnelOutcome::Denied);
        m.kms_tunnels_active.inc();
        m.aws_credentials(CredentialsOutcome::Ok, None);
        let v = kms(&m, Some(2));
        assert_eq!(v["configured"], true);
        assert_eq!(v["tunnels"]["ok"], 2);
        assert_eq!(v["tunnels"]["denied"], 1);
        assert_eq!(v["tunnels_active"], 1);
        assert_eq!(v["credentials_served"]["ok"], 1);
        assert_eq!(v["credentials_served"]["error"], 0);
        assert_eq!(v["credentials_expiry_seconds"], 0.0);
    }

    #[test]
    fn kms_expiry_counts_down_from_the_lent_credentials() {
        let m = Metrics::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        m.aws_credentials(CredentialsOutcome::Ok, Some(now + 600_000));
        let s = kms(&m, Some(1))["credentials_expiry_seconds"]
            .as_f64()
            .unwrap();
        assert!((590.0..=600.0).contains(&s), "{s}");
    }
}
