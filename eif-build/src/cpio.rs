//! A small, deterministic writer for the `newc` cpio format (the one the Linux kernel unpacks as an
//! initramfs).
//!
//! Everything that varies between machines or runs in a general-purpose archiver is fixed here, so the
//! same entries always give the same bytes:
//! - entries are written sorted by path (byte order), so a parent directory always precedes its children
//!   (a parent path is a prefix of its child's, hence sorts first); the root `.` comes first;
//! - owner and group are 0, modes are the ones the caller gave (no umask), and every entry gets the same
//!   `mtime` (`SOURCE_DATE_EPOCH`);
//! - inode numbers are 1, 2, 3… in written order; there are no hard links;
//! - every directory is added explicitly: adding `a/b` without `a` is an error, not an implicit mkdir.
//!
//! Format (kernel `Documentation/driver-api/early-userspace/buffer-format.rst`): each entry is the
//! 110-byte ASCII header `070701` + 13 eight-digit hex fields, the NUL-terminated name, padding to a
//! multiple of 4, the data, padding to a multiple of 4; the archive ends with the entry `TRAILER!!!`.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};

/// `newc` magic (no header checksum).
const NEWC_MAGIC: &str = "070701";
/// Name of the entry that closes a cpio archive.
const TRAILER: &str = "TRAILER!!!";
/// Path of the archive's root directory entry.
pub const ROOT: &str = ".";

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
/// Permission bits we allow callers to set (includes setuid/setgid/sticky).
const PERM_MASK: u32 = 0o7777;
/// The header stores sizes as 8 hex digits; refuse anything that does not fit rather than wrap.
const MAX_FIELD: u64 = u32::MAX as u64;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    CharDev { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    perm: u32,
    kind: Kind,
}

/// An archive being assembled; [`Archive::to_bytes`] writes it.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive (not even the root directory).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a directory. `path` is relative (`dev`, `rootfs/usr`), or [`ROOT`].
    ///
    /// # Errors
    /// On an invalid or duplicate path, or permission bits outside `0o7777`.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<&mut Self> {
        self.insert(path, perm, Kind::Dir)
    }

    /// Add a regular file with the given contents.
    ///
    /// # Errors
    /// As [`Archive::dir`], and for a file larger than 4 GiB (the format's limit).
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<&mut Self> {
        ensure!(
            data.len() as u64 <= MAX_FIELD,
            "cpio entry {path:?} is {} bytes, more than the newc format can hold",
            data.len()
        );
        self.insert(path, perm, Kind::File(data))
    }

    /// Add a character device node (for example `dev/console`, 5:1).
    ///
    /// # Errors
    /// As [`Archive::dir`].
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<&mut Self> {
        self.insert(path, perm, Kind::CharDev { major, minor })
    }

    fn insert(&mut self, path: &str, perm: u32, kind: Kind) -> Result<&mut Self> {
        validate_path(path)?;
        ensure!(
            perm & !PERM_MASK == 0,
            "cpio entry {path:?}: mode {perm:o} has bits outside 7777"
        );
        if path == ROOT {
            ensure!(kind == Kind::Dir, "cpio root {ROOT:?} must be a directory");
        }
        if self.entries.contains_key(path) {
            bail!("cpio entry {path:?} added twice");
        }
        self.entries.insert(path.to_owned(), Entry { perm, kind });
        Ok(self)
    }

    /// Serialise the archive, every entry stamped with `mtime` (seconds since the epoch).
    ///
    /// # Errors
    /// If an entry's parent directory was not added, or `mtime` does not fit the format's 32 bits.
    pub fn to_bytes(&self, mtime: u64) -> Result<Vec<u8>> {
        ensure!(
            mtime <= MAX_FIELD,
            "SOURCE_DATE_EPOCH {mtime} does not fit the cpio mtime field (max {MAX_FIELD})"
        );
        for path in self.entries.keys() {
            if let Some(parent) = parent_of(path) {
                match self.entries.get(parent) {
                    Some(Entry {
                        kind: Kind::Dir, ..
                    }) => {}
                    _ => bail!("cpio entry {path:?}: parent directory {parent:?} was not added"),
                }
            }
        }
        let mut out = Vec::new();
        // BTreeMap iterates in byte order of the path; "." sorts before every name we use, but put it
        // first explicitly so the rule does not depend on the names.
        let root = self.entries.get_key_value(ROOT);
        let rest = self.entries.iter().filter(|(p, _)| p.as_str() != ROOT);
        for (ino, (path, entry)) in root.into_iter().chain(rest).enumerate() {
            let ino = ino as u64 + 1;
            let (mode, nlink, data, rdev) = match &entry.kind {
                Kind::Dir => (S_IFDIR | entry.perm, 2, &[][..], (0, 0)),
                Kind::File(data) => (S_IFREG | entry.perm, 1, data.as_slice(), (0, 0)),
                Kind::CharDev { major, minor } => {
                    (S_IFCHR | entry.perm, 1, &[][..], (*major, *minor))
                }
            };
            let header = Header {
                ino,
                mode,
                nlink,
                mtime,
                rdev,
            };
            write_entry(&mut out, &header, path, data);
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            rdev: (0, 0),
        };
        write_entry(&mut out, &trailer, TRAILER, &[]);
        Ok(out)
    }
}

