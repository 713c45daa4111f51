//! Validation of the credential password hash the app sends: an Argon2id PHC string.
//!
//! The app hashes the user's password itself and sends `$argon2id$v=19$m=…,t=…,p=…$salt$hash`. The enclave
//! only **stores** it and later compares it, as a bearer secret, against the "old" hash of a password
//! change. So this module never runs Argon2 on it: it checks the string is well formed, strong enough
//! (v1 minimums, reference §3.4) and not absurd (our maxima, so a hostile client cannot store parameters
//! that would stall any future verifier), and that is all.
//!
//! Accepted grammar (strict; anything else is an error, never "best effort"):
//!
//! ```text
//! $argon2id$v=19$m=<dec>,t=<dec>,p=<dec>$<B64 salt>$<B64 hash>
//! ```
//!
//! `<dec>` is canonical decimal (no sign, no leading zero). B64 is the PHC alphabet: standard base64
//! without padding, with the unused trailing bits zero.

use base64::{engine::general_purpose::STANDARD_NO_PAD, Engine as _};
use zeroize::Zeroizing;

/// v1 minimum memory cost, KiB (64 MiB).
pub const MIN_M_KIB: u32 = 65_536;
/// Our maximum memory cost, KiB (4 GiB): above what any phone can run, so only a hostile or broken client
/// sends more.
pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;
/// v1 minimum iterations.
pub const MIN_T: u32 = 3;
/// Our maximum iterations: 64 passes over ≥ 64 MiB is already minutes on a phone.
pub const MAX_T: u32 = 64;
/// v1 minimum lanes.
pub const MIN_P: u32 = 1;
/// Our maximum lanes: more than any phone has cores, far below Argon2's 2^24 − 1.
pub const MAX_P: u32 = 64;
/// v1 minimum salt length, bytes.
pub const MIN_SALT_LEN: usize = 16;
/// Our maximum salt length, bytes (the PHC recommendation caps salts at 48 bytes; 64 leaves slack).
pub const MAX_SALT_LEN: usize = 64;
/// Required hash length, bytes.
pub const HASH_LEN: usize = 32;
/// Longest string inspected at all; checked before any parsing so a huge field costs nothing.
pub const MAX_ENCODED_LEN: usize = 256;

/// Why a PHC string was refused. Carries parameters (public), never the salt or hash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhcError {
    /// Longer than [`MAX_ENCODED_LEN`].
    #[error("password hash longer than {MAX_ENCODED_LEN} characters")]
    TooLong,
    /// Not five `$`-separated fields after a leading `$`.
    #[error("password hash is not a PHC string")]
    Malformed,
    /// Algorithm other than `argon2id`.
    #[error("password hash algorithm must be argon2id")]
    Algorithm,
    /// Version field other than `v=19` (or missing).
    #[error("password hash version must be v=19")]
    Version,
    /// Parameter list not exactly `m=…,t=…,p=…` with canonical decimals.
    #[error("password hash parameters must be m=…,t=…,p=…")]
    Params,
    /// `m` below [`MIN_M_KIB`].
    #[error("memory cost {0} KiB below minimum {MIN_M_KIB}")]
    MemoryTooLow(u32),
    /// `m` above [`MAX_M_KIB`].
    #[error("memory cost {0} KiB above maximum {MAX_M_KIB}")]
    MemoryTooHigh(u32),
    /// `t` below [`MIN_T`].
    #[error("iterations {0} below minimum {MIN_T}")]
    IterationsTooLow(u32),
    /// `t` above [`MAX_T`].
    #[error("iterations {0} above maximum {MAX_T}")]
    IterationsTooHigh(u32),
    /// `p` below [`MIN_P`].
    #[error("parallelism {0} below minimum {MIN_P}")]
    ParallelismTooLow(u32),
    /// `p` above [`MAX_P`].
    #[error("parallelism {0} above maximum {MAX_P}")]
    ParallelismTooHigh(u32),
    /// Salt is not PHC B64.
    #[error("password hash salt is not valid B64")]
    SaltEncoding,
    /// Salt shorter than [`MIN_SALT_LEN`].
    #[error("salt {0} bytes, minimum {MIN_SALT_LEN}")]
    SaltTooShort(usize),
    /// Salt longer than [`MAX_SALT_LEN`].
    #[error("salt {0} bytes, maximum {MAX_SALT_LEN}")]
    SaltTooLong(usize),
    /// Hash is not PHC B64.
    #[error("password hash output is not valid B64")]
    HashEncoding,
    /// Hash not exactly [`HASH_LEN`] bytes.
    #[error("hash {0} bytes, must be {HASH_LEN}")]
    HashLength(usize),
}

