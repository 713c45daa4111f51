//! The fault table's rows under the vault load, as `scripts/test` runs them: each test is one row
//! of `vettid-faults` (`vettid_tests::faults`), on a fresh system, with the same checks the
//! binary applies ([`Row::failures`]): no duplicate answer, no acknowledged mutation lost, no
//! refused one stored, only the codes the fault explains, every kind of request succeeding again
//! within 2 s of the part coming back, and no request left unanswered by a part that was alive.
//!
//! The storage-outage, store-hang and enclave-kill rows have their own tests with finer checks
//! in `vault_faults.rs`; `target/release/vettid-faults` runs all fifteen (BENCHMARKS.md). The
//! five trusted-store rows (issue 12) each run on a system with a DynamoDB stand-in of its own and
//! also assert that nothing was served while the table was broken: no `unlocked`, no
//! `invalid_pin` (a PIN evaluated), no other success among the requests answered in the outage.

use vettid_tests::faults::{markdown, run, Fault, Plan, Row};

async fn row(fault: Fault) -> Row {
    let row = run(fault, Plan::default()).await;
    eprint!("{}", markdown(std::slice::from_ref(&row)));
    let failures = row.failures(fault);
    assert!(
        failures.is_empty(),
        "{}: {failures:?}\n{row:?}",
        fault.name()
    );
    row
}

/// The part really failed under load: some requests saw it.
fn saw(row: &Row, codes: &[&str]) {
    let n: usize = codes.iter().filter_map(|c| row.codes.get(*c)).sum();
    assert!(n > 0, "no request saw {codes:?}: {:?}", row.codes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart() {
    let r = row(Fault::NatsRestart).await;
    // Requests it took down with it are unanswered (core NATS keeps nothing), a handful at most.
    assert!(r.unanswered() <= 6, "{:?}", r.codes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_sigterm() {
    let r = row(Fault::ParentTerm).await;
    saw(&r, &["no_responders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_sigkill() {
    let r = row(Fault::ParentKill).await;
    saw(&r, &["no_responders"]);
    assert!(r.unanswered() <= 6, "{:?}", r.codes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conflict_from_a_second_host() {
    let r = row(Fault::StoreConflict).await;
    assert!(
        !r.note.starts_with("0 writes conflicted, 0 stale"),
        "the second host changed nothing: {}",
        r.note
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_denies() {
    let r = row(Fault::KmsDeny).await;
    saw(&r, &["KMSAccessDenied"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_key_disabled() {
    let r = row(Fault::KmsDisabled).await;
    saw(&r, &["KMSKeyDisabled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_hangs() {
    row(Fault::KmsHang).await;
}

/// A trusted-store row: the table really failed under load, and the row's fail-closed count
/// ([`Row::failures`] checks it is all zeros) had probes to count.
async fn trusted_row(fault: Fault) -> Row {
    let r = row(fault).await;
    saw(&r, &["trusted_store_unavailable", "deadline_exceeded"]);
    let f = r.fail_closed.expect("outage window recorded");
    assert!(f.wrong_pins > 0 && f.unlocks > f.wrong_pins, "{f:?}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_store_down() {
    trusted_row(Fault::TrustedDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_store_slow() {
    trusted_row(Fault::TrustedSlow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_store_throttled() {
    trusted_row(Fault::TrustedThrottled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_store_denied() {
    trusted_row(Fault::TrustedDenied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_store_traffic_dropped() {
    trusted_row(Fault::TrustedDropped).await;
}
