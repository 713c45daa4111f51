//! Writing the enclave image (EIF) with the reference crate, `aws-nitro-enclaves-image-format`.
//!
//! The crate's `EifBuilder` panics on I/O errors and bad inputs, so every input is opened, read and checked
//! here first, with a message that names the file. What the crate writes that is not an input is made
//! deterministic here:
//! - the metadata section (JSON, not measured into any PCR) gets its `BuildTime` from `SOURCE_DATE_EPOCH`,
//!   never the clock, and its custom part lists the SHA-384 of every input, so the image says what it was
//!   built from;
//! - header defaults (1 GiB, 2 vCPUs), section order (kernel, cmdline, metadata, ramdisks, signature) and the
//!   CRC come from the crate and depend on nothing else.
//!
//! The one part that is *not* reproducible is the optional signature section: ECDSA signatures are
//! randomised, so a signed image differs byte-wise between runs while its PCRs (PCR8 included) do not.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aws_nitro_enclaves_image_format::defs::{
    EifBuildInfo, EifIdentityInfo, EIF_HDR_ARCH_ARM64, MAX_NUM_SECTIONS,
};
use aws_nitro_enclaves_image_format::utils::identity::generate_build_info;
use aws_nitro_enclaves_image_format::utils::{get_pcrs, EifBuilder, SignKeyData};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha384};
use vettid_nsm::mock::MOCK_CN_MARKER;

use crate::input::read_input;
use crate::pcr::Measurements;
use crate::ramdisk::{Application, Bootstrap};

/// Name written into the metadata's `BuildTool`.
const BUILD_TOOL: &str = env!("CARGO_PKG_NAME");
/// Version written into the metadata's `BuildToolVersion`.
const BUILD_TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest kernel command line accepted: `COMMAND_LINE_SIZE` on x86_64 and arm64 Linux.
pub const MAX_CMDLINE_LEN: usize = 2048;
/// Sections the crate always writes: kernel, cmdline, metadata.
const FIXED_SECTIONS: usize = 3;
/// Ramdisks we always add: bootstrap and application.
const OUR_RAMDISKS: usize = 2;

/// CPU architecture recorded in the EIF header flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// x86_64 (flags bit 0 clear).
    #[default]
    X86_64,
    /// aarch64 (flags bit 0 set).
    Aarch64,
}

/// How to sign the image (PCR8 = the signing certificate).
#[derive(Debug, Clone)]
pub struct Signing {
    /// PEM certificate whose key signs PCR0.
    pub certificate: PathBuf,
    /// PEM private key file, or a KMS key ARN (the crate recognises ARNs and signs through KMS).
    pub key: String,
}

/// Everything an image is built from.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Kernel image (bzImage on x86_64, Image on arm64).
    pub kernel: PathBuf,
    /// Kernel `.config`, only read for the metadata's OS and kernel version.
    pub kernel_config: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Init binary (`/init` of the bootstrap ramdisk).
    pub init: PathBuf,
    /// NSM driver module (`/nsm.ko`), for kernels without the driver built in.
    pub nsm_ko: Option<PathBuf>,
    /// The `vettid-enclave` binary.
    pub binary: PathBuf,
    /// Extra command-line arguments for the binary.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment for the binary.
    pub env: Vec<String>,
    /// Further cpio ramdisks, appended after ours (measured into PCR2).
    pub extra_ramdisks: Vec<PathBuf>,
    /// Timestamp of every cpio entry and of the metadata `BuildTime`.
    pub source_date_epoch: u64,
    /// Metadata `ImageName`.
    pub image_name: String,
    /// Metadata `ImageVersion`.
    pub image_version: String,
    /// Header architecture flag.
    pub arch: Arch,
    /// Optional signature.
    pub signing: Option<Signing>,
    /// Accept a binary that contains the mock NSM (dev images only).
    pub allow_mock: bool,
}

