//! The fault table under a vault load: app users attesting, enrolling, unlocking and adding and
//! reading secrets while one part of the system fails and comes back, and afterwards proof that
//! nothing acknowledged was lost.
//!
//! Every request goes through one [`Requester`], so each has its own reply subject and a second
//! answer to it is counted (`duplicates`), not hidden. Durability is checked the hard way: a new
//! enclave process (nothing cached), a cold `pin.unlock` of every user, `secrets.list` compared
//! with what every `secrets.add` was answered, the last acknowledged value read back, and every
//! acknowledged enrolment opened again through KMS. A request whose answer does not say whether
//! it was stored ([`in_doubt`]: the enclave or the parent died with it, or the store did not
//! answer in time) may go either way; any other error must have stored nothing.
//!
//! `vettid-faults` prints this table; `tests/fault_table.rs` and `tests/vault_faults.rs` assert it
//! in `scripts/test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::app::{self, ReplyKey};
use crate::kms::KmsOptions;
use crate::replies::Requester;
use crate::system::{System, SystemOptions};
use crate::vault_client::{Answer, VaultUser};

/// Every request waits at most this long. The harness's parent answers every enclave call within
/// 5 s (`request_timeout_ms`), so a request unanswered after this got no answer at all.
pub const LIMIT: Duration = Duration::from_secs(8);

/// Error codes that do not say whether the request was stored: the enclave died with it, the
/// parent gave up waiting for it, or the store did not answer in time. `trusted_store_unavailable`
/// too: a change whose object landed but whose mark did not move is not acknowledged, and the
/// next load may adopt that object (docs/VAULT.md, "Writes"; app-client treats the code as
/// "outcome unknown" as well).
pub const UNCERTAIN: &[&str] = &[
    "enclave_unavailable",
    "enclave_timeout",
    "storage_timeout",
    "trusted_store_unavailable",
];

/// Whether `answer` leaves open whether its request was stored: an [`UNCERTAIN`] code, or no
/// answer at all (the parent died with the request, or nats-server was away).
pub fn in_doubt(answer: &Answer) -> bool {
    matches!(answer, Answer::Lost(_)) || UNCERTAIN.contains(&answer.code().as_str())
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// App `attestation` (a key for `pin.setup`).
    Attest,
    /// A new user's `pin.setup` (KMS `GenerateDataKey`, Argon2id, create-only write).
    Enrol,
    /// `pin.unlock` of an enrolled user (Argon2id; KMS `Decrypt` when the vault is cold).
    Unlock,
    /// `secrets.add`: a mutation.
    Add,
    /// `secrets.retrieve` of the last acknowledged secret, its value checked.
    Retrieve,
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What it was.
    pub kind: Kind,
    /// The secret's name for [`Kind::Add`]; the owner for [`Kind::Enrol`]; empty otherwise.
    pub name: String,
    /// When it was sent.
    pub sent: Instant,
    /// When its answer came (or the client gave up).
    pub answered: Instant,
    /// The answer.
    pub answer: Answer,
}

/// Shared by the load tasks and the fault: when to stop, requests out, unlocks done, and a nudge
/// when the broken part is back (so the slow streams try at once instead of at their next tick).
#[derive(Default)]
pub struct Load {
    /// Set to end the load.
    pub stop: AtomicBool,
    /// Requests sent and not yet answered.
    pub in_flight: AtomicUsize,
    /// `pin.unlock`s answered with success.
    pub unlocks: AtomicUsize,
    /// Notified when the part is back.
    pub back: Notify,
    /// When the part was broken, and when its repair began (the trusted-store rows).
    window: std::sync::Mutex<(Option<Instant>, Option<Instant>)>,
}

impl Load {
    /// Records that the part is broken from `at`.
    pub fn broken_at(&self, at: Instant) {
        self.window.lock().expect("window").0 = Some(at);
    }

    /// Records that its repair began at `at`.
    pub fn repairing_at(&self, at: Instant) {
        self.window.lock().expect("window").1 = Some(at);
    }

    /// From the part's break to the start of its repair, once both happened.
    pub fn window(&self) -> Option<(Instant, Instant)> {
        match *self.window.lock().expect("window") {
            (Some(from), Some(to)) => Some((from, to)),
            _ => None,
        }
    }

    /// Whether the part is broken now (broken, repair not begun).
    fn broken(&self) -> bool {
        matches!(*self.window.lock().expect("window"), (Some(_), None))
    }

    /// Waits (at most `limit`) until a request is out, so a fault can hit one mid-flight.
    pub async fn until_in_flight(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    }

