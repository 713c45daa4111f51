//! What decoding the worst 16 MiB frame bodies costs in memory, measured as the peak RSS
//! (`VmHWM`) of a child process that decodes one body and nothing else.
//!
//! Each test re-runs this test binary with `FRAME_MEMORY_CASE` set; in the child, only
//! [`child_decodes_one_case`] does anything: it builds the body, reads `VmHWM`, decodes, and
//! prints the growth. The parent asserts the growth stays under [`MAX_PEAK_PER_BODY_BYTE`] times
//! the body. Before the outline pass a body of one-byte items cost 32x (serde's `Content` tree in
//! the lenient fallback) and a hello with millions of empty strings 24x.

use std::process::Command;

use vettid_protocol::codec::decode_body;
use vettid_protocol::{Decoded, ErrorCode, ToEnclave, DEFAULT_MAX_FRAME_LEN};

const CASE_VAR: &str = "FRAME_MEMORY_CASE";

/// Peak growth allowed, as a multiple of the body: the body's strings may be copied once into
/// the decoded frame, plus a bounded per-item overhead.
const MAX_PEAK_PER_BODY_BYTE: f64 = 1.5;

/// `["req", 1, 1000, body]` filling the whole 16 MiB cap.
fn request_filled_by(body: impl FnOnce(&mut Vec<u8>, usize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEFAULT_MAX_FRAME_LEN);
    out.extend_from_slice(&[0x84, 0x63, b'r', b'e', b'q', 0x01, 0x19, 0x03, 0xe8]);
    let room = DEFAULT_MAX_FRAME_LEN - out.len();
    body(&mut out, room);
    assert!(out.len() <= DEFAULT_MAX_FRAME_LEN);
    out
}

fn text(out: &mut Vec<u8>, s: &str) {
    out.push(0x60 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn build(case: &str) -> Vec<u8> {
    match case {
        // A body of one-byte ints: fails the typed decode, so it reached the lenient path.
        "array" => request_filled_by(|out, room| {
            out.push(0x9a);
            out.extend_from_slice(&((room - 5) as u32).to_be_bytes());
            out.resize(out.len() + room - 5, 0x00);
        }),
        "map" => request_filled_by(|out, room| {
            let pairs = (room - 5) / 2;
            out.push(0xba);
            out.extend_from_slice(&(pairs as u32).to_be_bytes());
            out.resize(out.len() + pairs * 2, 0x00);
        }),
        // A well-typed hello whose capabilities are millions of empty strings.
        "hello" => {
            let mut out = vec![0x84, 0x65, b'h', b'e', b'l', b'l', b'o', 0xf6, 0xf6, 0xa5];
            for (k, v) in [("role", "parent"), ("software", "")] {
                text(&mut out, k);
                text(&mut out, v);
            }
            text(&mut out, "protocol_version");
            out.push(0x01);
            text(&mut out, "max_frame_len");
            out.extend_from_slice(&[0x1a, 0x01, 0x00, 0x00, 0x00]);
            text(&mut out, "capabilities");
            let n = DEFAULT_MAX_FRAME_LEN - out.len() - 5;
            out.push(0x9a);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.resize(out.len() + n, 0x60);
            out
        }
        // A nats request carrying a 16 MiB payload but no subject: the payload is copied out,
        // then the body is refused.
        "bytes" => request_filled_by(|out, room| {
            out.push(0xa1);
            text(out, "nats");
            out.push(0xa1);
            text(out, "payload");
            let used = out.len() - 9;
            let n = room - used - 5;
            out.push(0x5a);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.resize(out.len() + n, 0xab);
        }),
        other => panic!("unknown case {other}"),
    }
}

fn hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("procfs")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The child's side; does nothing in a normal test run. It reports to the parent on stdout.
/// The child half of every test below, which spawn it with `--ignored`: ignored so a normal run
/// never counts it as a pass; run alone it fails, saying why.
#[test]
#[ignore = "child half of the memory tests, which spawn it"]
#[allow(clippy::print_stdout)]
fn child_decodes_one_case() {
    let case = std::env::var(CASE_VAR)
        .unwrap_or_else(|_| panic!("{CASE_VAR} unset: this child is run by the memory tests only"));
    let body = build(&case);
    let before = hwm_kib();
    let decoded = decode_body::<ToEnclave>(&body);
    let after = hwm_kib();
    let code = match &decoded {
        Decoded::Frame(f) => format!("frame {:?}", f.kind()),
        Decoded::Invalid { id, error } => format!("{:?} {id:?}", error.code),
    };
    println!(
        "PEAK case={case} body={} growth={} result={code}",
        body.len(),
        (after - before) * 1024
    );
}

/// Runs one case in a child and returns (body length, peak growth in bytes, result).
fn measure(case: &str) -> (u64, u64, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_decodes_one_case",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CASE_VAR, case)
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PEAK ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("no measurement in {stdout}"));
    let field = |name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    (
        field("body=").parse().unwrap(),
        field("growth=").parse().unwrap(),
        line.split_once("result=").unwrap().1.to_owned(),
    )
}

fn assert_bounded(case: &str) -> String {
    let (body, growth, result) = measure(case);
    let ratio = growth as f64 / body as f64;
    eprintln!("{case}: body {body} B, peak growth {growth} B ({ratio:.2}x), {result}");
    assert!(
        ratio <= MAX_PEAK_PER_BODY_BYTE,
        "{case}: decoding a {body}-byte body grew RSS by {growth} bytes ({ratio:.1}x)"
    );
    result
}

#[test]
fn a_16_mib_body_of_tiny_items_that_fails_to_decode_costs_at_most_its_size() {
    for case in ["array", "map"] {
        let result = assert_bounded(case);
        assert_eq!(result, format!("{:?} Some(1)", ErrorCode::Malformed));
    }
}

#[test]
fn a_16_mib_hello_of_empty_strings_is_refused_before_it_is_built() {
    let result = assert_bounded("hello");
    assert_eq!(result, format!("{:?} None", ErrorCode::Malformed));
}

#[test]
fn a_16_mib_payload_in_a_bad_request_is_copied_at_most_once() {
    let result = assert_bounded("bytes");
    assert_eq!(result, format!("{:?} Some(1)", ErrorCode::Malformed));
}
