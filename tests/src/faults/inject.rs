//! How each part is broken and repaired on a running [`System`] ([`inject`]): processes killed,
//! stopped or restarted; the fs object store broken, or hung under its own lock; the KMS key
//! policy or the key's state changed; the trusted store's stand-in switched to a fault or its
//! path cut ([`trusted_broken`]); and the least time each break must last.
//!
//! Separate because it is the only code that reaches into the system's internals (its storage
//! root, its children, its stand-in). The rows ([`Fault`]) say what a break may cause, not how it
//! is made.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Fault, Load};
use crate::kms::KmsOptions;
use crate::system::{System, SystemOptions};

/// Breaks (or repairs) the fs object store: its root is replaced by a file, so every read and
/// write fails at once.
///
/// # Panics
/// If the root cannot be moved.
pub fn objects_broken(sys: &System, broken: bool) {
    let root = sys.storage_root();
    let aside = root.with_extension("aside");
    if broken {
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
    } else {
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
    }
}

/// Makes `owner`'s stored object hang: the file is replaced by a FIFO with no writer, so the
/// parent's read (under its per-vault lock) blocks until [`store_unhang`].
///
/// # Panics
/// If the object cannot be moved or `mkfifo` fails.
pub fn store_hang(sys: &System, owner: &str) -> PathBuf {
    let object = sys
        .storage_root()
        .join("vaults")
        .join(owner)
        .join("vault.v2@");
    let aside = object.with_extension("aside");
    // Under the store's own per-object lock, so no write is half done across the swap.
    let _lock = store_lock(&object);
    std::fs::rename(&object, &aside).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&object)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    object
}

/// Ends the hang: the FIFO is moved away first (so queued writers find no object and conflict
/// rather than write), then opened for writing once (waking the blocked reader with an empty
/// read, which also conflicts), then the real object is put back.
///
/// # Panics
/// If the files cannot be moved.
pub fn store_unhang(object: &Path) {
    let fifo = object.with_extension("fifo");
    std::fs::rename(object, &fifo).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: fails (ENXIO) instead of waiting if no reader is blocked any more.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(2048)
            .open(&fifo);
    }
    std::fs::remove_file(&fifo).unwrap();
    let _lock = store_lock(object);
    std::fs::rename(object.with_extension("aside"), object).unwrap();
}

