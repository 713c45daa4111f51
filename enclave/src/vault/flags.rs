//! Command-line settings of the vault. In production they are part of the EIF's measured command
//! line, so the PIN policy is attested like the code.

use std::time::Duration;

use super::{PinPolicy, VaultConfig};

/// Vault flags (flattened into `vettid-enclave`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct VaultFlags {
    /// Failed PIN attempts allowed before back-off starts.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub pin_free_attempts: u32,
    /// Failed PIN attempts that lock the vault out (until a signed vault.reset).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pin_max_attempts: u32,
    /// First back-off after `--pin-free-attempts` failures, doubled per further failure.
    #[arg(long, default_value_t = 30)]
    pub pin_backoff_secs: u64,
    /// Longest back-off.
    #[arg(long, default_value_t = 3600)]
    pub pin_backoff_cap_secs: u64,
    /// An unlocked vault locks again after this many seconds without a request.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub vault_idle_lock_secs: u64,
    /// Vaults held in memory at most.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_vaults: u64,
    /// Memory budget for cached vaults, MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub vault_cache_mib: u64,
    /// Argon2id derivations at once (each holds 256 MiB).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub argon2_concurrency: u64,
    /// Timeout of each storage call through the parent, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub storage_timeout_secs: u64,
    /// Also serve the v1 request shapes deployed apps send (v1 PIN envelopes, UTK envelopes not
    /// bound to their operation, unauthenticated replies). Off by default: v2 only. With it on,
    /// a PIN request's UTK is still checked first and a used v1 envelope is refused.
    #[arg(long, alias = "accept-v1-pin-envelopes")]
    pub accept_v1_envelopes: bool,
}

impl VaultFlags {
    /// The vault configuration these flags describe.
    ///
    /// # Errors
    /// A message when the flags contradict each other.
    pub fn config(&self) -> Result<VaultConfig, String> {
        if self.pin_free_attempts > self.pin_max_attempts {
            return Err(format!(
                "--pin-free-attempts ({}) exceeds --pin-max-attempts ({})",
                self.pin_free_attempts, self.pin_max_attempts
            ));
        }
        if self.pin_backoff_secs > self.pin_backoff_cap_secs {
            return Err("--pin-backoff-secs exceeds --pin-backoff-cap-secs".into());
        }
        Ok(VaultConfig {
            max_vaults: self.max_vaults as usize,
            cache_budget_bytes: (self.vault_cache_mib as usize) << 20,
            argon2_permits: self.argon2_concurrency as usize,
            idle_lock: Duration::from_secs(self.vault_idle_lock_secs),
            pin: PinPolicy {
                free_attempts: self.pin_free_attempts,
                max_attempts: self.pin_max_attempts,
                backoff_base: Duration::from_secs(self.pin_backoff_secs),
                backoff_cap: Duration::from_secs(self.pin_backoff_cap_secs),
            },
            storage_timeout: Duration::from_secs(self.storage_timeout_secs),
            accept_v1: self.accept_v1_envelopes,
            ..VaultConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        v: VaultFlags,
    }

    #[test]
    fn defaults_and_contradictions() {
        let t = T::try_parse_from(["x"]).unwrap();
        let c = t.v.config().unwrap();
        assert_eq!((c.pin.free_attempts, c.pin.max_attempts), (4, 10));
        assert_eq!(c.kdf, vettid_vault_crypto::KdfParams::PRODUCTION);
        let t = T::try_parse_from(["x", "--pin-free-attempts", "5", "--pin-max-attempts", "3"])
            .unwrap();
        assert!(t.v.config().is_err());
        for bad in [
            &["x", "--pin-max-attempts", "0"][..],
            &["x", "--vault-idle-lock-secs", "0"],
            &["x", "--argon2-concurrency", "-1"],
            &["x", "--max-vaults", "many"],
        ] {
            assert!(T::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
