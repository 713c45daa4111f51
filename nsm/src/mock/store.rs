//! Persisting the mock root, so it survives enclave restarts.
//!
//! Clients verify dev documents against `$VETTID_DEV_DIR/mock-root.pem`; if the root changed on
//! every start, every client would need the new file every time. Two files live in the directory:
//! the root's PKCS#8 DER key (mode 0600) and its certificate in PEM. The key is written last, so
//! a key file present means the certificate was written before it.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use zeroize::Zeroizing;

use super::ca::Root;
use crate::NsmError;

/// File name of the mock root's private key (PKCS#8 DER, mode 0600).
pub const ROOT_KEY_FILE: &str = "mock-root.key";
/// File name of the mock root's certificate (PEM); the trust anchor dev clients load.
pub const ROOT_CERT_FILE: &str = "mock-root.pem";

/// Load the root from `dir`, or create and store a new one when `dir` holds neither file.
pub(crate) fn load_or_create(
    dir: &Path,
    rng: &SystemRandom,
    now_ms: u64,
) -> Result<Root, NsmError> {
    let key_path = dir.join(ROOT_KEY_FILE);
    let cert_path = dir.join(ROOT_CERT_FILE);
    match (exists(&key_path)?, exists(&cert_path)?) {
        (true, true) => load(dir, &key_path, &cert_path),
        (false, false) => create(dir, &key_path, &cert_path, rng, now_ms),
        // Never overwrite half a root: a client may already trust the certificate that is there.
        _ => Err(NsmError::MockRoot {
            dir: dir.to_owned(),
            reason: "only one of mock-root.key and mock-root.pem exists; delete the other to create a new root",
        }),
    }
}

fn load(dir: &Path, key_path: &Path, cert_path: &Path) -> Result<Root, NsmError> {
    let mode = fs::metadata(key_path)
        .map_err(|e| io("reading", key_path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %key_path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "mock root key is readable by other users; expected mode 0600"
        );
    }
    let key = Zeroizing::new(fs::read(key_path).map_err(|e| io("reading", key_path, e))?);
    let pem = fs::read_to_string(cert_path).map_err(|e| io("reading", cert_path, e))?;
    let root = Root::from_parts(&key, &pem).map_err(|reason| NsmError::MockRoot {
        dir: dir.to_owned(),
        reason,
    })?;
    tracing::info!(dir = %dir.display(), "loaded the mock NSM root");
    Ok(root)
}

fn create(
    dir: &Path,
    key_path: &Path,
    cert_path: &Path,
    rng: &SystemRandom,
    now_ms: u64,
) -> Result<Root, NsmError> {
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let (root, pkcs8) = Root::generate(rng, now_ms)?;
    write_atomically(cert_path, root.pem().as_bytes(), 0o644)?;
    write_atomically(key_path, &pkcs8, 0o600)?;
    tracing::info!(
        cert = %cert_path.display(),
        "created a new mock NSM root; dev clients must trust this file"
    );
    Ok(root)
}

/// Write to `path.tmp` with `mode`, flush to disk, then rename over `path`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NsmError> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("writing", &tmp, e))?;
    // `mode` applies only when the file is created; a stale tmp file keeps its old mode.
    file.set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("renaming into place", path, e))
}

fn exists(path: &Path) -> Result<bool, NsmError> {
    path.try_exists().map_err(|e| io("checking", path, e))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> NsmError {
    NsmError::MockIo {
        action,
        path: path.to_owned(),
        source,
    }
}
