//! `[nats.enrollment_stream]`: whether the parent creates the `ENROLLMENT` stream, and its limits.

use std::time::Duration;

use serde::Deserialize;

/// The stream's name. Not configurable: apps and VettID's driver name it.
pub const STREAM_NAME: &str = "ENROLLMENT";

/// The subjects it captures, as v1 created it: app answers and app requests.
pub const STREAM_SUBJECTS: [&str; 2] = ["OwnerSpace.*.forApp.>", "OwnerSpace.*.forVault.>"];

/// Where the stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStorage {
    /// On the NATS server's disk: the answers outlive a server restart (v1's choice).
    File,
    /// In the server's memory.
    Memory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EnrollmentStreamFile {
    create: bool,
    max_age_secs: u64,
    max_bytes: u64,
    max_msg_bytes: u64,
    storage: StreamStorage,
    replicas: usize,
    check_interval_secs: u64,
}

impl Default for EnrollmentStreamFile {
    fn default() -> Self {
        Self {
            create: true,
            max_age_secs: 30 * 60,
            max_bytes: 256 * 1024 * 1024,
            max_msg_bytes: 1024 * 1024,
            storage: StreamStorage::File,
            replicas: 1,
            check_interval_secs: 30,
        }
    }
}

/// Validated `[nats.enrollment_stream]`. The stream discards its oldest messages when a limit is
/// reached, so it never refuses a request or an answer (v1's choice too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentStreamConfig {
    /// Create the stream when it is missing (default). Off: an operator creates it, and the
    /// parent only reports whether it is there.
    pub create: bool,
    /// How long a request or answer is kept: long enough for an app to reconnect and collect
    /// its answer, short enough that nothing replays old credential operations.
    pub max_age: Duration,
    /// Total size bound.
    pub max_bytes: u64,
    /// Largest message kept (NATS' default max payload is 1 MiB).
    pub max_msg_bytes: u64,
    /// File or memory.
    pub storage: StreamStorage,
    /// Copies in a clustered NATS (1 on a single server).
    pub replicas: usize,
    /// How often the parent checks (and, with `create`, recreates) the stream.
    pub check_interval: Duration,
}

impl Default for EnrollmentStreamConfig {
    fn default() -> Self {
        validate(&EnrollmentStreamFile::default(), &mut Vec::new())
    }
}

/// Validates the section, recording problems; the returned value is only used when there are
/// none.
pub(crate) fn validate(
    f: &EnrollmentStreamFile,
    problems: &mut Vec<String>,
) -> EnrollmentStreamConfig {
    let mut range = |name: &str, v: u64, lo: u64, hi: u64| {
        if !(lo..=hi).contains(&v) {
            problems.push(format!(
                "nats.enrollment_stream.{name} = {v}: must be between {lo} and {hi}"
            ));
        }
    };
    range("max_age_secs", f.max_age_secs, 60, 7 * 24 * 3600);
    range("max_bytes", f.max_bytes, 1 << 20, 1 << 40);
    range("max_msg_bytes", f.max_msg_bytes, 1 << 10, 64 << 20);
    range("replicas", f.replicas as u64, 1, 5);
    range("check_interval_secs", f.check_interval_secs, 1, 3600);
    EnrollmentStreamConfig {
        create: f.create,
        max_age: Duration::from_secs(f.max_age_secs),
        max_bytes: f.max_bytes,
        max_msg_bytes: f.max_msg_bytes,
        storage: f.storage,
        replicas: f.replicas,
        check_interval: Duration::from_secs(f.check_interval_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<EnrollmentStreamConfig, Vec<String>> {
        let f: EnrollmentStreamFile = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let c = validate(&f, &mut problems);
        problems.is_empty().then_some(c).ok_or(problems)
    }

    #[test]
    fn defaults_create_a_file_stream_of_thirty_minutes() {
        let c = parse("").unwrap();
        assert_eq!(c, EnrollmentStreamConfig::default());
        assert!(c.create);
        assert_eq!(c.max_age, Duration::from_secs(1800));
        assert_eq!(c.storage, StreamStorage::File);
        assert_eq!(c.replicas, 1);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let problems = parse(
            "max_age_secs = 1\nmax_bytes = 10\nreplicas = 0\ncheck_interval_secs = 0\nmax_msg_bytes = 1",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(parse("storage = \"tape\"").is_err());
        assert!(parse("maxage = 60").is_err());
        let c = parse("create = false\nstorage = \"memory\"").unwrap();
        assert!(!c.create);
        assert_eq!(c.storage, StreamStorage::Memory);
    }
}