struct Header {
    ino: u64,
    mode: u32,
    nlink: u32,
    mtime: u64,
    rdev: (u32, u32),
}

fn write_entry(out: &mut Vec<u8>, h: &Header, name: &str, data: &[u8]) {
    let namesize = name.len() as u64 + 1;
    let fields: [u64; 13] = [
        h.ino,
        u64::from(h.mode),
        0, // uid
        0, // gid
        u64::from(h.nlink),
        h.mtime,
        data.len() as u64,
        0, // devmajor
        0, // devminor
        u64::from(h.rdev.0),
        u64::from(h.rdev.1),
        namesize,
        0, // check (unused by newc)
    ];
    out.extend_from_slice(NEWC_MAGIC.as_bytes());
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The parent directory that must be in the archive: none for top-level names (the kernel unpacks into an
/// existing root), the prefix before the last `/` otherwise.
fn parent_of(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

fn validate_path(path: &str) -> Result<()> {
    if path == ROOT {
        return Ok(());
    }
    ensure!(!path.is_empty(), "cpio entry with an empty path");
    ensure!(
        !path.starts_with('/') && !path.ends_with('/'),
        "cpio path {path:?} must be relative, without a leading or trailing '/'"
    );
    ensure!(path != TRAILER, "cpio path {TRAILER:?} is reserved");
    for part in path.split('/') {
        ensure!(
            !part.is_empty() && part != "." && part != "..",
            "cpio path {path:?} has an empty, '.' or '..' component"
        );
    }
    ensure!(
        !path.bytes().any(|b| b == 0 || b.is_ascii_control()),
        "cpio path {path:?} contains a control character"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("init", 0o755, b"#!init".to_vec()).unwrap();
        a.dir("dev", 0o755).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.dir(ROOT, 0o755).unwrap();
        a
    }

    #[test]
    fn entries_are_sorted_with_root_first_and_sequential_inodes() {
        let bytes = sample().to_bytes(7).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let names: Vec<usize> = [".\0", "dev\0", "dev/console\0", "init\0", "TRAILER!!!\0"]
            .iter()
            .map(|n| text.find(n).unwrap())
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        // First header: inode 1, directory 040755, uid/gid 0, nlink 2, mtime 7.
        assert_eq!(
            &bytes[..6 + 8 * 6],
            b"07070100000001000041ed00000000000000000000000200000007"
        );
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn same_entries_give_same_bytes_and_mtime_changes_them() {
        let a = sample().to_bytes(0).unwrap();
        assert_eq!(a, sample().to_bytes(0).unwrap());
        assert_ne!(a, sample().to_bytes(1).unwrap());
    }

    #[test]
    fn missing_parent_directory_is_an_error() {
        let mut a = Archive::new();
        a.file("usr/bin/x", 0o755, vec![1]).unwrap();
        let err = a.to_bytes(0).unwrap_err().to_string();
        assert!(err.contains("parent directory \"usr/bin\""), "{err}");
    }

    #[test]
    fn bad_paths_and_modes_are_refused() {
        let mut a = Archive::new();
        for p in ["/abs", "a/../b", "a//b", "", "trailing/", "TRAILER!!!"] {
            assert!(a.dir(p, 0o755).is_err(), "{p:?} accepted");
        }
        assert!(a.file("x", 0o10755, vec![]).is_err());
        a.dir("x", 0o755).unwrap();
        assert!(a.dir("x", 0o755).is_err(), "duplicate accepted");
        assert!(a.file(ROOT, 0o755, vec![]).is_err());
    }

    #[test]
    fn mtime_beyond_32_bits_is_refused() {
        assert!(sample().to_bytes(u64::from(u32::MAX) + 1).is_err());
    }
}
