//! Shared helpers: run the real binary, make fixed inputs, and read an EIF without the image crate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha384};

/// The `eif-build` binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eif-build"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Run and require success; returns stdout as JSON.
pub fn run_ok(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("spawn eif-build");
    assert!(
        out.status.success(),
        "eif-build failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Run and require failure; returns the output.
pub fn run_err(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn eif-build");
    assert!(
        !out.status.success(),
        "eif-build unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// `len` bytes of a fixed xorshift stream: looks random, is the same every run.
pub fn fixed_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on";

/// Stand-in inputs written to `dir`.
pub struct Inputs {
    pub kernel: PathBuf,
    pub init: PathBuf,
    pub binary: PathBuf,
}

impl Inputs {
    pub fn write(dir: &Path) -> Self {
        let kernel = dir.join("bzImage");
        let init = dir.join("init");
        let binary = dir.join("vettid-enclave");
        std::fs::write(&kernel, fixed_bytes(0x6b65_726e_656c, 256 * 1024)).unwrap();
        std::fs::write(&init, b"\x7fELF fake init").unwrap();
        std::fs::write(&binary, fixed_bytes(0x6269_6e61_7279, 64 * 1024)).unwrap();
        Self {
            kernel,
            init,
            binary,
        }
    }

    /// `eif-build <sub> --kernel … --cmdline … --init … --binary …`.
    pub fn command(&self, sub: &str) -> Command {
        let mut c = bin();
        c.arg(sub)
            .arg("--kernel")
            .arg(&self.kernel)
            .args(["--cmdline", CMDLINE])
            .arg("--init")
            .arg(&self.init)
            .arg("--binary")
            .arg(&self.binary);
        c
    }
}

/// Section types of the EIF format (`EifSectionType`).
pub const KERNEL: u16 = 1;
pub const CMDLINE_SECTION: u16 = 2;
pub const RAMDISK: u16 = 3;
pub const SIGNATURE: u16 = 4;
pub const METADATA: u16 = 5;

pub const HEADER_LEN: usize = 548;

/// An EIF read by hand from the published layout: a 548-byte big-endian header, then sections of a
/// 12-byte header (type u16, flags u16, size u64) followed by the data.
pub struct Parsed {
    pub version: u16,
    pub num_sections: u16,
    pub offsets: Vec<u64>,
    pub sizes: Vec<u64>,
    pub crc: u32,
    pub sections: Vec<(u16, Vec<u8>)>,
}

pub fn parse_eif(bytes: &[u8]) -> Parsed {
    assert_eq!(&bytes[..4], b".eif", "magic");
    let be16 = |at: usize| u16::from_be_bytes(bytes[at..at + 2].try_into().unwrap());
    let be64 = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    let version = be16(4);
    let num_sections = be16(26);
    let offsets = (0..32).map(|i| be64(28 + 8 * i)).collect();
    let sizes = (0..32).map(|i| be64(28 + 256 + 8 * i)).collect();
    let crc = u32::from_be_bytes(bytes[544..548].try_into().unwrap());
    let mut sections = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let ty = be16(pos);
        let size = be64(pos + 4) as usize;
        sections.push((ty, bytes[pos + 12..pos + 12 + size].to_vec()));
        pos += 12 + size;
    }
    assert_eq!(pos, bytes.len(), "sections tile the file");
    Parsed {
        version,
        num_sections,
        offsets,
        sizes,
        crc,
        sections,
    }
}

impl Parsed {
    pub fn of_type(&self, ty: u16) -> Vec<&[u8]> {
        self.sections
            .iter()
            .filter(|(t, _)| *t == ty)
            .map(|(_, d)| d.as_slice())
            .collect()
    }
}

/// `SHA-384(48 zero bytes || SHA-384(data))`: one PCR extend from the reset value.
pub fn extend_from_zero(data: &[u8]) -> String {
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(Sha384::digest(data));
    hex::encode(h.finalize())
}

/// PCR0/1/2 recomputed from the parsed sections, as the AWS docs define them: PCR0 the whole image
/// (kernel, cmdline, all ramdisks), PCR1 kernel + cmdline + first (bootstrap) ramdisk, PCR2 the other
/// ramdisks. The metadata and signature sections are not measured.
pub fn independent_pcrs(p: &Parsed) -> [String; 3] {
    let kernel = p.of_type(KERNEL).concat();
    let cmdline = p.of_type(CMDLINE_SECTION).concat();
    let ramdisks = p.of_type(RAMDISK);
    let boot = [kernel.as_slice(), cmdline.as_slice(), ramdisks[0]].concat();
    let app = ramdisks[1..].concat();
    let all = [boot.as_slice(), app.as_slice()].concat();
    [
        extend_from_zero(&all),
        extend_from_zero(&boot),
        extend_from_zero(&app),
    ]
}

/// CRC-32 (IEEE, reflected, as zlib), bitwise.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Entries of a newc cpio: (name, mode, uid, gid, mtime, ino, data).
pub struct CpioEntry {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub ino: u32,
    pub data: Vec<u8>,
}

pub fn parse_cpio(b: &[u8]) -> Vec<CpioEntry> {
    let mut out = Vec::new();
    let mut pos = 0;
    let field = |at: usize, i: usize| {
        u32::from_str_radix(
            std::str::from_utf8(&b[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
            16,
        )
        .unwrap()
    };
    loop {
        assert_eq!(&b[pos..pos + 6], b"070701");
        let namesize = field(pos, 11) as usize;
        let filesize = field(pos, 6) as usize;
        let name = String::from_utf8(b[pos + 110..pos + 110 + namesize - 1].to_vec()).unwrap();
        let data_at = (pos + 110 + namesize).next_multiple_of(4);
        let entry = CpioEntry {
            name,
            mode: field(pos, 1),
            uid: field(pos, 2),
            gid: field(pos, 3),
            mtime: field(pos, 5),
            ino: field(pos, 0),
            data: b[data_at..data_at + filesize].to_vec(),
        };
        pos = (data_at + filesize).next_multiple_of(4);
        if entry.name == "TRAILER!!!" {
            assert_eq!(pos, b.len(), "nothing after the trailer");
            return out;
        }
        out.push(entry);
    }
}
