//! Vault faults under a small load, proving RPO 0 end to end: nothing a client saw acknowledged is
//! lost, and nothing a client saw refused is stored.
//!
//! Each test plays app users (`vault_client::VaultUser`) against the real system with the local
//! KMS, breaks one part, repairs it, and then proves durability the hard way: a new enclave
//! process (nothing cached), a cold unlock, `secrets.list` compared with what every request was
//! answered. A request whose answer does not say whether it was stored (`enclave_unavailable`
//! when the enclave dies mid-request) may go either way; every other error must have stored
//! nothing. The figures printed (`--nocapture`) are the vault rows of BENCHMARKS.md's fault table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vettid_tests::app::{self, ReplyKey};
use vettid_tests::kms::KmsOptions;
use vettid_tests::vault_client::{Answer, VaultUser};
use vettid_tests::{System, SystemOptions};

/// The parent gives every enclave call 5 s (the harness's `request_timeout_ms`) and then answers
/// itself, so every request must be answered well inside this.
const LIMIT: Duration = Duration::from_secs(8);
/// One `secrets.add` per user every this often: a small load that stays far below the vault's
/// 1000-secret limit in a test of a few seconds.
const PACE: Duration = Duration::from_millis(20);
/// Answers that do not say whether the request was stored: the enclave died with it.
const UNCERTAIN: &[&str] = &["enclave_unavailable", "enclave_timeout", "storage_timeout"];

fn vault_system() -> System {
    System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        ..SystemOptions::default()
    })
}

/// `n` enrolled users with a credential, their vaults unlocked.
async fn users(sys: &System, prefix: &str, n: usize) -> Vec<VaultUser> {
    let password_hash = app::phc_password_hash("fault test password");
    let client = sys.client().await;
    let mut users = Vec::new();
    for i in 0..n {
        let mut u = VaultUser::new(
            client.clone(),
            &format!("{prefix}-{i}"),
            &password_hash,
            LIMIT,
        );
        u.setup(&format!("{:04}", 4000 + i))
            .await
            .expect_ok("pin.setup");
        u.create_credential().await.expect_ok("credential.create");
        users.push(u);
    }
    users
}

/// One `secrets.add` and what it was answered.
struct Sent {
    name: String,
    sent: Instant,
    answered: Instant,
    answer: Answer,
}

/// Shared by the load tasks and the fault: when to stop, requests out, unlocks done.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    in_flight: AtomicUsize,
    unlocks: AtomicUsize,
}

impl Load {
    /// Waits (at most `limit`) until a request is out, so a fault can hit one mid-flight.
    async fn until_in_flight(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    }

    /// Waits (at most `limit`) until the load has unlocked `n` vaults.
    async fn until_unlocked(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.unlocks.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One user's load: `secrets.add` at [`PACE`] until stopped; a `vault_locked` answer (the
/// enclave restarted) is met as an app meets it, with a `pin.unlock`.
async fn load(mut user: VaultUser, load: Arc<Load>) -> (VaultUser, Vec<Sent>) {
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !load.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let name = format!("{}-{:04}", user.owner, sent.len());
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let answer = user.add_secret(&name, &format!("value of {name}")).await;
        let answered = Instant::now();
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        let locked = answer.code() == "vault_locked";
        sent.push(Sent {
            name,
            sent: started,
            answered,
            answer,
        });
        if locked && user.unlock().await.is_ok() {
            load.unlocks.fetch_add(1, Ordering::SeqCst);
        }
    }
    (user, sent)
}

/// Runs [`load`] for every user while `fault` runs, then stops it.
async fn under_load(
    users: Vec<VaultUser>,
    shared: Arc<Load>,
    fault: impl std::future::Future<Output = ()>,
) -> (Vec<VaultUser>, Vec<Vec<Sent>>) {
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| tokio::spawn(load(u, shared.clone())))
        .collect();
    fault.await;
    shared.stop.store(true, Ordering::SeqCst);
    let (mut users, mut sent) = (Vec::new(), Vec::new());
    for t in tasks {
        let (u, s) = t.await.expect("load task");
        users.push(u);
        sent.push(s);
    }
    (users, sent)
}

