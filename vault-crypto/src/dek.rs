//! DEK derivation from the PIN, exactly as VettID v1 does it (reference §3.3):
//!
//! ```text
//! salt = SHA-256(owner_id ‖ M)                       M = 32-byte sealed material, owner_id = owner_space GUID
//! S    = Argon2id(PIN, salt, t = 3, m = 262144 KiB (256 MiB), p = 4, 32 bytes), version 0x13
//! DEK  = HMAC-SHA256(key = M, msg = S)
//! ```
//!
//! Both factors are needed: without M (sealed to an attested enclave) the PIN space cannot be searched, and
//! without the PIN the material alone gives nothing. Argon2 here is the only deliberately slow operation in
//! the enclave; the caller must run it under its memory semaphore ([`KdfParams::memory_bytes`]).

use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

use crate::secret::{Dek, Material};

/// Shortest PIN v1 accepts.
pub const PIN_MIN_LEN: usize = 4;
/// Longest PIN v1 accepts.
pub const PIN_MAX_LEN: usize = 8;

/// Why a PIN was refused. The messages are v1's, which the apps may show.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// Not 4–8 bytes long.
    #[error("PIN must be 4-8 digits")]
    Length,
    /// Contains something other than ASCII `0`–`9`.
    #[error("PIN must contain only digits")]
    NonDigit,
}

/// Why the KDF could not run. A wrong PIN is **not** an error here (it yields another DEK); see
/// [`crate::pin_verifier`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KdfError {
    /// The owner id is empty; a salt without the owner would let one vault's material serve another's.
    #[error("owner id must not be empty")]
    EmptyOwner,
    /// The Argon2 memory could not be reserved. Reported instead of aborting the enclave.
    #[error("cannot allocate {0} bytes for Argon2")]
    OutOfMemory(usize),
    /// Argon2 rejected its parameters or inputs.
    #[error("argon2: {0}")]
    Argon2(argon2::Error),
}

/// A PIN that passed v1's rule: 4–8 ASCII digits. Zeroized on drop, never printed.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Validate a PIN as decrypted from the app's payload.
    ///
    /// # Errors
    /// [`PinError::Length`] first (as v1 checks it first), then [`PinError::NonDigit`].
    pub fn parse(pin: &str) -> Result<Self, PinError> {
        // Byte length, like v1's Go `len(pin)`: a non-ASCII character counts as several.
        if !(PIN_MIN_LEN..=PIN_MAX_LEN).contains(&pin.len()) {
            return Err(PinError::Length);
        }
        if !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PinError::NonDigit);
        }
        Ok(Self(Zeroizing::new(pin.to_owned())))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Argon2id cost parameters. Production code can only name [`KdfParams::PRODUCTION`]; weaker values exist
/// for tests (and behind the `test-params` feature for other crates' tests), never in a shipped build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl KdfParams {
    /// v1's parameters: t = 3, m = 256 MiB, p = 4. Changing them changes every DEK.
    pub const PRODUCTION: KdfParams = KdfParams {
        m_kib: 262_144,
        t: 3,
        p: 4,
    };

    /// Arbitrary (weak) parameters so tests do not spend 256 MiB and seconds per derivation.
    #[cfg(any(test, feature = "test-params"))]
    pub const fn for_tests(m_kib: u32, t: u32, p: u32) -> Self {
        Self { m_kib, t, p }
    }

    /// Memory cost in KiB.
    pub const fn memory_kib(&self) -> u32 {
        self.m_kib
    }

    /// Iterations.
    pub const fn iterations(&self) -> u32 {
        self.t
    }

    /// Lanes.
    pub const fn parallelism(&self) -> u32 {
        self.p
    }

    /// Bytes one derivation holds for its duration: what the caller's semaphore must account for.
    pub const fn memory_bytes(&self) -> usize {
        self.m_kib as usize * 1024
    }
}

/// `SHA-256(owner_id ‖ M)`, the Argon2 salt. Public so vectors and the independent check can show it.
pub fn salt(owner_id: &str, material: &Material) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(owner_id.as_bytes());
    ctx.update(material.expose());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Derive the DEK for `pin`. Takes seconds and [`KdfParams::memory_bytes`] of memory at production
/// parameters; call it off the async executor and under the Argon2 semaphore.
///
/// # Errors
/// [`KdfError::EmptyOwner`], [`KdfError::OutOfMemory`], or [`KdfError::Argon2`] for invalid parameters.
pub fn derive_dek(
    pin: &Pin,
    material: &Material,
    owner_id: &str,
    params: &KdfParams,
) -> Result<Dek, KdfError> {
    derive_with_intermediate(pin, material, owner_id, params).map(|(_, dek)| dek)
}