/// Build the image and write it to `out` (atomically: a temporary file renamed into place).
///
/// # Errors
/// On unreadable or invalid inputs, a signing failure, or an I/O error writing `out`.
pub fn build(spec: &ImageSpec, out: &Path) -> Result<Measurements> {
    let prepared = Prepared::new(spec)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut builder = prepared.builder(spec)?;
    let map = builder.write_to(tmp.as_file_mut());
    tmp.as_file()
        .sync_all()
        .context("flushing the image to disk")?;
    tmp.persist(out)
        .with_context(|| format!("cannot write the image to {}", out.display()))?;
    Measurements::from_crate(map)
}

/// The PCRs `build` would produce, without writing an image.
///
/// # Errors
/// As [`build`], minus the output file.
pub fn measure(spec: &ImageSpec) -> Result<Measurements> {
    let prepared = Prepared::new(spec)?;
    let mut builder = prepared.builder(spec)?;
    builder.measure();
    let signed = builder.is_signed();
    let map = get_pcrs(
        &mut builder.image_hasher,
        &mut builder.bootstrap_hasher,
        &mut builder.customer_app_hasher,
        &mut builder.certificate_hasher,
        Sha384::new(),
        signed,
    )
    .map_err(|e| anyhow!("computing PCRs: {e}"))?;
    Measurements::from_crate(map)
}

/// Checked inputs, with our two ramdisks written to a private temporary directory (the crate reads files).
struct Prepared {
    _dir: tempfile::TempDir,
    ramdisks: Vec<PathBuf>,
    identity: EifIdentityInfo,
}

impl Prepared {
    fn new(spec: &ImageSpec) -> Result<Self> {
        ensure!(
            !spec.cmdline.contains('\0'),
            "--cmdline contains a NUL byte"
        );
        ensure!(
            spec.cmdline.len() <= MAX_CMDLINE_LEN,
            "--cmdline is {} bytes, longer than the kernel's {MAX_CMDLINE_LEN}",
            spec.cmdline.len()
        );
        let signed = usize::from(spec.signing.is_some());
        let sections = FIXED_SECTIONS + OUR_RAMDISKS + spec.extra_ramdisks.len() + signed;
        ensure!(
            sections <= MAX_NUM_SECTIONS,
            "too many ramdisks: the image would have {sections} sections (EIF limit {MAX_NUM_SECTIONS})"
        );

        let kernel = read_input("kernel", &spec.kernel)?;
        ensure!(
            !kernel.is_empty(),
            "kernel file {} is empty",
            spec.kernel.display()
        );
        let init = read_input("init", &spec.init)?;
        let binary = read_input("binary", &spec.binary)?;
        ensure!(
            spec.allow_mock || !contains(&binary, MOCK_CN_MARKER.as_bytes()),
            "binary {} contains the mock NSM (built with feature `mock`): a production image must not; \
             pass --allow-mock for a dev image",
            spec.binary.display()
        );
        let nsm_ko = spec
            .nsm_ko
            .as_deref()
            .map(|p| read_input("nsm.ko", p))
            .transpose()?;
        let mut extra_hashes = Vec::new();
        for p in &spec.extra_ramdisks {
            let data = read_input("ramdisk", p)?;
            ensure!(!data.is_empty(), "ramdisk {} is empty", p.display());
            extra_hashes.push(Value::String(sha384_hex(&data)));
        }

        let mtime = spec.source_date_epoch;
        let bootstrap = Bootstrap {
            init: init.clone(),
            nsm_ko: nsm_ko.clone(),
        }
        .to_cpio(mtime)?;
        let app = Application {
            binary: binary.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
        }
        .to_cpio(mtime)?;

        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let bootstrap_path = dir.path().join("bootstrap.cpio");
        let app_path = dir.path().join("application.cpio");
        std::fs::write(&bootstrap_path, &bootstrap).context("writing the bootstrap ramdisk")?;
        std::fs::write(&app_path, &app).context("writing the application ramdisk")?;
        let mut ramdisks = vec![bootstrap_path, app_path];
        ramdisks.extend(spec.extra_ramdisks.iter().cloned());

        let inputs = json!({
            "kernel": sha384_hex(&kernel),
            "init": sha384_hex(&init),
            "nsm.ko": nsm_ko.as_deref().map(sha384_hex),
            "binary": sha384_hex(&binary),
            "extra_ramdisks": extra_hashes,
        });
        let identity = EifIdentityInfo {
            img_name: spec.image_name.clone(),
            img_version: spec.image_version.clone(),
            build_info: build_info(spec)?,
            docker_info: Value::Null,
            custom_info: json!({
                "VettidInputsSha384": inputs,
                "SourceDateEpoch": spec.source_date_epoch,
            }),
        };
        Ok(Self {
            _dir: dir,
            ramdisks,
            identity,
        })
    }