    /// Waits (at most `limit`) until the load has unlocked `n` vaults.
    pub async fn until_unlocked(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.unlocks.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `tick`'s next tick, or less if the part comes back meanwhile: the slow streams
    /// then try at once.
    async fn tick_or_back(&self, tick: &mut tokio::time::Interval) {
        tokio::select! {
            _ = tick.tick() => {}
            () = self.back.notified() => {}
        }
    }

    async fn timed(
        &self,
        kind: Kind,
        name: String,
        call: impl std::future::Future<Output = Answer>,
    ) -> Sent {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let answer = call.await;
        let answered = Instant::now();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Sent {
            kind,
            name,
            sent,
            answered,
            answer,
        }
    }
}

/// What each enrolled user does per tick.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Time between one user's requests.
    pub pace: Duration,
    /// Every this many ticks a warm `pin.unlock` (Argon2id); `0`: never.
    pub unlock_every: u32,
    /// Every this many ticks a `secrets.retrieve`; `0`: never. Other ticks are `secrets.add`.
    pub retrieve_every: u32,
}

impl Mix {
    /// `secrets.add` only, one per `pace`.
    pub fn adds(pace: Duration) -> Self {
        Self {
            pace,
            unlock_every: 0,
            retrieve_every: 0,
        }
    }
}

/// `n` enrolled users with a credential, their vaults unlocked.
///
/// # Panics
/// If an enrolment fails.
pub async fn users(requester: &Requester, prefix: &str, n: usize) -> Vec<VaultUser> {
    let password_hash = app::phc_password_hash("fault test password");
    let mut users = Vec::new();
    for i in 0..n {
        let mut u = VaultUser::new(
            requester.clone(),
            &format!("{prefix}-{i}"),
            &password_hash,
            LIMIT,
        );
        if i == 0 {
            u.wait_answering(LIMIT).await;
        }
        u.setup(&format!("{:04}", 4000 + i))
            .await
            .expect_ok("pin.setup");
        u.create_credential().await.expect_ok("credential.create");
        users.push(u);
    }
    users
}

/// One user's load by `mix` until stopped. A `vault_locked` answer (the enclave restarted, or a
/// second host without the vault unlocked took the request) is met as an app meets it, with a
/// `pin.unlock`. A retrieved value that is not the one stored is recorded as error `wrong_value`.
pub async fn user_load(mut user: VaultUser, mix: Mix, load: Arc<Load>) -> (VaultUser, Vec<Sent>) {
    let mut sent: Vec<Sent> = Vec::new();
    let mut tick = tokio::time::interval(mix.pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    let mut last_acked: Option<(String, String)> = None;
    while !load.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        n += 1;
        let s = if mix.unlock_every > 0 && n.is_multiple_of(mix.unlock_every) {
            load.timed(Kind::Unlock, String::new(), user.unlock()).await
        } else if let (true, Some((id, name))) = (
            mix.retrieve_every > 0 && n.is_multiple_of(mix.retrieve_every),
            last_acked.clone(),
        ) {
            let reply = ReplyKey::generate();
            let mut s = load
                .timed(
                    Kind::Retrieve,
                    name.clone(),
                    user.retrieve_secret(&id, &reply),
                )
                .await;
            if let Answer::Ok(r) = &s.answer {
                let value = reply.open_json(r["encrypted_secret"].as_str().unwrap_or_default());
                if value["value"] != format!("value of {name}") {
                    s.answer =
                        Answer::Error(serde_json::json!({"type": "error", "code": "wrong_value"}));
                }
            }
            s
        } else {
            let name = format!("{}-{:04}", user.owner, sent.len());
            let value = format!("value of {name}");
            let s = load
                .timed(Kind::Add, name.clone(), user.add_secret(&name, &value))
                .await;
            if let Answer::Ok(r) = &s.answer {
                last_acked = Some((r["id"].as_str().unwrap_or_default().to_owned(), name));
            }
            s
        };
        if s.kind == Kind::Unlock && s.answer.is_ok() {
            load.unlocks.fetch_add(1, Ordering::SeqCst);
        }
        let locked = s.answer.code() == "vault_locked";
        sent.push(s);
        if locked {
            let s = load.timed(Kind::Unlock, String::new(), user.unlock()).await;
            if s.answer.is_ok() {
                load.unlocks.fetch_add(1, Ordering::SeqCst);
            }
            sent.push(s);
        }
    }
    (user, sent)
}

/// Runs [`user_load`] for every user while `fault` runs, then stops it.
pub async fn under_load(
    users: Vec<VaultUser>,
    mix: Mix,
    shared: Arc<Load>,
    fault: impl std::future::Future<Output = ()>,
) -> (Vec<VaultUser>, Vec<Vec<Sent>>) {
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| tokio::spawn(user_load(u, mix, shared.clone())))
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

/// Answers by code (`ok` for successes, `lost: …` for none).
pub fn codes<'a>(sent: impl IntoIterator<Item = &'a Sent>) -> BTreeMap<String, usize> {
    let mut codes = BTreeMap::new();
    for s in sent {
        let code = match s.answer.code() {
            c if c.is_empty() => "ok".to_owned(),
            c if c.starts_with("lost") => "unanswered".to_owned(),
            c => c,
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    codes
}

/// The first success among requests sent after `from`, as time from `from` to its answer.
pub fn recovery<'a>(sent: impl IntoIterator<Item = &'a Sent>, from: Instant) -> Option<Duration> {
    sent.into_iter()
        .filter(|s| s.sent >= from && s.answer.is_ok())
        .map(|s| s.answered - from)
        .min()
}

/// What reading every vault back found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// Acknowledged mutations (secrets, enrolments) missing, or stored under another id.
    pub lost: usize,
    /// Refused with a definite error, yet stored: the client was told "not done" wrongly.
    pub refused_but_stored: usize,
    /// Answered [`in_doubt`] and in fact stored (allowed: the client must check).
    pub in_doubt_stored: usize,
}

