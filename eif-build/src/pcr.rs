//! PCR values as `nitro-cli` prints them.
//!
//! The reference crate computes, per register, `PCR = SHA-384(48 zero bytes || SHA-384(data))`, one
//! extend over the concatenation of the register's sections (not one extend per section):
//! - PCR0: kernel, cmdline and every ramdisk, in image order;
//! - PCR1: kernel, cmdline and the first ramdisk (the bootstrap);
//! - PCR2: every ramdisk after the first (the application);
//! - PCR8: the DER of the signing certificate, only for a signed image.
//!
//! The metadata section is measured into none of them. `tests/eif.rs` recomputes all of this from the image
//! bytes without the crate.

use std::collections::BTreeMap;

use anyhow::{anyhow, ensure, Result};
use serde::Serialize;

/// Hex length of a SHA-384 PCR.
const PCR_HEX_LEN: usize = 96;

/// The `HashAlgorithm` value nitro-cli prints. The crate writes `format!("{:?}", Sha384::new())`, which
/// reads `Sha384 { ... }` with the sha2 release nitro-cli ships but `Sha512_48 { .. }` with sha2 0.10.9;
/// scripts compare this string, so we print nitro-cli's.
pub const HASH_ALGORITHM: &str = "Sha384 { ... }";

/// The measurements of one image: `HashAlgorithm`, `PCR0`, `PCR1`, `PCR2` and, when signed, `PCR8`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Measurements(BTreeMap<String, String>);

impl Measurements {
    /// Wrap the crate's output after checking it has the registers we promise.
    ///
    /// # Errors
    /// If PCR0, PCR1 or PCR2 is missing or not 96 hex digits (a bug in the crate or in us).
    pub fn from_crate(mut map: BTreeMap<String, String>) -> Result<Self> {
        for key in ["PCR0", "PCR1", "PCR2"] {
            let v = map
                .get(key)
                .ok_or_else(|| anyhow!("the image crate returned no {key}"))?;
            ensure!(
                v.len() == PCR_HEX_LEN && v.bytes().all(|b| b.is_ascii_hexdigit()),
                "the image crate returned a malformed {key}: {v:?}"
            );
        }
        map.insert("HashAlgorithm".to_owned(), HASH_ALGORITHM.to_owned());
        Ok(Self(map))
    }

    /// One register's hex value, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// What `build` and `pcrs` print: `{"Measurements": {...}}`, as `nitro-cli build-enclave` does.
#[derive(Debug, Serialize)]
pub struct BuildOutput<'a> {
    /// The registers.
    #[serde(rename = "Measurements")]
    pub measurements: &'a Measurements,
}

/// What `dev-pcrs` prints: the PCR0/1/2 a dev enclave running `binary` on the mock NSM reports.
#[derive(Debug, Serialize)]
pub struct DevOutput {
    /// PCR0/1/2 as hex.
    #[serde(rename = "Measurements")]
    pub measurements: BTreeMap<String, String>,
    /// Always `mock-nsm`: these values are never produced by real hardware.
    #[serde(rename = "Source")]
    pub source: &'static str,
}

/// The mock NSM's PCRs for a dev binary: `vettid_nsm::MockPcrs::from_measurement` over the binary's bytes,
/// the call the dev enclave makes on its own executable at start-up.
///
/// # Errors
/// If the binary cannot be read.
pub fn dev_pcrs(binary: &std::path::Path) -> Result<DevOutput> {
    let bytes = crate::input::read_input("binary", binary)?;
    let pcrs = vettid_nsm::MockPcrs::from_measurement(&bytes);
    let measurements = (0u16..3)
        .map(|i| {
            let v = pcrs
                .get(i)
                .ok_or_else(|| anyhow!("mock NSM has no PCR{i}"))?;
            Ok((format!("PCR{i}"), hex::encode(v)))
        })
        .collect::<Result<_>>()?;
    Ok(DevOutput {
        measurements,
        source: "mock-nsm",
    })
}
