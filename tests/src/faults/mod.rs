//! The fault table under a vault load: app users attesting, enrolling, unlocking and adding and
//! reading secrets while one part of the system fails and comes back, and afterwards proof that
//! nothing acknowledged was lost.
//!
//! Every request goes through one [`Requester`](crate::replies::Requester), so each has its own
//! reply subject and a second answer to it is counted (`duplicates`), not hidden. Durability is
//! checked the hard way: a new enclave process (nothing cached), a cold `pin.unlock` of every
//! user, `secrets.list` compared with what every `secrets.add` was answered, the last
//! acknowledged value read back, and every acknowledged enrolment opened again through KMS. A
//! request whose answer does not say whether it was stored ([`in_doubt`]: the enclave or the
//! parent died with it, or the store did not answer in time) may go either way; any other error
//! must have stored nothing.
//!
//! `vettid-faults` prints this table; `tests/fault_table.rs` and `tests/vault_faults.rs` assert it
//! in `scripts/test`.
//!
//! One part per file, each readable without the others: `fault.rs` the rows (what fails, which
//! codes it explains, the system it runs on); `workload.rs` the load, the only code that sends
//! requests; `inject.rs` how each part is broken and repaired, the only code that reaches into
//! the running system; `durability.rs` the read-back; `row.rs` what a row measured and which of it
//! breaks the table's promises; `report.rs` the markdown table; `run.rs` one row from start to
//! end, the one file that uses all of them. What they all share is here: the request record
//! ([`Kind`], [`Sent`]), the client's limit and the codes that leave a request in doubt. Every
//! public item is re-exported here, so callers name `vettid_tests::faults::…` and never a file.

use std::time::{Duration, Instant};

use crate::vault_client::Answer;

mod durability;
mod fault;
mod inject;
mod report;
mod row;
mod run;
mod workload;

pub use durability::{verify_durable, Durability};
pub use fault::{Fault, TRUSTED_LINGER};
pub use inject::{
    objects_broken, store_hang, store_unhang, trusted_broken, KMS_HANG, TRUSTED_OUTAGE,
    TRUSTED_SLOW,
};
pub use report::markdown;
pub use row::{codes, recovery, FailClosed, Row, RECOVERY};
pub use run::{run, trusted_log_codes, Plan};
pub use workload::{under_load, user_load, users, Load, Mix, RIGHT_PIN_PROBE, WRONG_PIN_PROBE};

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
