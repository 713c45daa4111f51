//! One row from start to end ([`run`]): a fresh system for the fault, the users, the load and its
//! streams, the break between [`Plan::before`] and [`Plan::after`], then the row's figures and the
//! read-back.
//!
//! Separate because it is the one place where the other parts meet; each of them reads without
//! it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inject::inject;
use super::row::recovered_after;
use super::workload::{attest_stream, enrol_stream, pin_probes};
use super::{
    codes, under_load, users, verify_durable, FailClosed, Fault, Kind, Load, Mix, Row, Sent,
    RIGHT_PIN_PROBE, WRONG_PIN_PROBE,
};
use crate::replies::Requester;
use crate::vault_client::{Answer, VaultUser};

/// The load and the timing of one row.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Enrolled users, each running [`Mix`].
    pub users: usize,
    /// What each does.
    pub mix: Mix,
    /// Time between app attestations (a separate stream).
    pub attest_every: Duration,
    /// Time between new users' enrolments (a separate stream; each is KMS + Argon2id).
    pub enrol_every: Duration,
    /// Load before the fault.
    pub before: Duration,
    /// How long the part stays broken.
    pub outage: Duration,
    /// Load after it is back.
    pub after: Duration,
}

impl Default for Plan {
    /// Two users at 50 ms (a warm unlock every 3 s, a read every fourth tick), 20 attestations and
    /// one enrolment a second; 1.5 s of load, a 2 s outage, 2.5 s after.
    fn default() -> Self {
        Self {
            users: 2,
            mix: Mix {
                pace: Duration::from_millis(50),
                unlock_every: 60,
                retrieve_every: 4,
            },
            attest_every: Duration::from_millis(50),
            enrol_every: Duration::from_secs(1),
            before: Duration::from_millis(1500),
            outage: Duration::from_secs(2),
            after: Duration::from_millis(2500),
        }
    }
}

