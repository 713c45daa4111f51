//! Bad input at every entry point: NATS payloads, raw frames on the enclave socket, the parent's
//! config file, CLI flags. Each gets a clear, typed error and the service keeps serving.

use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use vettid_protocol::io::read_frame;
use vettid_protocol::{
    Decoded, ErrorCode, Frame, FrameCodec, Hello, Response, Role, StorageRequest, ToEnclave,
    ToParent, PROTOCOL_VERSION,
};
use vettid_tests::{bin_path, request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(10);

async fn raw_nats(c: &async_nats::Client, subject: &str, payload: &[u8]) -> Value {
    let msg = tokio::time::timeout(
        LIMIT,
        c.request(subject.to_string(), payload.to_vec().into()),
    )
    .await
    .unwrap()
    .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nats_payloads_get_typed_errors_and_the_service_keeps_serving() {
    let sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "enclave.attestation.request",
            b"not json".to_vec(),
            "invalid_json",
        ),
        (
            "enclave.attestation.request",
            b"[1,2]".to_vec(),
            "invalid_json",
        ),
        (
            "enclave.attestation.request",
            vec![0xff, 0xfe],
            "invalid_json",
        ),
        (
            "enclave.attestation.request",
            b"{}".to_vec(),
            "missing_nonce",
        ),
        (
            "enclave.attestation.request",
            br#"{"nonce":"%%%"}"#.to_vec(),
            "bad_nonce",
        ),
        (
            "enclave.attestation.request",
            br#"{"nonce":""}"#.to_vec(),
            "bad_nonce",
        ),
        (
            "enclave.attestation.request",
            br#"{"nonce":42}"#.to_vec(),
            "bad_nonce",
        ),
        (
            "enclave.attestation.request",
            json!({"nonce": B64.encode(vec![1u8; 513])})
                .to_string()
                .into_bytes(),
            "nonce_too_large",
        ),
        ("enclave.nonsense", b"{}".to_vec(), "unknown_subject"),
        (
            "OwnerSpace.user1.forVault.teleport",
            br#"{"id":"e9"}"#.to_vec(),
            "not_supported",
        ),
        (
            "OwnerSpace.bad%guid.forVault.attestation",
            b"{}".to_vec(),
            "invalid_owner",
        ),
    ];
    for (subject, payload, code) in cases {
        let v = raw_nats(&c, subject, &payload).await;
        assert_eq!(v["type"], "error", "{subject}: {v}");
        assert_eq!(
            v["code"],
            code,
            "{subject} {:?}: {v}",
            String::from_utf8_lossy(&payload)
        );
        assert!(v["timestamp"].is_string());
        let text = v["error"].as_str().unwrap();
        assert!(
            !text.contains('/') && text.len() < 80,
            "error text leaks detail: {text}"
        );
    }
    // The op and id are echoed on app subjects even in errors.
    let v = raw_nats(&c, "OwnerSpace.user1.forVault.teleport", br#"{"id":"e9"}"#).await;
    assert_eq!(
        (v["event_id"].as_str(), v["request_type"].as_str()),
        (Some("e9"), Some("teleport"))
    );
    // A payload over NATS' own limit is refused by the server, not by us; the service is unharmed.
    let v = request_json(&c, "enclave.health", json!({}), LIMIT)
        .await
        .unwrap();
    assert_eq!(v["healthy"], true);
    assert!(v["request_errors_total"].as_u64().unwrap() >= 12);
}

/// What a tool writes to the enclave (its requests are [`ToEnclave`]).
fn hello() -> Frame<ToEnclave> {
    Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        role: Role::Tool,
        software: "bad-input-test".into(),
        capabilities: vec![],
        max_frame_len: 1 << 20,
    })
}