/// A validated Argon2id PHC string. The string is a bearer secret (whoever holds it passes a password
/// change), so it is zeroized on drop, compared in constant time and redacted from `Debug`.
#[derive(Clone)]
pub struct PhcHash {
    encoded: Zeroizing<String>,
    m_kib: u32,
    t: u32,
    p: u32,
}

impl PhcHash {
    /// Parse and validate `encoded`; see the module doc for the grammar and limits.
    ///
    /// # Errors
    /// One [`PhcError`] variant per violated rule, checked in wire order.
    pub fn parse(encoded: &str) -> Result<Self, PhcError> {
        if encoded.len() > MAX_ENCODED_LEN {
            return Err(PhcError::TooLong);
        }
        let fields: Vec<&str> = encoded.split('$').collect();
        let [empty, alg, version, params, salt, hash] = fields.as_slice() else {
            return Err(PhcError::Malformed);
        };
        if !empty.is_empty() {
            return Err(PhcError::Malformed);
        }
        if *alg != "argon2id" {
            return Err(PhcError::Algorithm);
        }
        if *version != "v=19" {
            return Err(PhcError::Version);
        }
        let (m_kib, t, p) = parse_params(params)?;
        check_range(
            m_kib,
            MIN_M_KIB,
            MAX_M_KIB,
            PhcError::MemoryTooLow,
            PhcError::MemoryTooHigh,
        )?;
        check_range(
            t,
            MIN_T,
            MAX_T,
            PhcError::IterationsTooLow,
            PhcError::IterationsTooHigh,
        )?;
        check_range(
            p,
            MIN_P,
            MAX_P,
            PhcError::ParallelismTooLow,
            PhcError::ParallelismTooHigh,
        )?;
        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| PhcError::SaltEncoding)?;
        if salt.len() < MIN_SALT_LEN {
            return Err(PhcError::SaltTooShort(salt.len()));
        }
        if salt.len() > MAX_SALT_LEN {
            return Err(PhcError::SaltTooLong(salt.len()));
        }
        let hash = Zeroizing::new(
            STANDARD_NO_PAD
                .decode(hash)
                .map_err(|_| PhcError::HashEncoding)?,
        );
        if hash.len() != HASH_LEN {
            return Err(PhcError::HashLength(hash.len()));
        }
        Ok(Self {
            encoded: Zeroizing::new(encoded.to_owned()),
            m_kib,
            t,
            p,
        })
    }

    /// The string exactly as received, for storage inside the sealed credential.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.m_kib
    }

    /// Iterations.
    pub fn iterations(&self) -> u32 {
        self.t
    }

    /// Lanes.
    pub fn parallelism(&self) -> u32 {
        self.p
    }

    /// Constant-time comparison with a presented string (password change's `old_password_hash`).
    /// Only the length can leak, and the length follows from public parameters.
    pub fn matches(&self, presented: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.encoded.as_bytes(),
            presented.as_bytes(),
        )
        .is_ok()
    }
}

impl std::fmt::Debug for PhcHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhcHash")
            .field("m_kib", &self.m_kib)
            .field("t", &self.t)
            .field("p", &self.p)
            .field("encoded", &"<redacted>")
            .finish()
    }
}

fn parse_params(params: &str) -> Result<(u32, u32, u32), PhcError> {
    let mut parts = params.split(',');
    let mut next = |name: &str| -> Result<u32, PhcError> {
        let part = parts.next().ok_or(PhcError::Params)?;
        let value = part
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .ok_or(PhcError::Params)?;
        parse_decimal(value).ok_or(PhcError::Params)
    };
    let values = (next("m")?, next("t")?, next("p")?);
    if parts.next().is_some() {
        return Err(PhcError::Params);
    }
    Ok(values)
}

/// Canonical decimal: digits only, no leading zero, fits u32.
fn parse_decimal(s: &str) -> Option<u32> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

fn check_range(
    value: u32,
    min: u32,
    max: u32,
    low: fn(u32) -> PhcError,
    high: fn(u32) -> PhcError,
) -> Result<(), PhcError> {
    if value < min {
        Err(low(value))
    } else if value > max {
        Err(high(value))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