    fn builder(&self, spec: &ImageSpec) -> Result<EifBuilder<Sha384>> {
        let sign_info = spec.signing.as_ref().map(load_signing).transpose()?;
        let flags = match spec.arch {
            Arch::X86_64 => 0,
            Arch::Aarch64 => EIF_HDR_ARCH_ARM64,
        };
        let mut builder = EifBuilder::new(
            &spec.kernel,
            spec.cmdline.clone(),
            sign_info,
            Sha384::new(),
            flags,
            self.identity.clone(),
        );
        for r in &self.ramdisks {
            builder.add_ramdisk(r);
        }
        Ok(builder)
    }
}

fn build_info(spec: &ImageSpec) -> Result<EifBuildInfo> {
    let epoch = i64::try_from(spec.source_date_epoch).context("SOURCE_DATE_EPOCH is too large")?;
    let time: DateTime<Utc> = DateTime::from_timestamp(epoch, 0)
        .with_context(|| format!("SOURCE_DATE_EPOCH {epoch} is out of range"))?;
    match &spec.kernel_config {
        Some(path) => {
            // The crate reads line 3 (`# Linux/x86_64 6.1.x Kernel Configuration`) and panics on a
            // shorter file, so check that first.
            let text = String::from_utf8(read_input("kernel config", path)?)
                .with_context(|| format!("kernel config {} is not UTF-8", path.display()))?;
            ensure!(
                text.lines().count() >= 3,
                "kernel config {} has fewer than 3 lines; is it a kernel .config?",
                path.display()
            );
            let path = path.to_str().context("kernel config path is not UTF-8")?;
            generate_build_info(BUILD_TOOL, BUILD_TOOL_VERSION, path, Some(time))
                .map_err(|e| anyhow!("reading kernel config: {e}"))
        }
        None => Ok(EifBuildInfo {
            build_time: time.to_rfc3339(),
            build_tool: BUILD_TOOL.to_owned(),
            build_tool_version: BUILD_TOOL_VERSION.to_owned(),
            img_os: "Unknown".to_owned(),
            img_kernel: "Unknown".to_owned(),
        }),
    }
}

/// Load and check the signing material up front: the crate panics later on a bad key or certificate.
fn load_signing(s: &Signing) -> Result<SignKeyData> {
    let cert_pem = read_input("signing certificate", &s.certificate)?;
    let cert = openssl::x509::X509::from_pem(&cert_pem).with_context(|| {
        format!(
            "signing certificate {} is not a PEM X.509 certificate",
            s.certificate.display()
        )
    })?;
    if !s.key.starts_with("arn:") {
        let key_path = Path::new(&s.key);
        let key_pem = read_input("signing key", key_path)?;
        let key = openssl::pkey::PKey::private_key_from_pem(&key_pem).with_context(|| {
            format!(
                "signing key {} is not a PEM private key",
                key_path.display()
            )
        })?;
        let cert_key = cert
            .public_key()
            .context("signing certificate has no usable public key")?;
        if !key.public_eq(&cert_key) {
            bail!(
                "signing key {} does not match the certificate {}",
                key_path.display(),
                s.certificate.display()
            );
        }
    }
    SignKeyData::new(&s.key, &s.certificate).map_err(|e| anyhow!("loading signing key: {e}"))
}

/// Whether `needle` occurs in `haystack`. The mock NSM puts [`MOCK_CN_MARKER`] into every certificate it
/// issues, so the string is in any binary built with the mock.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Lowercase hex SHA-384.
pub fn sha384_hex(data: &[u8]) -> String {
    hex::encode(Sha384::digest(data))
}
