//! Memory figures from `/proc`, for health replies. Inside an enclave `/proc/meminfo` describes
//! the enclave's own memory, which is what operators need to see.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Memory in MiB: (used, total) for the machine (enclave), and our resident set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// MemTotal − MemAvailable.
    pub used_mb: u64,
    /// MemTotal.
    pub total_mb: u64,
    /// This process's resident set size.
    pub process_rss_mb: u64,
}

/// How long a memory reading is reused. Generating `/proc/meminfo` costs the kernel tens of
/// microseconds; health checks arriving thousands of times a second need not repeat it.
const REFRESH: Duration = Duration::from_secs(1);

static CACHE: Mutex<Option<(Instant, Memory)>> = Mutex::new(None);

/// Memory figures, at most [`REFRESH`] old.
pub fn memory() -> Memory {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *cache {
        Some((at, m)) if at.elapsed() < REFRESH => m,
        _ => {
            let m = read_memory();
            *cache = Some((Instant::now(), m));
            m
        }
    }
}

/// Reads `/proc/meminfo` and `/proc/self/statm`; missing files give zeros, never an error.
pub fn read_memory() -> Memory {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let total_kb = field("MemTotal:");
    let avail_kb = field("MemAvailable:");
    Memory {
        used_mb: total_kb.saturating_sub(avail_kb) / 1024,
        total_mb: total_kb / 1024,
        process_rss_mb: process_rss_bytes() / (1024 * 1024),
    }
}

/// Resident set size of this process in bytes (0 if unknown).
pub fn process_rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_real_values_on_linux() {
        let m = super::memory();
        assert!(
            m.total_mb > 0 && m.used_mb <= m.total_mb && m.process_rss_mb > 0,
            "{m:?}"
        );
    }
}