/// [`derive_dek`] that also returns the Argon2id output `S`, so the known-answer vectors can show it
/// without running Argon2 twice.
pub(crate) fn derive_with_intermediate(
    pin: &Pin,
    material: &Material,
    owner_id: &str,
    params: &KdfParams,
) -> Result<(Zeroizing<[u8; 32]>, Dek), KdfError> {
    let stretched = argon2_output(pin, material, owner_id, params)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, material.expose());
    let tag = hmac::sign(&key, stretched.as_ref());
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(tag.as_ref());
    Ok((stretched, Dek::from_bytes(*dek)))
}

/// `S = Argon2id(PIN, salt, params)`, 32 bytes.
fn argon2_output(
    pin: &Pin,
    material: &Material,
    owner_id: &str,
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    if owner_id.is_empty() {
        return Err(KdfError::EmptyOwner);
    }
    let argon_params =
        Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(KdfError::Argon2)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    // Allocate the work area ourselves: a failed 256 MiB allocation becomes an error, not an abort, and
    // the area (PIN-derived state) is zeroized when dropped, which argon2 0.5 does not do for its own.
    let blocks = argon.params().block_count();
    let mut memory: Zeroizing<Vec<Block>> = Zeroizing::new(Vec::new());
    memory
        .try_reserve_exact(blocks)
        .map_err(|_| KdfError::OutOfMemory(params.memory_bytes()))?;
    memory.resize(blocks, Block::default());
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(
            pin.as_bytes(),
            &salt(owner_id, material),
            out.as_mut(),
            memory.as_mut_slice(),
        )
        .map_err(KdfError::Argon2)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: KdfParams = KdfParams::for_tests(256, 2, 2);

    #[test]
    fn pin_rules_match_v1() {
        for ok in ["0000", "1234", "12345678", "00000000"] {
            Pin::parse(ok).unwrap();
        }
        for (bad, want) in [
            ("", PinError::Length),
            ("123", PinError::Length),
            ("123456789", PinError::Length),
            ("12a4", PinError::NonDigit),
            ("12 4", PinError::NonDigit),
            ("-123", PinError::NonDigit),
            ("１２３４", PinError::Length), // full-width digits: 12 bytes
            ("١٢٣", PinError::NonDigit),    // Arabic-Indic digits: 6 bytes, not ASCII
            ("123\u{0}", PinError::NonDigit),
        ] {
            assert_eq!(Pin::parse(bad).unwrap_err(), want, "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", Pin::parse("4321").unwrap()),
            "Pin(<redacted>)"
        );
    }

    #[test]
    fn dek_depends_on_pin_material_and_owner() {
        let m = Material::from_bytes([1; 32]);
        let pin = Pin::parse("1234").unwrap();
        let base = derive_dek(&pin, &m, "owner-a", &SMALL).unwrap();
        assert_eq!(
            base.expose(),
            derive_dek(&pin, &m, "owner-a", &SMALL).unwrap().expose()
        );
        let other_pin = derive_dek(&Pin::parse("1235").unwrap(), &m, "owner-a", &SMALL).unwrap();
        let other_m = derive_dek(&pin, &Material::from_bytes([2; 32]), "owner-a", &SMALL).unwrap();
        let other_owner = derive_dek(&pin, &m, "owner-b", &SMALL).unwrap();
        for other in [other_pin, other_m, other_owner] {
            assert_ne!(base.expose(), other.expose());
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let m = Material::from_bytes([1; 32]);
        let pin = Pin::parse("1234").unwrap();
        assert_eq!(
            derive_dek(&pin, &m, "", &SMALL).unwrap_err(),
            KdfError::EmptyOwner
        );
        // Argon2 needs m ≥ 8·p KiB.
        let bad = KdfParams::for_tests(8, 1, 4);
        assert!(matches!(
            derive_dek(&pin, &m, "o", &bad).unwrap_err(),
            KdfError::Argon2(_)
        ));
        assert!(matches!(
            derive_dek(&pin, &m, "o", &KdfParams::for_tests(256, 0, 1)).unwrap_err(),
            KdfError::Argon2(_)
        ));
    }

    #[test]
    fn production_parameters_are_v1s() {
        let p = KdfParams::PRODUCTION;
        assert_eq!(
            (p.memory_kib(), p.iterations(), p.parallelism()),
            (262_144, 3, 4)
        );
        assert_eq!(p.memory_bytes(), 256 * 1024 * 1024);
    }
}
