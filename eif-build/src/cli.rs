//! The command-line surface (clap derive): flags only, no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use eif_build::eif::{Arch, ImageSpec, Signing};

#[derive(Parser)]
#[command(
    name = "eif-build",
    version,
    about = "Reproducible Nitro enclave images and the signed PCR manifest"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build the enclave image and print its PCRs.
    Build {
        #[command(flatten)]
        image: ImageArgs,
        /// Where to write the image.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the PCRs `build` would produce, without writing the image.
    Pcrs {
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Print an image's header and PCRs as `nitro-cli describe-eif` does.
    Describe {
        /// The image.
        eif: PathBuf,
    },
    /// Print the PCR0/1/2 a dev enclave (mock NSM) reports for this binary.
    DevPcrs {
        /// The vettid-enclave binary the dev enclave runs.
        #[arg(long)]
        binary: PathBuf,
    },
    /// Maintain the signed PCR manifest.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Add a PCR set (creates the manifest if it does not exist).
    Add {
        /// Manifest file (edited in place; any signature is dropped).
        #[arg(long)]
        manifest: PathBuf,
        /// Unique set id, for example 2026-01-18-v1.
        #[arg(long)]
        id: String,
        /// PCR0 as hex.
        #[arg(long)]
        pcr0: String,
        /// PCR1 as hex.
        #[arg(long)]
        pcr1: String,
        /// PCR2 as hex.
        #[arg(long)]
        pcr2: String,
        /// Start of validity (RFC 3339); default now.
        #[arg(long)]
        valid_from: Option<String>,
        /// End of validity (RFC 3339); default open-ended.
        #[arg(long)]
        valid_until: Option<String>,
        /// Free text for people.
        #[arg(long)]
        description: Option<String>,
        /// Make this the current set: the set it supersedes gets valid_until = this set's valid_from.
        #[arg(long)]
        current: bool,
    },
    /// Sign the manifest (P-256 ECDSA over its canonical bytes).
    Sign {
        /// Manifest file.
        #[arg(long)]
        manifest: PathBuf,
        /// P-256 private key, PKCS#8 PEM (dev).
        #[arg(
            long,
            required_unless_present = "kms_key_id",
            conflicts_with = "kms_key_id"
        )]
        key: Option<PathBuf>,
        /// AWS KMS key (id, ARN or alias; ECC_NIST_P256) to sign with (production).
        #[arg(long)]
        kms_key_id: Option<String>,
        /// AWS region of the KMS key (default: the AWS configuration chain's).
        #[arg(long, requires = "kms_key_id")]
        kms_region: Option<String>,
        /// Where to write the signed manifest; default: in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify the signature and print the sets valid at a time.
    Verify {
        /// Manifest file.
        #[arg(long)]
        manifest: PathBuf,
        /// P-256 public key (PEM or DER SubjectPublicKeyInfo).
        #[arg(long)]
        pubkey: PathBuf,
        /// Time to check validity at (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Refuse a manifest whose version is below this (rollback check).
        #[arg(long)]
        min_version: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ArchArg {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
}

#[derive(Args)]
pub struct ImageArgs {
    /// Kernel image (Nitro blobs: bzImage on x86_64, Image on arm64).
    #[arg(long)]
    kernel: PathBuf,
    /// Kernel .config (bzImage.config), read only for the metadata's OS and kernel version.
    #[arg(long)]
    kernel_config: Option<PathBuf>,
    /// Kernel command line (Nitro blobs: the contents of `cmdline`).
    #[arg(long)]
    cmdline: String,
    /// Init binary, placed at /init of the bootstrap ramdisk (Nitro blobs: `init`).
    #[arg(long)]
    init: PathBuf,
    /// NSM driver module, placed at /nsm.ko (Nitro blobs: `nsm.ko`; not needed on kernels >= 6.8).
    #[arg(long)]
    nsm_ko: Option<PathBuf>,
    /// The vettid-enclave binary (static musl build).
    #[arg(long)]
    binary: PathBuf,
    /// Extra argument for the binary (repeatable, in order).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// KEY=VALUE environment for the binary (repeatable, in order).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Further cpio ramdisk appended after ours (repeatable; measured into PCR2).
    #[arg(long = "ramdisk", value_name = "CPIO")]
    ramdisks: Vec<PathBuf>,
    /// Timestamp of every ramdisk entry and of the metadata BuildTime.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    source_date_epoch: u64,
    /// Metadata ImageName.
    #[arg(long, default_value = "vettid-enclave")]
    image_name: String,
    /// Metadata ImageVersion.
    #[arg(long, default_value = "unversioned")]
    image_version: String,
    /// Architecture recorded in the EIF header.
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchArg,
    /// PEM certificate to sign the image with (gives PCR8).
    #[arg(long, requires = "private_key")]
    signing_certificate: Option<PathBuf>,
    /// PEM private key matching --signing-certificate, or a KMS key ARN.
    #[arg(long, requires = "signing_certificate")]
    private_key: Option<String>,
    /// Accept a binary built with the mock NSM (dev images only; refused otherwise).
    #[arg(long)]
    allow_mock: bool,
}

impl ImageArgs {
    pub fn into_spec(self) -> ImageSpec {
        ImageSpec {
            kernel: self.kernel,
            kernel_config: self.kernel_config,
            cmdline: self.cmdline,
            init: self.init,
            nsm_ko: self.nsm_ko,
            binary: self.binary,
            args: self.args,
            env: self.env,
            extra_ramdisks: self.ramdisks,
            source_date_epoch: self.source_date_epoch,
            image_name: self.image_name,
            image_version: self.image_version,
            arch: match self.arch {
                ArchArg::X86_64 => Arch::X86_64,
                ArchArg::Aarch64 => Arch::Aarch64,
            },
            signing: self
                .signing_certificate
                .zip(self.private_key)
                .map(|(certificate, key)| Signing { certificate, key }),
            allow_mock: self.allow_mock,
        }
    }
}
