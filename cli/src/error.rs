//! CLI failures, each with its own exit code so scripts can tell them apart.

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
    /// The enclave is up but reports itself unhealthy.
    #[error("enclave reports unhealthy")]
    Unhealthy,
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
            CliError::Verify(_) | CliError::Unhealthy => 1,
            CliError::NoResponders(_) => 2,
            CliError::Timeout { .. } => 3,
            CliError::BadReply(_) => 4,
            CliError::Enclave(_) => 5,
            CliError::Connect { .. } => 6,
            CliError::Other(_) => 7,
            CliError::Usage(_) => 64,
        }
    }
}