/// A new enclave process, a cold unlock of every user, and `secrets.list` against the answers
/// (see the module docs). `enrolled` are the users whose `pin.setup` was answered, with that
/// answer: an acknowledged one must open through KMS again, a refused one must not exist.
///
/// # Panics
/// If the system does not come back, or a user cannot unlock or list.
pub async fn verify_durable(
    sys: &mut System,
    users: &mut [VaultUser],
    sent: &[Vec<Sent>],
    enrolled: &[(VaultUser, Answer)],
) -> Durability {
    tokio::task::block_in_place(|| sys.start_enclave());
    assert!(sys.wait_healthy(LIMIT), "parent did not reconnect");
    users[0].wait_answering(LIMIT).await;
    let mut d = Durability::default();
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
        let adds: Vec<&Sent> = sent.iter().filter(|s| s.kind == Kind::Add).collect();
        for s in &adds {
            let stored = listed.get(&s.name);
            match &s.answer {
                Answer::Ok(r) => {
                    if stored.map(String::as_str) != r["id"].as_str() {
                        d.lost += 1;
                    }
                }
                a if in_doubt(a) => d.in_doubt_stored += usize::from(stored.is_some()),
                _ => d.refused_but_stored += usize::from(stored.is_some()),
            }
        }
        let known: BTreeSet<&str> = adds.iter().map(|s| s.name.as_str()).collect();
        assert!(
            listed.keys().all(|n| known.contains(n.as_str())),
            "a secret no request named is stored: {listed:?}"
        );
        // The values too, not only the names: the last acknowledged secret reads back.
        if let Some(last) = adds.iter().rev().find(|s| s.answer.is_ok()) {
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
    // An enrolled vault opens through KMS again: loading it answers `utk_invalid` (the probe's
    // UTK was never minted) rather than `not_enrolled`. No Argon2id, no attempt spent.
    for (user, setup) in enrolled {
        let exists = match user.load_locked().await.code().as_str() {
            "utk_invalid" => true,
            "not_enrolled" => false,
            other => panic!("{}: loading the vault answered {other}", user.owner),
        };
        match setup {
            Answer::Ok(_) => d.lost += usize::from(!exists),
            a if in_doubt(a) => d.in_doubt_stored += usize::from(exists),
            _ => d.refused_but_stored += usize::from(exists),
        }
    }
    d
}

/// Breaks (or repairs) the fs object store: its root is replaced by a file, so every read and
/// write fails at once.
///
/// # Panics
/// If the root cannot be moved.
pub fn objects_broken(sys: &System, broken: bool) {
    let root = sys.storage_root();
    let aside = root.with_extension("aside");
    if broken {
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
    } else {
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
    }
}

/// Makes `owner`'s stored object hang: the file is replaced by a FIFO with no writer, so the
/// parent's read (under its per-vault lock) blocks until [`store_unhang`].
///
/// # Panics
/// If the object cannot be moved or `mkfifo` fails.
pub fn store_hang(sys: &System, owner: &str) -> PathBuf {
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
///
/// # Panics
/// If the files cannot be moved.
pub fn store_unhang(object: &Path) {
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
fn store_lock(object: &Path) -> std::fs::File {
    let lock = PathBuf::from(format!("{}lock", object.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .unwrap();
    file.lock().unwrap();
    file
}

/// A part that fails while the vault load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// nats-server killed, restarted after the outage.
    NatsRestart,
    /// The enclave killed (SIGKILL) with requests in flight, restarted after the outage (cold).
    EnclaveKill,
    /// The parent stopped with SIGTERM (drain), restarted.
    ParentTerm,
    /// The parent killed (SIGKILL) with requests in flight, restarted.
    ParentKill,
    /// The object store fails every call (its root replaced by a file), repaired.
    StoreErrors,
    /// Every load user's object hangs (a FIFO) past the enclave's storage limit, released.
    StoreHang,
    /// A second host on the same NATS queue group, bucket and KMS serves half the requests from
    /// its own cached copies, so writes conflict; then it leaves.
    StoreConflict,
    /// The KMS key policy no longer lists this enclave's PCR0 (the KMS restarted with it),
    /// restored.
    KmsDeny,
    /// The KMS key disabled, enabled again.
    KmsDisabled,
    /// The KMS process stopped (SIGSTOP: connections accepted, nothing answered), continued.
    KmsHang,
    /// The trusted store's DynamoDB (the row's own stand-in) SIGKILLed, restarted on the same
    /// port with the same tables.
    TrustedDown,
    /// The trusted store answers every call [`TRUSTED_SLOW`] late (past the enclave's 1 s
    /// attempt timeout), then on time again.
    TrustedSlow,
    /// The trusted store throttles every call (`ProvisionedThroughputExceededException`,
    /// `ThrottlingException`), then not.
    TrustedThrottled,
    /// The trusted store refuses the sealed principal (`AccessDeniedException`), then accepts it.
    TrustedDenied,
    /// The host's path to the table resets every connection (open and new), then carries them.
    TrustedDropped,
}

/// How late [`Fault::TrustedSlow`]'s table answers: past the enclave's attempt timeout (1 s), so
/// every attempt gives up, yet short of its operation budget (3 s), so the SDK retries.
pub const TRUSTED_SLOW: Duration = Duration::from_millis(1500);

impl Fault {
    /// Every fault, in table order.
    pub const ALL: [Fault; 15] = [
        Fault::NatsRestart,
        Fault::EnclaveKill,
        Fault::ParentTerm,
        Fault::ParentKill,
        Fault::StoreErrors,
        Fault::StoreHang,
        Fault::StoreConflict,
        Fault::KmsDeny,
        Fault::KmsDisabled,
        Fault::KmsHang,
        Fault::TrustedDown,
        Fault::TrustedSlow,
        Fault::TrustedThrottled,
        Fault::TrustedDenied,
        Fault::TrustedDropped,
    ];

    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::NatsRestart => "nats-server stopped, restarted",
            Fault::EnclaveKill => "enclave SIGKILL, restarted (cold)",
            Fault::ParentTerm => "parent SIGTERM (drain), restarted",
            Fault::ParentKill => "parent SIGKILL mid-request, restarted",
            Fault::StoreErrors => "object store fails every call, repaired",
            Fault::StoreHang => "object store hangs past the deadline, released",
            Fault::StoreConflict => {
                "object store conflicts (a second host writes the same vaults), it leaves"
            }
            Fault::KmsDeny => "KMS denies (PCR0 not in the key policy), policy restored",
            Fault::KmsDisabled => "KMS key disabled, enabled",
            Fault::KmsHang => "KMS hangs 6 s (SIGSTOP), continued",
            Fault::TrustedDown => {
                "trusted store (DynamoDB) SIGKILL, restarted on its port with its data"
            }
            Fault::TrustedSlow => {
                "trusted store answers 1.5 s late (attempt timeout 1 s), then on time"
            }
            Fault::TrustedThrottled => "trusted store throttles every call, then not",
            Fault::TrustedDenied => {
                "trusted store denies the sealed principal (AccessDenied), then accepts it"
            }
            Fault::TrustedDropped => "host resets the table's connections, then carries them",
        }
    }

    /// By `--fault` name: `nats`, `enclave`, `parent-term`, `parent-kill`, `store-errors`,
    /// `store-hang`, `store-conflict`, `kms-deny`, `kms-disabled`, `kms-hang`, `trusted-down`,
    /// `trusted-slow`, `trusted-throttled`, `trusted-denied`, `trusted-dropped`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "nats" => Fault::NatsRestart,
            "enclave" => Fault::EnclaveKill,
            "parent-term" => Fault::ParentTerm,
            "parent-kill" => Fault::ParentKill,
            "store-errors" => Fault::StoreErrors,
            "store-hang" => Fault::StoreHang,
            "store-conflict" => Fault::StoreConflict,
            "kms-deny" => Fault::KmsDeny,
            "kms-disabled" => Fault::KmsDisabled,
            "kms-hang" => Fault::KmsHang,
            "trusted-down" => Fault::TrustedDown,
            "trusted-slow" => Fault::TrustedSlow,
            "trusted-throttled" => Fault::TrustedThrottled,
            "trusted-denied" => Fault::TrustedDenied,
            "trusted-dropped" => Fault::TrustedDropped,
            _ => return None,
        })
    }

    /// Whether the fault can take requests with it so that nobody can answer them: core NATS
    /// keeps nothing, so a request nats-server or a SIGKILLed parent held is gone, and its client
    /// waits out its own limit.
    pub fn takes_requests(self) -> bool {
        matches!(self, Fault::NatsRestart | Fault::ParentKill)
    }

    /// Whether the row breaks the trusted store (runs on a system with its own stand-in, and
    /// probes PINs while it is broken).
    pub fn trusted(self) -> bool {
        matches!(
            self,
            Fault::TrustedDown
                | Fault::TrustedSlow
                | Fault::TrustedThrottled
                | Fault::TrustedDenied
                | Fault::TrustedDropped
        )
    }

    /// Extra load time after the part is back: for a fault that [takes requests](Self::takes_requests),
    /// the load's sequential clients sit on those until [`LIMIT`], and only then send the
    /// requests that show the recovery. A slow or throttling table holds each request sent before
    /// it was back for up to the enclave's 3 s operation budget.
    fn lingering(self) -> Duration {
        if self.takes_requests() {
            LIMIT
        } else if matches!(self, Fault::TrustedSlow | Fault::TrustedThrottled) {
            TRUSTED_LINGER
        } else {
            Duration::ZERO
        }
    }

    /// The error codes this fault may cause. Anything else in the row is a failure.
    pub fn expected_codes(self) -> &'static [&'static str] {
        match self {
            // Requests published while the server was away get no answer (core NATS keeps
            // nothing): they are counted as unanswered. Once it is back, requests that come
            // before the parent has resubscribed are answered `no_responders` by the server.
            Fault::NatsRestart => &["no_responders"],
            Fault::EnclaveKill => &["enclave_unavailable", "vault_locked", "utk_invalid"],
            Fault::ParentTerm | Fault::ParentKill => &["no_responders", "draining"],
            Fault::StoreErrors => &["storage_unavailable"],
            // `corrupt_vault` and `not_enrolled`: a reload blocked on the FIFO is released with
            // zero bytes, or reads in the instant the harness has moved the FIFO away and not yet
            // put the object back (how this harness makes the store hang; nothing is changed).
            // `utk_invalid`: a retry of a request whose first try landed after all.
            Fault::StoreHang => &[
                "storage_timeout",
                "storage_unavailable",
                "storage_conflict",
                "corrupt_vault",
                "not_enrolled",
                "utk_invalid",
            ],
            // `vault_locked`: the second host has not unlocked the vault yet.
            // `attestation_key_required`: an enrolment attested on one host and sent its
            // `pin.setup` to the other (attestation keys live in one enclave's memory).
            Fault::StoreConflict => &[
                "storage_conflict",
                "vault_locked",
                "attestation_key_required",
            ],
            // The policy changes by restarting the local KMS: a call in that instant finds no
            // KMS (`KMSUnavailable`).
            Fault::KmsDeny => &["KMSAccessDenied", "KMSUnavailable"],
            Fault::KmsDisabled => &["KMSKeyDisabled"],
            Fault::KmsHang => &["KMSUnavailable"],
            // What the vault answers when the table does not (issue 12): nothing acknowledged,
            // no PIN attempt evaluated. `deadline_exceeded` when the request's deadline left no
            // time for the call. `utk_invalid`: a UTK whose request was answered
            // `trusted_store_unavailable` after its object landed, which the next load adopted
            // (the app, like this harness, keeps such a UTK as its last choice). `invalid_pin`:
            // the wrong-PIN probe ([`FailClosed`]) sent while the table was broken and evaluated
            // once it was back (the row fails if one is answered while it is broken).
            Fault::TrustedDown
            | Fault::TrustedSlow
            | Fault::TrustedThrottled
            | Fault::TrustedDenied
            | Fault::TrustedDropped => &[
                "trusted_store_unavailable",
                "deadline_exceeded",
                "utk_invalid",
                "invalid_pin",
            ],
        }
    }

    /// Codes in `row` neither expected for this fault nor [`UNCERTAIN`].
    pub fn unexpected_codes(self, row: &Row) -> Vec<String> {
        row.codes
            .keys()
            .filter(|c| {
                !matches!(c.as_str(), "ok" | "unanswered")
                    && !self.expected_codes().contains(&c.as_str())
            })
            .cloned()
            .collect()
    }

    /// The system this row runs on: the vault with a local KMS; for the hang, an enclave that
    /// waits at most 1 s for storage (the parent's own limit is 5 s), so the enclave answers;
    /// for the trusted-store rows, a trusted store in a stand-in of the row's own.
    pub fn system(self) -> System {
        let enclave_args = match self {
            Fault::StoreHang => vec!["--storage-timeout-secs".into(), "1".into()],
            _ => Vec::new(),
        };
        System::start(SystemOptions {
            kms: Some(KmsOptions::default()),
            enclave_args,
            trusted_store: self.trusted(),
            own_stand_in: self.trusted(),
            ..SystemOptions::default()
        })
    }
}

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

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What failed.
    pub fault: &'static str,
    /// Requests by kind.
    pub requests: BTreeMap<Kind, usize>,
    /// Answers by code, all kinds (`ok`, `unanswered`, error codes).
    pub codes: BTreeMap<String, usize>,
    /// Requests answered more than once.
    pub duplicates: usize,
    /// What reading back found.
    pub durability: Durability,
    /// From the part being back until the last failure among requests sent after that was
    /// answered (or the first success, if none failed): every request sent later succeeded.
    /// `None` if none did.
    pub recovery: Option<Duration>,
    /// The slowest answer.
    pub slowest: Duration,
    /// What the row's logs show (the conflicts and reloads of the conflict row), or which kinds
    /// of request never succeeded after the part was back (too rare to have a try after the
    /// recovery window).
    pub note: String,
    /// For the trusted-store rows: what vault requests sent and answered while the table was
    /// broken were answered.
    pub fail_closed: Option<FailClosed>,
}