/// Answers by code (`ok` for successes).
fn codes(sent: &[Vec<Sent>]) -> BTreeMap<String, usize> {
    let mut codes = BTreeMap::new();
    for s in sent.iter().flatten() {
        let code = match s.answer.code() {
            c if c.is_empty() => "ok".to_owned(),
            c => c,
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    codes
}

/// The first success among requests sent after `from`, as time from `from` to its answer.
fn recovery(sent: &[Vec<Sent>], from: Instant) -> Option<Duration> {
    sent.iter()
        .flatten()
        .filter(|s| s.sent >= from && s.answer.is_ok())
        .map(|s| s.answered - from)
        .min()
}

/// A new enclave process, a cold unlock of every user, and `secrets.list` against the answers:
/// every acknowledged secret is there under its id, no refused one is, and only a request with
/// an [`UNCERTAIN`] answer may have been stored unacknowledged. Returns (acknowledged but lost,
/// stored without acknowledgement).
async fn verify_durable(
    sys: &mut System,
    users: &mut [VaultUser],
    sent: &[Vec<Sent>],
) -> (usize, usize) {
    tokio::task::block_in_place(|| sys.start_enclave());
    assert!(sys.wait_healthy(LIMIT), "parent did not reconnect");
    users[0].wait_answering(LIMIT).await;
    let (mut lost, mut unacknowledged) = (0, 0);
    for (user, sent) in users.iter_mut().zip(sent) {
        // A UTK the enclave spent as it died is refused (`utk_invalid`); the app takes the next.
        let mut answer = user.unlock().await;
        for _ in 0..3 {
            if answer.code() != "utk_invalid" {
                break;
            }
            answer = user.unlock().await;
        }
        let r = answer.expect_ok("cold pin.unlock");
        assert_eq!(r["status"], "unlocked", "{r}");
        let listed: BTreeMap<String, String> = user
            .list_secrets()
            .await
            .unwrap_or_else(|a| panic!("secrets.list: {a:?}"))
            .into_iter()
            .map(|(id, name)| (name, id))
            .collect();
        let mut uncertain = BTreeSet::new();
        for s in sent {
            match &s.answer {
                Answer::Ok(r) => match listed.get(&s.name) {
                    Some(id) => assert_eq!(id, r["id"].as_str().unwrap(), "{} id", s.name),
                    None => lost += 1,
                },
                Answer::Error(_) if UNCERTAIN.contains(&s.answer.code().as_str()) => {
                    uncertain.insert(s.name.as_str());
                }
                other => assert!(
                    !listed.contains_key(&s.name),
                    "{} was refused ({other:?}) yet stored",
                    s.name
                ),
            }
        }
        for name in listed.keys() {
            let request = sent.iter().find(|s| &s.name == name);
            assert!(
                request.is_some_and(|s| s.answer.is_ok() || uncertain.contains(name.as_str())),
                "{name} is stored but its request was neither acknowledged nor in doubt"
            );
            if request.is_some_and(|s| !s.answer.is_ok()) {
                unacknowledged += 1;
            }
        }
        // The values too, not only the names: the last acknowledged secret reads back.
        if let Some(last) = sent.iter().rev().find(|s| s.answer.is_ok()) {
            let reply = ReplyKey::generate();
            let Answer::Ok(r) = &last.answer else {
                unreachable!()
            };
            let got = user
                .retrieve_secret(r["id"].as_str().unwrap(), &reply)
                .await
                .expect_ok("secrets.retrieve");
            let secret = reply.open_json(got["encrypted_secret"].as_str().unwrap());
            assert_eq!(secret["value"], format!("value of {}", last.name));
        }
    }
    (lost, unacknowledged)
}

fn report(fault: &str, sent: &[Vec<Sent>], recovered: Option<Duration>, lost: usize, extra: usize) {
    let total: usize = sent.iter().map(Vec::len).sum();
    let codes = codes(sent);
    let unanswered = codes
        .iter()
        .filter(|(c, _)| c.starts_with("lost"))
        .map(|(_, n)| n)
        .sum::<usize>();
    eprintln!(
        "| {fault} | {total} | {} | {codes:?} | {unanswered} | {} | {lost} | {extra} |",
        codes.get("ok").copied().unwrap_or(0),
        recovered.map_or("-".into(), |d| format!("{} ms", d.as_millis())),
    );
}

fn objects_broken(sys: &System, broken: bool) {
    let root = sys.dir.path().join("objects");
    let aside = sys.dir.path().join("objects.aside");
    if broken {
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
    } else {
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_answers_storage_unavailable_and_loses_no_acknowledged_secret() {
    let mut sys = vault_system();
    let users = users(&sys, "faults-storage", 2).await;
    let (mut broken_at, mut repaired_at) = (Instant::now(), Instant::now());
    let (mut users, sent) = under_load(users, Arc::default(), async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        objects_broken(&sys, true);
        broken_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        objects_broken(&sys, false);
        repaired_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(800)).await;
    })
    .await;

    let all: Vec<&Sent> = sent.iter().flatten().collect();
    for s in &all {
        let code = s.answer.code();
        assert!(
            code.is_empty() || code == "storage_unavailable",
            "{}: only success or storage_unavailable, got {:?}",
            s.name,
            s.answer
        );
        if s.sent >= broken_at && s.answered <= repaired_at {
            assert_eq!(
                code, "storage_unavailable",
                "{} succeeded during the outage",
                s.name
            );
        }
        assert!(s.answered - s.sent < LIMIT);
    }
    let during = all
        .iter()
        .filter(|s| s.sent >= broken_at && s.answered <= repaired_at)
        .count();
    assert!(during >= 20, "the outage saw load: {during} requests");
    assert!(all.iter().any(|s| s.sent < broken_at && s.answer.is_ok()));
    let recovered = recovery(&sent, repaired_at).expect("successes after the repair");
    assert!(
        recovered < Duration::from_secs(1),
        "recovered in {recovered:?}"
    );

    let (lost, extra) = verify_durable(&mut sys, &mut users, &sent).await;
    report(
        "object store broken 2 s (root replaced by a file), repaired",
        &sent,
        Some(recovered),
        lost,
        extra,
    );
    assert_eq!(
        (lost, extra),
        (0, 0),
        "acknowledged-but-lost, stored-but-refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outage_fails_cold_unlocks_promptly_and_recovers_with_data_intact() {
    let mut sys = vault_system();
    let mut users = users(&sys, "faults-kms", 1).await;
    let user = &mut users[0];
    for i in 0..3 {
        user.add_secret(&format!("kept-{i}"), &format!("value of kept-{i}"))
            .await
            .expect_ok("secrets.add");
    }

    sys.kms.as_mut().unwrap().child.kill();
    tokio::task::block_in_place(|| sys.start_enclave());
    assert!(sys.wait_healthy(LIMIT));
    user.wait_answering(LIMIT).await;
    let started = Instant::now();
    let answer = user.unlock().await;
    let refused_in = started.elapsed();
    assert_eq!(answer.code(), "KMSUnavailable", "{answer:?}");
    assert!(
        refused_in < Duration::from_secs(5),
        "answered by the enclave, in {refused_in:?}"
    );
    // A new user cannot enrol either, and nothing is created.
    let client = sys.client().await;
    let hash = app::phc_password_hash("fault test password");
    let mut newcomer = VaultUser::new(client, "faults-kms-new", &hash, LIMIT);
    assert_eq!(newcomer.setup("2468").await.code(), "KMSUnavailable");
    // Secrets wait for the unlock; the vault stays locked, nothing is spent.
    assert_eq!(user.add_secret("during", "x").await.code(), "vault_locked");

    let back = Instant::now();
    tokio::task::block_in_place(|| sys.kms.as_mut().unwrap().restart(KmsOptions::default()));
    let r = user
        .unlock()
        .await
        .expect_ok("unlock after the KMS is back");
    let recovered = back.elapsed();
    assert_eq!(r["status"], "unlocked");
    assert_eq!(
        newcomer.setup("2468").await.code(),
        "",
        "enrolment works again"
    );
    let names: BTreeSet<String> = user
        .list_secrets()
        .await
        .unwrap_or_else(|a| panic!("secrets.list: {a:?}"))
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        names,
        ["kept-0", "kept-1", "kept-2"].map(String::from).into(),
        "data intact"
    );
    // The KMS failure cost no PIN attempt: the next wrong PIN is the first.
    let wrong = user.unlock_with("0000").await;
    let remaining = match &wrong {
        Answer::Error(v) => v["attempts_remaining"].as_u64(),
        _ => None,
    };
    assert_eq!(
        (wrong.code().as_str(), remaining),
        ("invalid_pin", Some(9)),
        "{wrong:?}"
    );
    eprintln!(
        "| KMS killed, enclave restarted (cold), KMS restarted | unlock: KMSUnavailable in {} ms; pin.setup: KMSUnavailable; secrets.add: vault_locked | recovery {} ms (KMS restart + cold unlock) | lost 0 |",
        refused_in.as_millis(),
        recovered.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_killed_mid_load_loses_no_acknowledged_secret() {
    let mut sys = vault_system();
    let users = users(&sys, "faults-kill", 2).await;
    let (mut killed_at, mut restarted_at) = (Instant::now(), Instant::now());
    let shared = Arc::new(Load::default());
    let (mut users, sent) = under_load(users, shared.clone(), async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        shared.until_in_flight(Duration::from_secs(2)).await;
        // Taken before the signal: the parent answers the requests the enclave took with it as
        // soon as the link drops, which can be before `kill_enclave` has reaped the process.
        killed_at = Instant::now();
        sys.kill_enclave();
        tokio::time::sleep(Duration::from_millis(500)).await;
        restarted_at = Instant::now();
        tokio::task::block_in_place(|| sys.start_enclave());
        // Each user's cold unlock, then more adds after it.
        shared.until_unlocked(2, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;

    for s in sent.iter().flatten() {
        assert!(
            !matches!(s.answer, Answer::Lost(_)),
            "{} got no answer: {:?}",
            s.name,
            s.answer
        );
        let code = s.answer.code();
        assert!(
            code.is_empty()
                || code == "vault_locked"
                || code == "utk_invalid"
                || UNCERTAIN.contains(&code.as_str()),
            "{}: {code}",
            s.name
        );
    }
    assert!(
        shared.unlocks.load(Ordering::SeqCst) >= users.len(),
        "every user unlocked again after the restart"
    );
    // Requests out when the kill was issued: answered (checked above), success or not (one may
    // have finished in the microseconds before the signal landed).
    let in_flight: Vec<String> = sent
        .iter()
        .flatten()
        .filter(|s| s.sent <= killed_at && s.answered >= killed_at)
        .map(|s| s.answer.code())
        .collect();
    assert!(!in_flight.is_empty(), "the kill hit a request in flight");
    eprintln!("in flight at the kill: {in_flight:?} (\"\" = success)");
    let recovered = recovery(&sent, restarted_at).expect("successes after the restart");

    let (lost, extra) = verify_durable(&mut sys, &mut users, &sent).await;
    report(
        "enclave SIGKILL mid-load, restarted after 0.5 s (cold)",
        &sent,
        Some(recovered),
        lost,
        extra,
    );
    assert_eq!(lost, 0, "acknowledged but lost");
}

/// Regression: a correct `pin.unlock` cut off by the parent's deadline used to leave its
/// counted attempt on record. Vault operations now run to their end in their own task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_unlock_cut_off_by_the_deadline_does_not_count_as_a_failure() {
    let mut sys = vault_system();
    let mut users = users(&sys, "faults-deadline", 4).await;
    vettid_tests::vault_client::restart_enclave_with(&mut sys, &["--argon2-concurrency", "1"]);
    vettid_tests::vault_client::restart_parent_with_timeout(&mut sys, Duration::from_millis(1500));
    users[0].wait_answering(LIMIT).await;
    for u in users.iter() {
        assert_eq!(u.load_locked().await.code(), "decryption_failed");
    }
    let answers = futures::future::join_all(users.iter_mut().map(|u| u.unlock())).await;
    let codes: Vec<String> = answers.iter().map(Answer::code).collect();
    eprintln!("four correct unlocks at once, one Argon2 permit, 1.5 s deadline: {codes:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (u, code) in users.iter_mut().zip(&codes) {
        let wrong = u.unlock_with("0000").await;
        let remaining = match &wrong {
            Answer::Error(v) => v["attempts_remaining"].as_u64(),
            _ => None,
        };
        eprintln!(
            "{}: correct unlock answered {code:?}; next wrong PIN: {wrong:?}",
            u.owner
        );
        assert_eq!(
            remaining,
            Some(9),
            "{}: a correct PIN counted as a failure",
            u.owner
        );
    }
}

/// Makes `user`'s stored object hang: the file is replaced by a FIFO with no writer, so the
/// parent's read (under its per-vault lock) blocks until [`store_unhang`].
fn store_hang(sys: &System, owner: &str) -> std::path::PathBuf {
    let object = sys
        .storage_root()
        .join("vaults")
        .join(owner)
        .join("vault.v2@");
    let aside = object.with_extension("aside");
    // Under the store's own per-object lock, so no write is half done across the swap.
    let _lock = store_lock(&object);
    std::fs::rename(&object, &aside).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&object)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    object
}

/// Ends the hang: the FIFO is moved away first (so queued writers find no object and conflict
/// rather than write), then opened for writing once (waking the blocked reader with an empty
/// read, which also conflicts), then the real object is put back.
fn store_unhang(object: &std::path::Path) {
    let fifo = object.with_extension("fifo");
    std::fs::rename(object, &fifo).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: fails (ENXIO) instead of waiting if no reader is blocked any more.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(2048)
            .open(&fifo);
    }
    std::fs::remove_file(&fifo).unwrap();
    let _lock = store_lock(object);
    std::fs::rename(object.with_extension("aside"), object).unwrap();
}

/// The fs store's lock file for `object` (`NAME@` → `NAME@lock`), locked.
fn store_lock(object: &std::path::Path) -> std::fs::File {
    let lock = std::path::PathBuf::from(format!("{}lock", object.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .unwrap();
    file.lock().unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_is_answered_within_the_deadline_and_loses_nothing() {
    // The enclave waits at most 1 s for storage; the parent's own storage timeout is 5 s.
    let mut sys = System::start(SystemOptions {
        kms: Some(KmsOptions::default()),
        enclave_args: vec!["--storage-timeout-secs".into(), "1".into()],
        ..SystemOptions::default()
    });
    let users = users(&sys, "faults-hang", 2).await;
    let owners: Vec<String> = users.iter().map(|u| u.owner.clone()).collect();
    let (mut hung_at, mut released_at) = (Instant::now(), Instant::now());
    let (mut users, sent) = under_load(users, Arc::default(), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let hung: Vec<_> = owners.iter().map(|o| store_hang(&sys, o)).collect();
        hung_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        for h in &hung {
            store_unhang(h);
        }
        released_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    })
    .await;

    let all: Vec<&Sent> = sent.iter().flatten().collect();
    for s in &all {
        let code = s.answer.code();
        assert!(
            // `utk_invalid`: a retry of a request whose first try did land after all (its
            // answer was `storage_timeout`, outcome unknown), so its UTK is spent.
            // `corrupt_vault`: a reload whose read was blocked on the FIFO is released with zero
            // bytes, which the enclave refuses (an artefact of how this test makes the store
            // hang; nothing is changed).
            code.is_empty()
                || [
                    "storage_timeout",
                    "storage_unavailable",
                    "storage_conflict",
                    "utk_invalid",
                    "corrupt_vault",
                ]
                .contains(&code.as_str()),
            "{}: success or a storage error, got {:?}",
            s.name,
            s.answer
        );
        if s.sent >= hung_at + Duration::from_millis(100) && s.answered <= released_at {
            assert!(
                !s.answer.is_ok(),
                "{} succeeded while the store hung",
                s.name
            );
        }
        assert!(
            s.answered - s.sent < Duration::from_secs(3),
            "{} took {:?}: the enclave's 1 s storage limit must answer it",
            s.name,
            s.answered - s.sent
        );
    }
    let hung = all
        .iter()
        .filter(|s| s.sent >= hung_at && s.answered <= released_at)
        .count();
    assert!(hung >= 2, "the hang saw load: {hung} requests");
    let recovered = recovery(&sent, released_at).expect("successes after the release");
    assert!(
        recovered < Duration::from_secs(2),
        "recovered in {recovered:?}"
    );

    let (lost, extra) = verify_durable(&mut sys, &mut users, &sent).await;
    report(
        "object store hangs 3 s (object replaced by a FIFO), released",
        &sent,
        Some(recovered),
        lost,
        extra,
    );
    assert_eq!(
        (lost, extra),
        (0, 0),
        "acknowledged-but-lost, stored-but-refused"
    );
}
