//! The HTTP surface without an SDK: bad targets, garbage bodies, the body bound, and SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

/// Sends one raw HTTP/1.1 request and returns (status, body).
fn post(port: u16, target: Option<&str>, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(target) = target {
        head.push_str(&format!("X-Amz-Target: {target}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before reading an oversized body; a reset here is fine.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn error_type(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["__type"].as_str().unwrap().to_owned()
}

const JSON: &str = "application/x-amz-json-1.1";

#[test]
fn garbage_unknown_targets_and_wrong_content_types_are_clear_400s() {
    let server = Server::start(&[]);
    let cases: [(Option<&str>, &str, &[u8], &str); 6] = [
        (
            Some("TrentService.Decrypt"),
            JSON,
            b"\x00garbage{",
            "SerializationException",
        ),
        (
            Some("TrentService.Decrypt"),
            JSON,
            br#"{"CiphertextBlob": 5}"#,
            "SerializationException",
        ),
        (
            Some("TrentService.Decrypt"),
            JSON,
            br#"{"CiphertextBlob": "!!"}"#,
            "SerializationException",
        ),
        (
            Some("TrentService.ReEncrypt"),
            JSON,
            b"{}",
            "UnknownOperationException",
        ),
        (None, JSON, b"{}", "UnknownOperationException"),
        (
            Some("TrentService.GenerateRandom"),
            "text/plain",
            b"{}",
            "SerializationException",
        ),
    ];
    for (target, content_type, body, want) in cases {
        let (status, response) = post(server.port, target, content_type, body);
        assert_eq!(status, 400, "{target:?}: {response}");
        assert_eq!(error_type(&response), want, "{target:?}: {response}");
    }
}

#[test]
fn oversized_body_is_refused() {
    let server = Server::start(&[]);
    let body = vec![b' '; 2 << 20];
    let (status, response) = post(
        server.port,
        Some("TrentService.GenerateRandom"),
        JSON,
        &body,
    );
    assert_eq!(status, 413, "{response}");
    assert_eq!(error_type(&response), "ValidationException");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(&[]);
    let (status, _) = post(
        server.port,
        Some("TrentService.GenerateRandom"),
        JSON,
        br#"{"NumberOfBytes": 4}"#,
    );
    assert_eq!(status, 200);
    // An idle keep-alive connection must not hold the shutdown up.
    let _idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let exit = server
        .stop("TERM", Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(exit.success(), "{exit:?}\n{}", server.log());
    assert!(server.log_contains("local KMS stopped"), "{}", server.log());
}

#[test]
fn bad_configuration_exits_64_listing_every_problem() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vettid-local-kms"))
        .args([
            "--key-file",
            "/tmp/unused.json",
            "--listen",
            "0.0.0.0:0",
            "--allow-pcr0",
            "zz",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loopback") && stderr.contains("not hex"),
        "{stderr}"
    );
}