/// Requests sent after the trusted store broke and answered before its repair began: while the
/// table could not be read or written, nothing may be acknowledged and no PIN evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailClosed {
    /// `pin.unlock`s (the load's and the PIN probes') answered in the window.
    pub unlocks: usize,
    /// Of those, the probe's wrong PINs.
    pub wrong_pins: usize,
    /// Unlocks answered `unlocked` (must be 0).
    pub unlocked: usize,
    /// Unlocks answered `invalid_pin` (must be 0: the attempt would have been evaluated).
    pub invalid_pin: usize,
    /// Other vault requests (enrolment, add, retrieve) answered with success (must be 0).
    pub acknowledged: usize,
}

impl FailClosed {
    /// Counts `all` against the window `(from, to)`.
    pub fn count<'a>(
        all: impl IntoIterator<Item = &'a Sent>,
        (from, to): (Instant, Instant),
    ) -> Self {
        let mut f = Self::default();
        for s in all {
            if s.sent < from || s.answered > to || s.kind == Kind::Attest {
                continue;
            }
            if s.kind == Kind::Unlock {
                f.unlocks += 1;
                f.wrong_pins += usize::from(s.name == WRONG_PIN_PROBE);
                f.unlocked += usize::from(s.answer.is_ok());
                f.invalid_pin += usize::from(s.answer.code() == "invalid_pin");
            } else {
                f.acknowledged += usize::from(s.answer.is_ok());
            }
        }
        f
    }

    /// What breaks the promise: anything served, or too few probes to tell.
    pub fn failures(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if self.wrong_pins == 0 || self.unlocks <= self.wrong_pins {
            bad.push(format!(
                "too few PIN probes answered while the table was broken: {self:?}"
            ));
        }
        if self.unlocked > 0 {
            bad.push(format!(
                "{} unlocked while the table was broken",
                self.unlocked
            ));
        }
        if self.invalid_pin > 0 {
            bad.push(format!(
                "{} PINs evaluated (invalid_pin) while the table was broken",
                self.invalid_pin
            ));
        }
        if self.acknowledged > 0 {
            bad.push(format!(
                "{} requests acknowledged while the table was broken",
                self.acknowledged
            ));
        }
        bad
    }
}

