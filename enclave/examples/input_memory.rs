//! Peak memory of the worst inputs the host can send: a 16 MiB frame body that does not decode
//! (the codec's fallback path) and 1 MiB NATS payloads shaped to cost the most once parsed.
//!
//! Each case runs in a child process of its own (this binary re-run with `--child CASE`), so its
//! figure is the child's own high-water mark (`VmHWM` in `/proc/self/status`) and nothing earlier
//! cases left in the allocator counts. The child builds its input, reads `VmHWM`, decodes, reads it
//! again: the difference is what decoding that input cost at its peak.
//!
//! ```text
//! cargo run -p vettid-enclave --features vettid-enclave/dev --example input_memory
//! ```

#![allow(missing_docs, clippy::print_stdout)]

use std::process::Command;
use std::time::Instant;

use vettid_protocol::codec::decode_body;
use vettid_protocol::{Decoded, ToEnclave, DEFAULT_MAX_FRAME_LEN};

/// Every case: name, what it is.
const CASES: &[(&str, &str)] = &[
    (
        "frame-array",
        "req frame whose body is an array of 1-byte ints (fails the typed decode)",
    ),
    (
        "frame-map",
        "req frame whose body is a map of 1-byte int pairs (fails the typed decode)",
    ),
    (
        "frame-hello",
        "hello frame with millions of empty capability strings (typed decode)",
    ),
    ("json-deep-array", "1 MiB of `[`"),
    ("json-deep-object", "1 MiB of `{\"a\":`"),
    (
        "json-many-keys",
        "one object with ~100k keys `\"k000001\":0`",
    ),
    (
        "json-small-objects",
        "`{\"a\":[{\"\":0},…]}`: ~150k one-key objects",
    ),
    ("json-many-numbers", "`{\"a\":[0,0,…]}`: ~500k numbers"),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, case] = args.as_slice() {
        if flag == "--child" {
            child(case);
            return;
        }
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| case | input bytes | decode peak (VmHWM delta) | peak / input | result | ms |");
    println!("|---|---:|---:|---:|---|---:|");
    for (case, _) in CASES {
        let out = Command::new(&exe)
            .args(["--child", case])
            .output()
            .expect("child runs");
        let line = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            println!(
                "| {case} | child failed: {} |",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        print!("{line}");
    }
    println!();
    for (case, what) in CASES {
        println!("- `{case}`: {what}");
    }
}

fn child(case: &str) {
    let input = build(case);
    let before = hwm_kib();
    let start = Instant::now();
    let result = run(case, &input);
    let ms = start.elapsed().as_millis();
    let after = hwm_kib();
    let delta = after.saturating_sub(before) * 1024;
    println!(
        "| {case} | {} | {:.1} MiB | {:.1}x | {result} | {ms} |",
        input.len(),
        delta as f64 / (1024.0 * 1024.0),
        delta as f64 / input.len() as f64,
    );
}

fn run(case: &str, input: &[u8]) -> String {
    if case.starts_with("frame") {
        match decode_body::<ToEnclave>(input) {
            Decoded::Frame(f) => format!("decoded {:?}", f.kind()),
            Decoded::Invalid { id, error } => format!("{:?} (id {id:?})", error.code),
        }
    } else {
        match vettid_enclave::reply::parse_object(input) {
            Ok(m) => format!("parsed ({} keys)", m.len()),
            Err(e) => format!("refused: {}", e.code()),
        }
    }
}

/// `VmHWM` of this process, in KiB.
fn hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

const JSON_LEN: usize = 1024 * 1024;

fn build(case: &str) -> Vec<u8> {
    let input = match case {
        "frame-array" => frame_req(|out, room| {
            array_header(out, room - 5);
            out.resize(out.len() + room - 5, 0x00);
        }),
        "frame-map" => frame_req(|out, room| {
            let pairs = (room - 5) / 2;
            map_header(out, pairs);
            out.resize(out.len() + pairs * 2, 0x00);
        }),
        "frame-hello" => frame_hello(),
        "json-deep-array" => vec![b'['; JSON_LEN],
        "json-deep-object" => b"{\"a\":".repeat(JSON_LEN / 5),
        "json-many-keys" => {
            let mut s = String::from("{");
            let mut i = 0;
            while s.len() + 18 < JSON_LEN {
                s.push_str(&format!("\"k{i:06}\":0,"));
                i += 1;
            }
            s.push_str("\"z\":0}");
            s.into_bytes()
        }
        "json-small-objects" => json_array_of(b"{\"\":0},"),
        "json-many-numbers" => json_array_of(b"0,"),
        other => panic!("unknown case {other}"),
    };
    if case.starts_with("json") {
        assert!(input.len() <= JSON_LEN, "{case} is over the payload cap");
    }
    input
}

fn json_array_of(item: &[u8]) -> Vec<u8> {
    let mut s = b"{\"a\":[".to_vec();
    while s.len() + item.len() + 4 < JSON_LEN {
        s.extend_from_slice(item);
    }
    s.extend_from_slice(b"0]}");
    s
}

/// `["req", 1, 1000, body]` filling a whole 16 MiB frame body.
fn frame_req(body: impl FnOnce(&mut Vec<u8>, usize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEFAULT_MAX_FRAME_LEN);
    out.extend_from_slice(&[0x84, 0x63, b'r', b'e', b'q', 0x01, 0x19, 0x03, 0xe8]);
    let room = DEFAULT_MAX_FRAME_LEN - out.len();
    body(&mut out, room);
    assert!(out.len() <= DEFAULT_MAX_FRAME_LEN);
    out
}

/// A hello whose `capabilities` are as many empty strings as fit in 16 MiB.
fn frame_hello() -> Vec<u8> {
    let mut out = Vec::with_capacity(DEFAULT_MAX_FRAME_LEN);
    out.extend_from_slice(&[0x84, 0x65, b'h', b'e', b'l', b'l', b'o', 0xf6, 0xf6, 0xa5]);
    text(&mut out, "protocol_version");
    out.push(0x01);
    text(&mut out, "role");
    text(&mut out, "parent");
    text(&mut out, "software");
    text(&mut out, "");
    text(&mut out, "max_frame_len");
    out.extend_from_slice(&[0x1a, 0x01, 0x00, 0x00, 0x00]);
    text(&mut out, "capabilities");
    let n = DEFAULT_MAX_FRAME_LEN - out.len() - 5;
    array_header(&mut out, n);
    out.resize(out.len() + n, 0x60);
    out
}

fn text(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 24);
    out.push(0x60 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(0x9a);
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn map_header(out: &mut Vec<u8>, n: usize) {
    out.push(0xba);
    out.extend_from_slice(&(n as u32).to_be_bytes());
}