/// What the enclave writes back (its own requests would be [`ToParent`]).
async fn next_answer(s: &mut UnixStream, buf: &mut BytesMut) -> Option<Frame<ToParent>> {
    loop {
        match tokio::time::timeout(LIMIT, read_frame(s, buf, &FrameCodec::default()))
            .await
            .expect("bounded")
        {
            // Heartbeats, the hello and forwarded enclave log events are not answers.
            Ok(Some(Decoded::Frame(Frame::Heartbeat(_))))
            | Ok(Some(Decoded::Frame(Frame::Hello(_))))
            | Ok(Some(Decoded::Frame(Frame::Event(_)))) => continue,
            Ok(Some(Decoded::Frame(f))) => return Some(f),
            Ok(Some(other)) => panic!("{other:?}"),
            Ok(None) | Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_on_the_enclave_socket_are_answered_or_refused() {
    let sys = System::start(SystemOptions::default());
    let codec = FrameCodec::default();
    let mut s = UnixStream::connect(sys.socket()).await.unwrap();
    let mut buf = BytesMut::new();
    s.write_all(&codec.encode_to_bytes(&hello()).unwrap())
        .await
        .unwrap();

    // garbage body behind a valid prefix
    s.write_all(&[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    match next_answer(&mut s, &mut buf).await.unwrap() {
        Frame::Error { error, .. } => assert_eq!(error.code, ErrorCode::Malformed),
        f => panic!("{f:?}"),
    }
    // unknown frame kind keeps its id
    let mut body = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Array(vec![
            "warp".into(),
            31.into(),
            ciborium::Value::Null,
            ciborium::Value::Null,
        ]),
        &mut body,
    )
    .unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
    match next_answer(&mut s, &mut buf).await.unwrap() {
        Frame::Error { id, error } => {
            assert_eq!((id, error.code), (Some(31), ErrorCode::UnknownKind))
        }
        f => panic!("{f:?}"),
    }
    // unknown request type
    let mut body = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Array(vec![
            "req".into(),
            32.into(),
            1000.into(),
            ciborium::Value::Map(vec![("launch".into(), ciborium::Value::Null)]),
        ]),
        &mut body,
    )
    .unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
    match next_answer(&mut s, &mut buf).await.unwrap() {
        Frame::Error { id, error } => {
            assert_eq!((id, error.code), (Some(32), ErrorCode::UnknownRequest))
        }
        f => panic!("{f:?}"),
    }
    // requests only the parent serves: refused, typed, under their id
    for (id, body) in [
        (34, ToParent::AwsCredentials),
        (
            35,
            ToParent::Storage(StorageRequest::Get {
                key: "vaults/user1/vault".into(),
            }),
        ),
    ] {
        let frame = Frame::Request {
            id,
            deadline_ms: 1000,
            body,
        };
        s.write_all(&codec.encode_to_bytes(&frame).unwrap())
            .await
            .unwrap();
        match next_answer(&mut s, &mut buf).await.unwrap() {
            Frame::Error { id: got, error } => {
                assert_eq!((got, error.code), (Some(id), ErrorCode::UnknownRequest));
                assert!(
                    error.message.contains("wrong direction"),
                    "{}",
                    error.message
                );
            }
            f => panic!("{f:?}"),
        }
    }
    // still serving on the same connection
    let ping = codec
        .encode_to_bytes(&Frame::Request {
            id: 33,
            deadline_ms: 1000,
            body: ToEnclave::Ping,
        })
        .unwrap();
    s.write_all(&ping).await.unwrap();
    assert_eq!(
        next_answer(&mut s, &mut buf).await.unwrap(),
        Frame::Response {
            id: 33,
            body: Response::Pong
        }
    );

    // a length prefix over the cap closes this connection only
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(
        next_answer(&mut s, &mut buf).await.is_none(),
        "connection closed"
    );

    // a truncated frame followed by EOF: closed, nothing else affected
    let mut t = UnixStream::connect(sys.socket()).await.unwrap();
    t.write_all(&codec.encode_to_bytes(&hello()).unwrap())
        .await
        .unwrap();
    t.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.unwrap();
    t.shutdown().await.unwrap();
    drop(t);

    // a peer whose first frame is not a hello is dropped
    let mut u = UnixStream::connect(sys.socket()).await.unwrap();
    u.write_all(&ping).await.unwrap();
    let mut ubuf = BytesMut::new();
    assert!(next_answer(&mut u, &mut ubuf).await.is_none());

    // the real parent's link was never disturbed
    let c = sys.client().await;
    let v = request_json(&c, "enclave.health", json!({}), LIMIT)
        .await
        .unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(sys.health().unwrap().1["enclave_connects"], 1);
}

#[test]
fn parent_config_errors_are_all_reported_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[nats]\nurl = \"http://x\"\n[enclave]\naddress = \"vsock://nope\"\n[http]\nlisten = \"everywhere\"\n").unwrap();
    let out = Command::new(bin_path("vettid-parent"))
        .arg("--check-config")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["nats.url", "enclave.address", "http.listen"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[nats]\nreconnect_wait = 5\n").unwrap();
    let out = Command::new(bin_path("vettid-parent"))
        .arg("--check-config")
        .arg("--config")
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let missing = Command::new(bin_path("vettid-parent"))
        .args(["--check-config", "--config", "/nonexistent/p.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[enclave]\naddress = \"vsock://16:5000\"\n[attestation]\ndev_mode = true\ndev_accept_any_pcrs = true\n").unwrap();
    let out = Command::new(bin_path("vettid-parent"))
        .arg("--check-config")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let enclave = Command::new(bin_path("vettid-enclave"))
        .args(["--listen", "vsock16"])
        .output()
        .unwrap();
    assert_eq!(enclave.status.code(), Some(64));
    let parent = Command::new(bin_path("vettid-parent"))
        .args(["--check-config", "--enclave", "tcp://nohost"])
        .output()
        .unwrap();
    assert_eq!(parent.status.code(), Some(64));
    let cli = bin_path("vettid");
    let out = Command::new(&cli)
        .args(["attest", "--nonce", "zz", "--nats", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&cli)
        .args(["verify", "--doc", "/nonexistent", "--any-pcrs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(&cli)
        .args(["verify", "--doc", "/etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "no PCR policy given: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = vettid_tests::free_port();
    let out = Command::new(&cli)
        .args([
            "health",
            "--timeout-ms",
            "1000",
            "--nats",
            &format!("nats://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_says_no_responders_when_no_parent_listens() {
    let dir = tempfile::tempdir().unwrap();
    let nats = vettid_tests::NatsServer::start(dir.path());
    let out = Command::new(bin_path("vettid"))
        .args(["health", "--nats", &nats.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no responders"));
}

#[test]
fn cli_verifies_a_real_aws_document_only_at_its_own_time() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../attestation/tests/data/sample-1.cbor"
    );
    let pcr0 = "f67076a8f9796b90d7f0eb148ec6926f66fe04c80861151916961f7dec715b3c8a36e5908e9551c20048719da134b207";
    let pcr2 = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a";
    let run = |at: &str| {
        Command::new(bin_path("vettid"))
            .args([
                "verify",
                "--doc",
                sample,
                "--at-ms",
                at,
                "--expect-pcr0",
                pcr0,
                "--expect-pcr1",
                pcr0,
                "--expect-pcr2",
                pcr2,
                "--json",
            ])
            .output()
            .unwrap()
    };
    let then = run("1758057950000");
    assert!(
        then.status.success(),
        "{}",
        String::from_utf8_lossy(&then.stderr)
    );
    let v: Value = serde_json::from_slice(&then.stdout).unwrap();
    assert_eq!(v["verified"], true);
    let now = run(&std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string());
    assert_eq!(now.status.code(), Some(1));
}

/// The measurement tools refuse bad flags with a message naming the flag, before starting any
/// process.
#[test]
fn measurement_tools_refuse_bad_flags() {
    let cases: &[(&str, &[&str])] = &[
        ("vettid-faults", &["--only", "nope"]),
        ("vettid-faults", &["--only", "kms-hang,"]),
        ("vettid-faults", &["--outage-ms", "0"]),
        ("vettid-faults", &["--outage-ms", "soon"]),
        ("vettid-faults", &["--users", "0"]),
        ("vettid-faults", &["--pace-ms"]),
        ("vettid-faults", &["--colour", "blue"]),
        ("vettid-load", &["--seconds", "0"]),
        ("vettid-load", &["--vault-users", "1001"]),
        ("vettid-load", &["--rate", "5x"]),
        ("vettid-bench", &["--sequential", "5"]),
        ("vettid-bench", &["--concurrency", "many"]),
        ("vettid-vault-bench", &["--secret-ops", "1001"]),
        ("vettid-vault-bench", &["--users"]),
    ];
    for (bin, args) in cases {
        let started = std::time::Instant::now();
        let out = Command::new(bin_path(bin)).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
        assert!(
            stderr.contains(args[0]),
            "{bin} {args:?}: the error names the flag: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{bin} {args:?}: refused before starting a system"
        );
    }
}