/// [`Sent::name`] of a probe's `pin.unlock` with the enrolled PIN.
pub const RIGHT_PIN_PROBE: &str = "probe: right PIN";
/// [`Sent::name`] of a probe's `pin.unlock` with a wrong PIN.
pub const WRONG_PIN_PROBE: &str = "probe: wrong PIN";

/// While `load`'s part is broken, back-to-back `pin.unlock`s of `user` (not one of the load's
/// users) with `pin` (named `name`); done when the load stops. Two run side by side, one with
/// the enrolled PIN and one with a wrong PIN on another user, so each has an answer within an
/// outage even where every call takes the enclave's whole 3 s budget.
async fn pin_probes(
    mut user: VaultUser,
    name: &'static str,
    pin: &'static str,
    load: Arc<Load>,
) -> Vec<Sent> {
    let mut out = Vec::new();
    while !load.stop.load(Ordering::SeqCst) {
        if !load.broken() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        out.push(
            load.timed(Kind::Unlock, name.into(), user.unlock_with(pin))
                .await,
        );
    }
    out
}

/// How long after the part is back the service must be whole again.
pub const RECOVERY: Duration = Duration::from_secs(2);

impl Row {
    /// What in this row breaks the table's promises: a duplicate answer, an acknowledged
    /// mutation lost, a refused one stored, an error code the fault does not explain, recovery
    /// slower than [`RECOVERY`], or a request with no answer where a live part could have given
    /// one (only nats-server's restart and the parent's SIGKILL take requests with them).
    pub fn failures(&self, fault: Fault) -> Vec<String> {
        let mut bad = Vec::new();
        if self.duplicates > 0 {
            bad.push(format!("{} answered twice", self.duplicates));
        }
        if self.durability.lost > 0 {
            bad.push(format!("{} acknowledged but lost", self.durability.lost));
        }
        if self.durability.refused_but_stored > 0 {
            bad.push(format!(
                "{} refused but stored",
                self.durability.refused_but_stored
            ));
        }
        if fault.trusted() {
            match &self.fail_closed {
                Some(f) => bad.extend(f.failures()),
                None => bad.push("the table's outage window was not recorded".into()),
            }
        }
        let unexpected = fault.unexpected_codes(self);
        if !unexpected.is_empty() {
            bad.push(format!("unexpected codes {unexpected:?}"));
        }
        match self.recovery {
            Some(r) if r <= RECOVERY => {}
            other => bad.push(format!("recovery {other:?}")),
        }
        if self.unanswered() > 0 && !fault.takes_requests() {
            bad.push(format!("{} unanswered", self.unanswered()));
        }
        bad
    }

