//! The two ramdisks we build, and where every file goes.
//!
//! Nitro measures ramdisks by position: the kernel, the command line and the **first** ramdisk make PCR1
//! ("kernel and bootstrap"), every later ramdisk makes PCR2 ("application"). So the layout is the one
//! `nitro-cli build-enclave` uses, split the same way:
//!
//! - **bootstrap** (first, PCR1): `/init` (the Nitro init from aws-nitro-enclaves-cli's blobs), `/nsm.ko` when
//!   given (kernels before 6.8; the AWS init skips it when absent), `/dev` and `/dev/console` (5:1, so the
//!   kernel has a console before init mounts devtmpfs).
//! - **application** (second, PCR2): `/cmd` and `/env` (read by the AWS init, one entry per line), and the
//!   root file system it `chroot`s into: `/rootfs` with the mount points the init expects to exist
//!   (`dev`, `proc`, `run`, `sys`, `tmp`) and our binary at [`ENCLAVE_BINARY_PATH`].
//!
//! A rebuilt `vettid-enclave` therefore changes PCR2 (and PCR0, which covers everything) but never PCR1.

use anyhow::{ensure, Context, Result};

use crate::cpio::{Archive, ROOT};

/// Where the enclave binary lives inside the enclave's root file system.
pub const ENCLAVE_BINARY_PATH: &str = "/usr/local/bin/vettid-enclave";

/// Longest single `--arg` / `--env` line accepted; the AWS init reads them with `getline`, and anything this
/// long is a mistake.
pub const MAX_LINE_LEN: usize = 4096;

/// Inputs of the bootstrap ramdisk.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The init binary, placed at `/init`.
    pub init: Vec<u8>,
    /// The NSM driver module, placed at `/nsm.ko` when present.
    pub nsm_ko: Option<Vec<u8>>,
}

/// Inputs of the application ramdisk.
#[derive(Debug, Clone)]
pub struct Application {
    /// The `vettid-enclave` binary, placed at `/rootfs` + [`ENCLAVE_BINARY_PATH`].
    pub binary: Vec<u8>,
    /// Extra arguments after the binary path, one per line of `/cmd`.
    pub args: Vec<String>,
    /// `KEY=VALUE` lines of `/env`, in the given order.
    pub env: Vec<String>,
}

impl Bootstrap {
    /// The bootstrap ramdisk as a cpio archive.
    ///
    /// # Errors
    /// Only if `mtime` does not fit the cpio format.
    pub fn to_cpio(&self, mtime: u64) -> Result<Vec<u8>> {
        let mut a = Archive::new();
        a.dir(ROOT, 0o755)?
            .dir("dev", 0o755)?
            .char_dev("dev/console", 0o600, 5, 1)?
            .file("init", 0o755, self.init.clone())?;
        if let Some(nsm) = &self.nsm_ko {
            a.file("nsm.ko", 0o644, nsm.clone())?;
        }
        a.to_bytes(mtime).context("writing the bootstrap ramdisk")
    }
}

impl Application {
    /// The application ramdisk as a cpio archive.
    ///
    /// # Errors
    /// If an argument or environment line is invalid (see [`lines`]), or `mtime` does not fit.
    pub fn to_cpio(&self, mtime: u64) -> Result<Vec<u8>> {
        for e in &self.env {
            ensure!(
                e.split_once('=').is_some_and(|(k, _)| !k.is_empty()),
                "--env {e:?} is not KEY=VALUE"
            );
        }
        let cmd = lines(
            std::iter::once(ENCLAVE_BINARY_PATH).chain(self.args.iter().map(String::as_str)),
        )?;
        let env = lines(self.env.iter().map(String::as_str))?;

        let mut a = Archive::new();
        a.dir(ROOT, 0o755)?
            .file("cmd", 0o644, cmd)?
            .file("env", 0o644, env)?
            .dir("rootfs", 0o755)?;
        // Mount points the AWS init uses after chroot (it mounts onto them, it does not create them).
        for d in ["dev", "proc", "run", "sys"] {
            a.dir(&format!("rootfs/{d}"), 0o755)?;
        }
        a.dir("rootfs/tmp", 0o1777)?;
        let mut path = String::from("rootfs");
        let (dirs, _file) = ENCLAVE_BINARY_PATH
            .trim_start_matches('/')
            .rsplit_once('/')
            .context("binary path has a directory")?;
        for part in dirs.split('/') {
            path.push('/');
            path.push_str(part);
            a.dir(&path, 0o755)?;
        }
        a.file(
            &format!("rootfs{ENCLAVE_BINARY_PATH}"),
            0o755,
            self.binary.clone(),
        )?;
        a.to_bytes(mtime).context("writing the application ramdisk")
    }
}

/// Newline-terminated lines, as the AWS init's `read_config` expects; an empty list is an empty file.
fn lines<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for item in items {
        ensure!(
            !item.is_empty() && !item.contains(['\n', '\0']),
            "command or environment line {item:?} is empty or contains a newline or NUL"
        );
        ensure!(
            item.len() <= MAX_LINE_LEN,
            "command or environment line is longer than {MAX_LINE_LEN} bytes"
        );
        out.extend_from_slice(item.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Application {
        Application {
            binary: vec![0x7f, b'E', b'L', b'F'],
            args: vec!["--config".into(), "/etc/x.toml".into()],
            env: vec!["RUST_LOG=info".into()],
        }
    }

    fn names(cpio: &[u8]) -> Vec<String> {
        // Walk the newc headers: namesize is field 12 (offset 94), filesize field 7 (offset 54).
        let mut out = Vec::new();
        let mut pos = 0;
        let field = |at: usize| {
            usize::from_str_radix(std::str::from_utf8(&cpio[at..at + 8]).unwrap(), 16).unwrap()
        };
        loop {
            let namesize = field(pos + 94);
            let filesize = field(pos + 54);
            let name =
                String::from_utf8(cpio[pos + 110..pos + 110 + namesize - 1].to_vec()).unwrap();
            pos = (pos + 110 + namesize).next_multiple_of(4);
            pos = (pos + filesize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                return out;
            }
            out.push(name);
        }
    }

    #[test]
    fn application_layout_matches_the_aws_init() {
        let cpio = app().to_cpio(0).unwrap();
        assert_eq!(
            names(&cpio),
            [
                ".",
                "cmd",
                "env",
                "rootfs",
                "rootfs/dev",
                "rootfs/proc",
                "rootfs/run",
                "rootfs/sys",
                "rootfs/tmp",
                "rootfs/usr",
                "rootfs/usr/local",
                "rootfs/usr/local/bin",
                "rootfs/usr/local/bin/vettid-enclave",
            ]
        );
        let text = String::from_utf8_lossy(&cpio);
        assert!(text.contains("/usr/local/bin/vettid-enclave\n--config\n/etc/x.toml\n"));
    }

    #[test]
    fn bootstrap_layout() {
        let b = Bootstrap {
            init: b"init".to_vec(),
            nsm_ko: Some(b"ko".to_vec()),
        };
        assert_eq!(
            names(&b.to_cpio(0).unwrap()),
            [".", "dev", "dev/console", "init", "nsm.ko"]
        );
    }

    #[test]
    fn bad_env_and_args_are_refused() {
        let mut a = app();
        a.env = vec!["NOEQUALS".into()];
        assert!(a.to_cpio(0).is_err());
        let mut a = app();
        a.args = vec!["two\nlines".into()];
        assert!(a.to_cpio(0).is_err());
    }
}