/// The fs store's lock file for `object` (`NAME@` → `NAME@lock`), locked.
fn store_lock(object: &Path) -> std::fs::File {
    let lock = PathBuf::from(format!("{}lock", object.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .unwrap();
    file.lock().unwrap();
    file
}

/// How late [`Fault::TrustedSlow`]'s table answers: past the enclave's attempt timeout (1 s), so
/// every attempt gives up, yet short of its operation budget (3 s), so the SDK retries.
pub const TRUSTED_SLOW: Duration = Duration::from_millis(1500);

/// Breaks `fault`'s part, waits `outage`, repairs it.
/// Returns the second host's enclave log for [`Fault::StoreConflict`] (empty otherwise).
pub(super) async fn inject(
    sys: &mut System,
    fault: Fault,
    outage: Duration,
    owners: &[String],
    load: &Load,
) -> String {
    use tokio::task::block_in_place as block;
    match fault {
        Fault::NatsRestart => {
            block(|| sys.nats.stop());
            tokio::time::sleep(outage).await;
            block(|| sys.nats.restart());
        }
        Fault::EnclaveKill => {
            load.until_in_flight(Duration::from_secs(2)).await;
            block(|| sys.kill_enclave());
            tokio::time::sleep(outage).await;
            block(|| sys.start_enclave());
        }
        Fault::ParentTerm => {
            if let Some(p) = sys.parent.as_mut() {
                p.signal("TERM");
                block(|| p.wait_exit(Duration::from_secs(15)));
            }
            tokio::time::sleep(outage).await;
            block(|| sys.start_parent());
        }
        Fault::ParentKill => {
            load.until_in_flight(Duration::from_secs(2)).await;
            if let Some(mut p) = sys.parent.take() {
                block(|| p.kill());
            }
            tokio::time::sleep(outage).await;
            block(|| sys.start_parent());
        }
        Fault::StoreErrors => {
            objects_broken(sys, true);
            tokio::time::sleep(outage).await;
            objects_broken(sys, false);
        }
        Fault::StoreHang => {
            let hung: Vec<PathBuf> = owners.iter().map(|o| store_hang(sys, o)).collect();
            tokio::time::sleep(outage).await;
            for h in &hung {
                store_unhang(h);
            }
        }
        Fault::StoreConflict => {
            let first = &*sys;
            let mut second = block(|| {
                System::start_second_host(
                    first,
                    SystemOptions {
                        kms: Some(KmsOptions::default()),
                        storage_root: Some(first.storage_root()),
                        ..SystemOptions::default()
                    },
                )
            });
            tokio::time::sleep(outage).await;
            // It leaves as an operator would stop it: drained, every request it took answered.
            if let Some(p) = second.parent.as_mut() {
                p.signal("TERM");
                block(|| p.wait_exit(Duration::from_secs(15)));
            }
            let log = second
                .enclave
                .as_ref()
                .map(crate::Child::log)
                .unwrap_or_default();
            drop(second);
            return log;
        }
        Fault::KmsDeny => {
            let deny = KmsOptions {
                allow_pcr0: Some(vec!["ab".repeat(48)]),
                ..KmsOptions::default()
            };
            let kms = sys.kms.as_mut().expect("the row's system has a KMS");
            block(|| kms.restart(deny));
            tokio::time::sleep(outage).await;
            block(|| kms.restart(KmsOptions::default()));
        }
        Fault::KmsDisabled => {
            let admin = sys
                .kms
                .as_ref()
                .expect("the row's system has a KMS")
                .client();
            admin
                .disable_key()
                .key_id(crate::kms::KEY_ID)
                .send()
                .await
                .expect("DisableKey");
            tokio::time::sleep(outage).await;
            admin
                .enable_key()
                .key_id(crate::kms::KEY_ID)
                .send()
                .await
                .expect("EnableKey");
        }
        Fault::KmsHang => {
            let kms = sys.kms.as_ref().expect("the row's system has a KMS");
            kms.child.signal("STOP");
            tokio::time::sleep(outage.max(KMS_HANG)).await;
            kms.child.signal("CONT");
        }
        Fault::TrustedDown
        | Fault::TrustedSlow
        | Fault::TrustedThrottled
        | Fault::TrustedDenied
        | Fault::TrustedDropped => {
            block(|| trusted_broken(sys, fault, true));
            load.broken_at(Instant::now());
            let outage = outage.max(TRUSTED_OUTAGE);
            tokio::time::sleep(outage).await;
            load.repairing_at(Instant::now());
            block(|| trusted_broken(sys, fault, false));
        }
    }
    String::new()
}

/// A trusted-store outage lasts at least this long: a call may take the enclave's whole 3 s
/// budget (a slow table, or the SDK's backoff between attempts on a refused connection), so a
/// shorter outage may see no probe both sent and answered in it, and the fail-closed check
/// ([`FailClosed`](super::FailClosed)) would have nothing to count.
pub const TRUSTED_OUTAGE: Duration = Duration::from_secs(5);

/// Breaks (`true`) or repairs (`false`) the trusted store for `fault` (one of
/// [`Fault::trusted`]), on the row's own stand-in.
///
/// # Panics
/// If the system has no stand-in of its own, or the fault is not a trusted-store one.
pub fn trusted_broken(sys: &mut System, fault: Fault, broken: bool) {
    let s = sys
        .stand_in
        .as_mut()
        .expect("the row's system has its own stand-in");
    match (fault, broken) {
        (Fault::TrustedDown, true) => s.dynamo.kill(),
        (Fault::TrustedDown, false) => s.dynamo.restart(),
        (Fault::TrustedSlow, true) => s
            .dynamo
            .set_fault(Some(&format!("delay {}", TRUSTED_SLOW.as_millis()))),
        (Fault::TrustedThrottled, true) => s.dynamo.set_fault(Some("throttle")),
        (Fault::TrustedDenied, true) => s.dynamo.set_fault(Some("deny")),
        (Fault::TrustedSlow | Fault::TrustedThrottled | Fault::TrustedDenied, false) => {
            s.dynamo.set_fault(None);
        }
        (Fault::TrustedDropped, cut) => s.cut.set(cut),
        (other, _) => panic!("{other:?} is not a trusted-store fault"),
    }
}

/// The KMS hang lasts at least this long: past the harness parent's 5 s deadline, so the
/// enclave's own bound on KMS calls (the parent's deadline, which the enclave applies to them) is
/// what answers the requests waiting on it.
pub const KMS_HANG: Duration = Duration::from_secs(6);