    /// Requests sent.
    pub fn total(&self) -> usize {
        self.requests.values().sum()
    }

    /// Requests with no answer within [`LIMIT`].
    pub fn unanswered(&self) -> usize {
        self.codes.get("unanswered").copied().unwrap_or(0)
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

/// How long after `back` the service was whole again: until the answer to the last failed request
/// sent after `back` (a part coming back can take a few failures with it: requests before the
/// parent has resubscribed, a reload after a conflict, a `vault_locked` before the cold unlock),
/// or until the first success if none failed. Every request sent after that point succeeded.
/// `None` if no request sent after it succeeded.
fn recovered_after(all: &[&Sent], back: Instant) -> Option<Duration> {
    let after: Vec<&Sent> = all.iter().copied().filter(|s| s.sent >= back).collect();
    let last_failure = after
        .iter()
        .filter(|s| !s.answer.is_ok())
        .map(|s| s.answered)
        .max();
    match last_failure {
        None => recovery(after, back),
        Some(t) => after
            .iter()
            .any(|s| s.sent >= t && s.answer.is_ok())
            .then(|| t - back),
    }
}

/// App attestations every `every` until stopped, each in its own task: attestations need no
/// order, so one that never gets an answer does not hold up the next, and the stream keeps
/// probing through a fault that takes requests with it.
async fn attest_stream(requester: Requester, every: Duration, load: Arc<Load>) -> Vec<Sent> {
    let user = Arc::new(VaultUser::new(requester, "ft-attest", "", LIMIT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !load.stop.load(Ordering::SeqCst) {
        load.tick_or_back(&mut tick).await;
        let (user, load) = (user.clone(), load.clone());
        tasks.spawn(async move { load.timed(Kind::Attest, String::new(), user.attest()).await });
    }
    tasks.join_all().await
}

/// A new user enrols every `every` until stopped; each with its `pin.setup` answer.
async fn enrol_stream(
    requester: Requester,
    every: Duration,
    load: Arc<Load>,
) -> Vec<(VaultUser, Sent)> {
    let hash = app::phc_password_hash("fault test password");
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !load.stop.load(Ordering::SeqCst) {
        load.tick_or_back(&mut tick).await;
        let owner = format!("ft-new-{}", out.len());
        let mut user = VaultUser::new(requester.clone(), &owner, &hash, LIMIT);
        let s = load.timed(Kind::Enrol, owner, user.setup("2580")).await;
        out.push((user, s));
    }
    out
}

/// Breaks `fault`'s part, waits `outage`, repairs it.
/// Returns the second host's enclave log for [`Fault::StoreConflict`] (empty otherwise).
async fn inject(
    sys: &mut System,
    fault: Fault,
    outage: Duration,
    owners: &[String],
    load: &Load,
) -> String {
    use tokio::task::block_in_place as block;
    match fault {
        Fault::NatsRestart => {
            block(|| sys.nats.stop());
            tokio::time::sleep(outage).await;
            block(|| sys.nats.restart());
        }
        Fault::EnclaveKill => {
            load.until_in_flight(Duration::from_secs(2)).await;
            block(|| sys.kill_enclave());
            tokio::time::sleep(outage).await;
            block(|| sys.start_enclave());
        }
        Fault::ParentTerm => {
            if let Some(p) = sys.parent.as_mut() {
                p.signal("TERM");
                block(|| p.wait_exit(Duration::from_secs(15)));
            }
            tokio::time::sleep(outage).await;
            block(|| sys.start_parent());
        }
        Fault::ParentKill => {
            load.until_in_flight(Duration::from_secs(2)).await;
            if let Some(mut p) = sys.parent.take() {
                block(|| p.kill());
            }
            tokio::time::sleep(outage).await;
            block(|| sys.start_parent());
        }
        Fault::StoreErrors => {
            objects_broken(sys, true);
            tokio::time::sleep(outage).await;
            objects_broken(sys, false);
        }
        Fault::StoreHang => {
            let hung: Vec<PathBuf> = owners.iter().map(|o| store_hang(sys, o)).collect();
            tokio::time::sleep(outage).await;
            for h in &hung {
                store_unhang(h);
            }
        }
        Fault::StoreConflict => {
            let first = &*sys;
            let mut second = block(|| {
                System::start_second_host(
                    first,
                    SystemOptions {
                        kms: Some(KmsOptions::default()),
                        storage_root: Some(first.storage_root()),
                        ..SystemOptions::default()
                    },
                )
            });
            tokio::time::sleep(outage).await;
            // It leaves as an operator would stop it: drained, every request it took answered.
            if let Some(p) = second.parent.as_mut() {
                p.signal("TERM");
                block(|| p.wait_exit(Duration::from_secs(15)));
            }
            let log = second
                .enclave
                .as_ref()
                .map(crate::Child::log)
                .unwrap_or_default();
            drop(second);
            return log;
        }
        Fault::KmsDeny => {
            let deny = KmsOptions {
                allow_pcr0: Some(vec!["ab".repeat(48)]),
                ..KmsOptions::default()
            };
            let kms = sys.kms.as_mut().expect("the row's system has a KMS");
            block(|| kms.restart(deny));
            tokio::time::sleep(outage).await;
            block(|| kms.restart(KmsOptions::default()));
        }
        Fault::KmsDisabled => {
            let admin = sys
                .kms
                .as_ref()
                .expect("the row's system has a KMS")
                .client();
            admin
                .disable_key()
                .key_id(crate::kms::KEY_ID)
                .send()
                .await
                .expect("DisableKey");
            tokio::time::sleep(outage).await;
            admin
                .enable_key()
                .key_id(crate::kms::KEY_ID)
                .send()
                .await
                .expect("EnableKey");
        }
        Fault::KmsHang => {
            let kms = sys.kms.as_ref().expect("the row's system has a KMS");
            kms.child.signal("STOP");
            tokio::time::sleep(outage.max(KMS_HANG)).await;
            kms.child.signal("CONT");
        }
        Fault::TrustedDown
        | Fault::TrustedSlow
        | Fault::TrustedThrottled
        | Fault::TrustedDenied
        | Fault::TrustedDropped => {
            block(|| trusted_broken(sys, fault, true));
            load.broken_at(Instant::now());
            let outage = outage.max(TRUSTED_OUTAGE);
            tokio::time::sleep(outage).await;
            load.repairing_at(Instant::now());
            block(|| trusted_broken(sys, fault, false));
        }
    }
    String::new()
}

/// Extra load after a slow or throttling table is back ([`Fault::lingering`]): the enclave's
/// operation budget for one trusted-store call.
pub const TRUSTED_LINGER: Duration = Duration::from_secs(3);

/// A trusted-store outage lasts at least this long: a call may take the enclave's whole 3 s
/// budget (a slow table, or the SDK's backoff between attempts on a refused connection), so a
/// shorter outage may see no probe both sent and answered in it, and the fail-closed check
/// ([`FailClosed`]) would have nothing to count.
pub const TRUSTED_OUTAGE: Duration = Duration::from_secs(5);

/// Breaks (`true`) or repairs (`false`) the trusted store for `fault` (one of
/// [`Fault::trusted`]), on the row's own stand-in.
///
/// # Panics
/// If the system has no stand-in of its own, or the fault is not a trusted-store one.
pub fn trusted_broken(sys: &mut System, fault: Fault, broken: bool) {
    let s = sys
        .stand_in
        .as_mut()
        .expect("the row's system has its own stand-in");
    match (fault, broken) {
        (Fault::TrustedDown, true) => s.dynamo.kill(),
        (Fault::TrustedDown, false) => s.dynamo.restart(),
        (Fault::TrustedSlow, true) => s
            .dynamo
            .set_fault(Some(&format!("delay {}", TRUSTED_SLOW.as_millis()))),
        (Fault::TrustedThrottled, true) => s.dynamo.set_fault(Some("throttle")),
        (Fault::TrustedDenied, true) => s.dynamo.set_fault(Some("deny")),
        (Fault::TrustedSlow | Fault::TrustedThrottled | Fault::TrustedDenied, false) => {
            s.dynamo.set_fault(None);
        }
        (Fault::TrustedDropped, cut) => s.cut.set(cut),
        (other, _) => panic!("{other:?} is not a trusted-store fault"),
    }
}

/// The KMS hang lasts at least this long: past the harness parent's 5 s deadline, so the
/// enclave's own bound on KMS calls (the parent's deadline, which the enclave applies to them) is
/// what answers the requests waiting on it.
pub const KMS_HANG: Duration = Duration::from_secs(6);

/// Renders rows as a markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| fault | requests (attest/enrol/unlock/add/read) | ok | error replies | unanswered | duplicates | acknowledged but lost | refused but stored | in doubt, stored | recovery | slowest |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let kinds = [
            Kind::Attest,
            Kind::Enrol,
            Kind::Unlock,
            Kind::Add,
            Kind::Retrieve,
        ]
        .map(|k| r.requests.get(&k).copied().unwrap_or(0).to_string())
        .join("/");
        let errors: Vec<String> = r
            .codes
            .iter()
            .filter(|(c, _)| *c != "ok" && *c != "unanswered")
            .map(|(c, n)| format!("{n} `{c}`"))
            .collect();
        s += &format!(
            "| {} | {} ({kinds}) | {} | {} | {} | {} | {} | {} | {} | {} | {} ms |\n",
            if r.note.is_empty() {
                r.fault.to_owned()
            } else {
                format!("{} ({})", r.fault, r.note)
            },
            r.total(),
            r.codes.get("ok").copied().unwrap_or(0),
            if errors.is_empty() {
                "–".into()
            } else {
                errors.join(", ")
            },
            r.unanswered(),
            r.duplicates,
            r.durability.lost,
            r.durability.refused_but_stored,
            r.durability.in_doubt_stored,
            r.recovery
                .map_or_else(|| "none".into(), |d| format!("{} ms", d.as_millis())),
            r.slowest.as_millis(),
        );
    }
    s
}
