//! What both daemons take from the machine they run on, written once so the enclave and the parent
//! cannot drift apart: the async runtime they run the link on, and the enclave id a dev system
//! agrees on without configuration.

/// The async runtime: current-thread for 0 workers, multi-thread with `workers` threads otherwise.
///
/// # Errors
/// The runtime could not be built (the OS refused threads or an event loop).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// `dev-{hostname}`: the enclave id the parent and the enclave both default to when none is
/// configured (production sets it from IMDSv2), so a dev system on one machine agrees on it.
pub fn dev_enclave_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    dev_enclave_id_for(&host)
}

/// The rule behind [`dev_enclave_id`]: every character outside `[A-Za-z0-9-]` becomes `-`, so
/// the id is one NATS subject token; an empty hostname becomes `host`.
pub fn dev_enclave_id_for(hostname: &str) -> String {
    let clean: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("dev-{}", if clean.is_empty() { "host" } else { &clean })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_id_is_one_subject_token() {
        assert_eq!(
            dev_enclave_id_for("build-7.example.org\n"),
            "dev-build-7-example-org"
        );
        assert_eq!(dev_enclave_id_for("a b*c>d"), "dev-a-b-c-d");
        assert_eq!(dev_enclave_id_for("  \n"), "dev-host");
        assert!(dev_enclave_id().starts_with("dev-"));
    }

    #[test]
    fn both_runtime_shapes_run() {
        assert_eq!(runtime(0).unwrap().block_on(async { 1 }), 1);
        assert_eq!(runtime(2).unwrap().block_on(async { 2 }), 2);
    }
}