/// Runs one row on a fresh system: enrols the users, runs the load (and the attestation and
/// enrolment streams) for `plan.before`, breaks the part for `plan.outage`, loads `plan.after`
/// more, stops, and reads everything back.
///
/// # Panics
/// If the system cannot be started or brought back for the read-back.
pub async fn run(fault: Fault, plan: Plan) -> Row {
    let mut sys = tokio::task::block_in_place(|| fault.system());
    let requester = Requester::connect(&sys.nats.url()).await;
    let users = users(&requester, "ft-user", plan.users).await;
    let owners: Vec<String> = users.iter().map(|u| u.owner.clone()).collect();
    let shared = Arc::new(Load::default());
    // The trusted-store rows' PIN probes: two users of their own (PINs 4000 and 4001), idle
    // until the table breaks.
    let probes = if fault.trusted() {
        let mut probe = self::users(&requester, "ft-probe", 2).await.into_iter();
        let (right, wrong) = (probe.next().unwrap(), probe.next().unwrap());
        Some((
            tokio::spawn(pin_probes(right, RIGHT_PIN_PROBE, "4000", shared.clone())),
            tokio::spawn(pin_probes(wrong, WRONG_PIN_PROBE, "9999", shared.clone())),
        ))
    } else {
        None
    };
    let attest = tokio::spawn(attest_stream(
        requester.clone(),
        plan.attest_every,
        shared.clone(),
    ));
    let enrol = tokio::spawn(enrol_stream(
        requester.clone(),
        plan.enrol_every,
        shared.clone(),
    ));

    let mut back_at = Instant::now();
    let mut second_log = String::new();
    let (mut users, sent) = under_load(users, plan.mix, shared.clone(), async {
        tokio::time::sleep(plan.before).await;
        second_log = inject(&mut sys, fault, plan.outage, &owners, &shared).await;
        back_at = Instant::now();
        shared.back.notify_waiters();
        tokio::time::sleep(plan.after + fault.lingering()).await;
    })
    .await;
    let attests = attest.await.expect("attestation stream");
    let enrolled = enrol.await.expect("enrolment stream");
    let enrols: Vec<Sent> = enrolled.iter().map(|(_, s)| s.clone()).collect();
    let probed = match probes {
        Some((right, wrong)) => {
            let mut p = right.await.expect("PIN probes");
            p.extend(wrong.await.expect("PIN probes"));
            p
        }
        None => Vec::new(),
    };

    let all: Vec<&Sent> = sent
        .iter()
        .flatten()
        .chain(&attests)
        .chain(&enrols)
        .chain(&probed)
        .collect();
    let fail_closed = fault
        .trusted()
        .then(|| {
            shared
                .window()
                .map(|w| FailClosed::count(all.iter().copied(), w))
        })
        .flatten();
    let mut requests = BTreeMap::new();
    for s in &all {
        *requests.entry(s.kind).or_insert(0) += 1;
    }
    let recovered = recovered_after(&all, back_at);
    // Kinds of request that never succeeded after the part was back (their only tries fell in
    // the recovery window): shown, so a reader knows which kinds the recovery figure covers.
    let never: Vec<String> = {
        let mut kinds: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for s in all.iter().filter(|s| s.sent >= back_at) {
            kinds.entry(s.kind).or_default().push(s.answer.code());
        }
        kinds
            .into_iter()
            .filter(|(_, codes)| codes.iter().all(|c| !c.is_empty()))
            .map(|(k, codes)| format!("no {k:?} succeeded after it was back: {codes:?}"))
            .collect()
    };
    let slowest = all
        .iter()
        .map(|s| s.answered - s.sent)
        .max()
        .unwrap_or_default();
    let codes = codes(all.iter().copied());
    let enrolled: Vec<(VaultUser, Answer)> =
        enrolled.into_iter().map(|(u, s)| (u, s.answer)).collect();
    let note = if fault == Fault::StoreConflict {
        let first_log = sys
            .enclave
            .as_ref()
            .map(crate::Child::log)
            .unwrap_or_default();
        let count = |what: &str| first_log.matches(what).count() + second_log.matches(what).count();
        format!(
            "{} writes conflicted, {} stale copies reloaded",
            count("vault changed on another host"),
            count("cached vault was stale")
        )
    } else {
        let mut parts = Vec::new();
        if fault.trusted() {
            let log = sys
                .enclave
                .as_ref()
                .map(crate::Child::log)
                .unwrap_or_default();
            parts.push(format!("enclave log: {}", trusted_log_codes(&log)));
        }
        if let Some(f) = &fail_closed {
            parts.push(format!(
                "while broken: {} unlocks answered ({} wrong PINs), {} unlocked, {} invalid_pin, {} other requests acknowledged",
                f.unlocks, f.wrong_pins, f.unlocked, f.invalid_pin, f.acknowledged
            ));
        }
        parts.extend(never);
        parts.join("; ")
    };
    let durability = verify_durable(&mut sys, &mut users, &sent, &enrolled).await;
    // VETTID_FAULTS_LOGS=DIR keeps each row's logs (the system's directory goes with it).
    if let Some(keep) = std::env::var_os("VETTID_FAULTS_LOGS") {
        let to = PathBuf::from(keep).join(fault_slug(fault));
        let _ = std::fs::create_dir_all(&to);
        for log in ["enclave.log", "parent.log", "dynamodb.log"] {
            let _ = std::fs::copy(sys.dir.path().join(log), to.join(log));
        }
    }
    // Late answers to the run's requests would have arrived by now.
    Row {
        fault: fault.name(),
        requests,
        codes,
        duplicates: requester.duplicates(),
        durability,
        recovery: recovered,
        slowest,
        note,
        fail_closed,
    }
}

/// The enclave's failed trusted-store calls by code (its `trusted store call failed` events from
/// the DynamoDB client, each naming its `operation`), as `N TrustedStoreX` items: what an
/// operator's journal shows for the fault (docs/OPERATIONS.md).
pub fn trusted_log_codes(log: &str) -> String {
    const CODES: [&str; 8] = [
        "TrustedStoreUnavailable",
        "TrustedStoreUncertain",
        "TrustedStoreThrottled",
        "TrustedStoreDenied",
        "TrustedStoreCredentials",
        "TrustedStoreNoTime",
        "TrustedStoreConflict",
        "TrustedStoreMalformed",
    ];
    let calls: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("trusted store call failed") && l.contains("operation"))
        .collect();
    let found: Vec<String> = CODES
        .iter()
        .filter_map(|c| {
            let n = calls.iter().filter(|l| l.contains(c)).count();
            (n > 0).then(|| format!("{n} {c}"))
        })
        .collect();
    if found.is_empty() {
        "no failed calls".into()
    } else {
        found.join(", ")
    }
}

/// A file name for `fault`'s row.
fn fault_slug(fault: Fault) -> String {
    format!("{fault:?}").to_lowercase()
}
