//! The vault load a row runs: each enrolled user's mix of adds, reads and warm unlocks
//! ([`Mix`], [`user_load`]), the attestation and enrolment streams beside it, and the
//! trusted-store rows' PIN probes, every request timed into a [`Sent`] through the one [`Load`]
//! they share with the fault.
//!
//! Separate because it is the only code that sends requests: what breaks, how the answers are
//! judged and how the table is printed live elsewhere, and `tests/vault_faults.rs` and
//! [`crate::load`] drive this load (or its users) without the table.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Kind, Sent, LIMIT};
use crate::app::{self, ReplyKey};
use crate::replies::Requester;
use crate::vault_client::{Answer, VaultUser};

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

/// [`Sent::name`] of a probe's `pin.unlock` with the enrolled PIN.
pub const RIGHT_PIN_PROBE: &str = "probe: right PIN";
/// [`Sent::name`] of a probe's `pin.unlock` with a wrong PIN.
pub const WRONG_PIN_PROBE: &str = "probe: wrong PIN";

/// While `load`'s part is broken, back-to-back `pin.unlock`s of `user` (not one of the load's
/// users) with `pin` (named `name`); done when the load stops. Two run side by side, one with
/// the enrolled PIN and one with a wrong PIN on another user, so each has an answer within an
/// outage even where every call takes the enclave's whole 3 s budget.
pub(super) async fn pin_probes(
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

/// App attestations every `every` until stopped, each in its own task: attestations need no
/// order, so one that never gets an answer does not hold up the next, and the stream keeps
/// probing through a fault that takes requests with it.
pub(super) async fn attest_stream(
    requester: Requester,
    every: Duration,
    load: Arc<Load>,
) -> Vec<Sent> {
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
pub(super) async fn enrol_stream(
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
