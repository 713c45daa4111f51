//! The table's rows: [`Fault`], each part that can fail, with its name, its command-line name,
//! the system it runs on, how long the load lingers after it, and the error codes it explains.
//!
//! Separate because this is what each row promises, to be reviewed apart from how the break is
//! made (`inject.rs`) and how a row is judged against it ([`Row::failures`]).

use std::time::Duration;

use super::{Row, LIMIT};
use crate::kms::KmsOptions;
use crate::system::{System, SystemOptions};

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
    /// The trusted store answers every call [`TRUSTED_SLOW`](super::TRUSTED_SLOW) late (past the
    /// enclave's 1 s attempt timeout), then on time again.
    TrustedSlow,
    /// The trusted store throttles every call (`ProvisionedThroughputExceededException`,
    /// `ThrottlingException`), then not.
    TrustedThrottled,
    /// The trusted store refuses the sealed principal (`AccessDeniedException`), then accepts it.
    TrustedDenied,
    /// The host's path to the table resets every connection (open and new), then carries them.
    TrustedDropped,
}

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
    pub(super) fn lingering(self) -> Duration {
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

    /// Codes in `row` other than `ok`, `unanswered` and the ones expected for this fault. An
    /// in-doubt code ([`UNCERTAIN`](super::UNCERTAIN)) the row does not expect counts too: it
    /// is in doubt, not harmless.
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

/// Extra load after a slow or throttling table is back ([`Fault::lingering`]): the enclave's
/// operation budget for one trusted-store call.
pub const TRUSTED_LINGER: Duration = Duration::from_secs(3);
