//! CLI failures, each with its own exit code so scripts can tell them apart: 1 a failed check
//! (verification, or `vettid health` DEGRADED/DOWN), 2-7 the enclave could not be asked (no
//! responders, timeout, bad reply, error reply, NATS unreachable, other), 64 bad flags or files.

/// Exit code of every usage error, bad flags included (`EX_USAGE` of sysexits.h).
pub const EX_USAGE: u8 = 64;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flag values.
    #[error("{0}")]
    Usage(String),
    /// Cannot reach NATS.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// Nobody subscribes to the subject: the parent is not running or not subscribed.
    #[error("no responders on {0}: is vettid-parent running and connected to this NATS?")]
    NoResponders(String),
    /// No reply in time.
    #[error("no reply on {subject} within {ms} ms")]
    Timeout {
        /// Subject.
        subject: String,
        /// Timeout.
        ms: u64,
    },
    /// The reply is not what the enclave sends.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The enclave or parent answered with an error.
    #[error("enclave error: {0}")]
    Enclave(String),
    /// `vettid health` found the system degraded or down; the text is the verdict and why.
    #[error("{0}")]
    Unhealthy(String),
    /// The document did not verify.
    #[error("verification failed: {0}")]
    Verify(String),
    /// Anything else (files, runtime).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// Process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Verify(_) | CliError::Unhealthy(_) => 1,
            CliError::NoResponders(_) => 2,
            CliError::Timeout { .. } => 3,
            CliError::BadReply(_) => 4,
            CliError::Enclave(_) => 5,
            CliError::Connect { .. } => 6,
            CliError::Other(_) => 7,
            CliError::Usage(_) => EX_USAGE,
        }
    }
}
