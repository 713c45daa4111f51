//! Frame codec behaviour: round trips, golden bytes, and every kind of bad input.
//!
//! Long because the golden samples list every message of both directions (28 fixtures, one per
//! shape), and each is a literal frame; the behaviour tests after them are short.

use bytes::{BufMut, Bytes, BytesMut};
use vettid_protocol::codec::decode_body;
use vettid_protocol::io::{read_frame, write_chunked};
use vettid_protocol::*;

/// A sample frame, typed by the side that receives it: `E` the enclave (requests to it, answers
/// to its own requests), `P` the parent. Hello, heartbeat and error frames are the same bytes in
/// both directions (checked by `frames_without_a_request_body_are_the_same_both_ways`).
#[derive(Debug, Clone, PartialEq)]
enum Sample {
    E(Frame<ToEnclave>),
    P(Frame<ToParent>),
}

impl Sample {
    fn encode(&self) -> Bytes {
        match self {
            Sample::E(f) => encode(f),
            Sample::P(f) => encode(f),
        }
    }

    /// Decodes `bytes` the way this sample's receiver does.
    fn decode_like(&self, bytes: &[u8]) -> Sample {
        match self {
            Sample::E(_) => Sample::E(frame_of(decode_one(bytes))),
            Sample::P(_) => Sample::P(frame_of(decode_one(bytes))),
        }
    }

    fn request_name(&self) -> Option<&'static str> {
        match self {
            Sample::E(Frame::Request { body, .. }) => Some(body.name()),
            Sample::P(Frame::Request { body, .. }) => Some(body.name()),
            _ => None,
        }
    }

    fn as_e(&self) -> Frame<ToEnclave> {
        match self {
            Sample::E(f) => f.clone(),
            Sample::P(f) => panic!("{f:?} is received by the parent"),
        }
    }
}

fn frame_of<R: std::fmt::Debug>(d: Decoded<R>) -> Frame<R> {
    match d {
        Decoded::Frame(f) => f,
        other => panic!("not a frame: {other:?}"),
    }
}

fn samples() -> Vec<(&'static str, Sample)> {
    vec![
        (
            "hello",
            Sample::E(Frame::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                role: Role::Parent,
                software: "0.1.0".into(),
                capabilities: vec!["nats".into()],
                max_frame_len: DEFAULT_MAX_FRAME_LEN as u32,
            })),
        ),
        (
            "request_nats",
            Sample::E(Frame::Request {
                id: 7,
                deadline_ms: 5000,
                body: ToEnclave::Nats(NatsMessage {
                    subject: "enclave.health".into(),
                    reply: Some("_INBOX.abc".into()),
                    headers: vec![("Nats-Msg-Id".into(), "1".into())],
                    payload: Bytes::from_static(b"{}"),
                }),
            }),
        ),
        (
            "request_ping",
            Sample::E(Frame::Request {
                id: 8,
                deadline_ms: 100,
                body: ToEnclave::Ping,
            }),
        ),
        (
            "response_nats",
            Sample::P(Frame::Response {
                id: 7,
                body: Response::Nats(NatsReply {
                    reply: Some(Bytes::from_static(b"{\"healthy\":true}")),
                    publish: vec![Publication {
                        subject: "OwnerSpace.u1.forApp.attestation.response".into(),
                        payload: Bytes::from_static(b"{}"),
                    }],
                }),
            }),
        ),
        (
            "response_pong",
            Sample::P(Frame::Response {
                id: 8,
                body: Response::Pong,
            }),
        ),
        (
            "error",
            Sample::E(Frame::Error {
                id: Some(9),
                error: WireError::new(ErrorCode::Busy, "at capacity"),
            }),
        ),
        (
            "event_log",
            Sample::P(Frame::Event(Event::Log(LogEvent {
                level: LogLevel::Info,
                target: "vettid_enclave::server".into(),
                message: "parent connected".into(),
                fields: vec![("peer".into(), "unix".into())],
            }))),
        ),
        (
            "heartbeat",
            Sample::E(Frame::Heartbeat(Heartbeat { seq: 3, pong: true })),
        ),
        (
            "request_storage_put",
            Sample::P(Frame::Request {
                id: 10,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::Put {
                    key: "vaults/u1/state.v7".into(),
                    body: Bytes::from_static(b"\x01sealed"),
                    condition: PutCondition::IfMatch("\"9f2c\"".into()),
                }),
            }),
        ),
        (
            "response_storage_listing",
            Sample::E(Frame::Response {
                id: 10,
                body: Response::Storage(StorageResponse::Listing {
                    objects: vec![ListedObject {
                        key: "vaults/u1/a".into(),
                        etag: "\"e1\"".into(),
                        size: 42,
                    }],
                    continuation: None,
                }),
            }),
        ),
        (
            "response_storage_conflict",
            Sample::E(Frame::Response {
                id: 11,
                body: Response::Storage(StorageResponse::Conflict),
            }),
        ),
        (
            "request_aws_credentials",
            Sample::P(Frame::Request {
                id: 12,
                deadline_ms: 5000,
                body: ToParent::AwsCredentials,
            }),
        ),
        (
            "response_aws_credentials",
            Sample::E(Frame::Response {
                id: 12,
                body: Response::AwsCredentials(AwsCredentials {
                    access_key_id: "ASIAEXAMPLE".into(),
                    secret_access_key: "secret".into(),
                    session_token: Some("token".into()),
                    expires_at_ms: Some(1_795_000_000_000),
                }),
            }),
        ),
        (
            "request_attest",
            Sample::E(Frame::Request {
                id: 13,
                deadline_ms: 3000,
                body: ToEnclave::Attest {
                    nonce: Bytes::from_static(b"\x00\x01nonce-from-parent"),
                },
            }),
        ),
        (
            "response_attestation",
            Sample::P(Frame::Response {
                id: 13,
                body: Response::Attestation {
                    document: Bytes::from_static(b"\xd2\x84cose-sign1"),
                },
            }),
        ),
        (
            "request_set_pcr_manifest",
            Sample::E(Frame::Request {
                id: 14,
                deadline_ms: 3000,
                body: ToEnclave::SetPcrManifest {
                    manifest: Bytes::from_static(b"{\"pcrs\":{}}"),
                },
            }),
        ),
        (
            "response_done",
            Sample::P(Frame::Response {
                id: 14,
                body: Response::Done,
            }),
        ),
        (
            "event_publish",
            Sample::P(Frame::Event(Event::Publish(Publication {
                subject: "OwnerSpace.u1.forApp.vault.locked".into(),
                payload: Bytes::from_static(b"{\"locked\":true}"),
            }))),
        ),
        (
            "request_storage_get",
            Sample::P(Frame::Request {
                id: 15,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::Get {
                    key: "vaults/u1/state.v7".into(),
                }),
            }),
        ),
        (
            "response_storage_object",
            Sample::E(Frame::Response {
                id: 15,
                body: Response::Storage(StorageResponse::Object {
                    body: Bytes::from_static(b"\x01sealed"),
                    etag: "\"9f2c\"".into(),
                }),
            }),
        ),
        (
            "request_storage_head",
            Sample::P(Frame::Request {
                id: 16,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::Head {
                    key: "vaults/u1/state.v7".into(),
                }),
            }),
        ),
        (
            "response_storage_meta",
            Sample::E(Frame::Response {
                id: 16,
                body: Response::Storage(StorageResponse::Meta {
                    etag: "\"9f2c\"".into(),
                    size: 7,
                }),
            }),
        ),
        (
            "request_storage_put_create",
            Sample::P(Frame::Request {
                id: 17,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::Put {
                    key: "vaults/u2/state.v1".into(),
                    body: Bytes::from_static(b"\x01new"),
                    condition: PutCondition::Create,
                }),
            }),
        ),
        (
            "response_storage_written",
            Sample::E(Frame::Response {
                id: 17,
                body: Response::Storage(StorageResponse::Written {
                    etag: "\"a1\"".into(),
                }),
            }),
        ),
        (
            "request_storage_delete",
            Sample::P(Frame::Request {
                id: 18,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::Delete {
                    key: "vaults/u1/state.v6".into(),
                    if_match: Some("\"77\"".into()),
                }),
            }),
        ),
        (
            "response_storage_deleted",
            Sample::E(Frame::Response {
                id: 18,
                body: Response::Storage(StorageResponse::Deleted),
            }),
        ),
        (
            "request_storage_list",
            Sample::P(Frame::Request {
                id: 19,
                deadline_ms: 2000,
                body: ToParent::Storage(StorageRequest::List {
                    prefix: "vaults/u1/".into(),
                    continuation: Some("page-2".into()),
                    max_keys: 1000,
                }),
            }),
        ),
        (
            "response_storage_not_found",
            Sample::E(Frame::Response {
                id: 20,
                body: Response::Storage(StorageResponse::NotFound),
            }),
        ),
    ]
}

fn encode<R: serde::Serialize>(frame: &Frame<R>) -> Bytes {
    FrameCodec::default().encode_to_bytes(frame).unwrap()
}

fn decode_one<R: RequestBody>(bytes: &[u8]) -> Decoded<R> {
    let mut buf = BytesMut::from(bytes);
    let d = FrameCodec::default()
        .decode(&mut buf)
        .unwrap()
        .expect("complete frame");
    assert!(buf.is_empty(), "decoder must consume exactly one frame");
    d
}

#[test]
fn every_frame_kind_round_trips() {
    for (name, sample) in samples() {
        assert_eq!(sample.decode_like(&sample.encode()), sample, "{name}");
    }
}

/// The wire is frozen: a change here must be deliberate (set UPDATE_GOLDEN=1 to rewrite).
#[test]
fn golden_fixtures_match_both_ways() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (name, sample) in samples() {
        let path = dir.join(format!("{name}.hex"));
        let bytes = sample.encode();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, hex::encode(&bytes) + "\n").unwrap();
        }
        let golden = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            hex::encode(&golden),
            "encode({name}) changed"
        );
        assert_eq!(
            sample.decode_like(&golden),
            sample,
            "decode({name}) changed"
        );
    }
}

/// Every request type has a fixture, and every fixture file belongs to a sample (none goes stale).
#[test]
fn fixtures_cover_every_request_type_and_nothing_else() {
    let samples = samples();
    for name in ToEnclave::NAMES.iter().chain(ToParent::NAMES) {
        assert!(
            samples.iter().any(|(_, s)| s.request_name() == Some(name)),
            "no golden fixture for request {name}"
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut named: Vec<String> = samples.iter().map(|(n, _)| format!("{n}.hex")).collect();
    named.sort();
    assert_eq!(files, named);
}

/// Hello, heartbeat, error, response and event frames carry no request body: the bytes, and what
/// they decode to, do not depend on which side receives them.
#[test]
fn frames_without_a_request_body_are_the_same_both_ways() {
    for (name, sample) in samples() {
        if sample.request_name().is_some() {
            continue;
        }
        let bytes = sample.encode();
        let as_enclave = frame_of(decode_one::<ToEnclave>(&bytes));
        let as_parent = frame_of(decode_one::<ToParent>(&bytes));
        assert_eq!(encode(&as_enclave), bytes, "{name}");
        assert_eq!(encode(&as_parent), bytes, "{name}");
    }
    // `ping` is the one request type both sides serve, under one tag.
    let ping = |id| -> Frame<ToParent> {
        Frame::Request {
            id,
            deadline_ms: 100,
            body: ToParent::Ping,
        }
    };
    assert_eq!(encode(&ping(8)), samples()[2].1.encode());
}

/// A peer that sends a request of the other direction gets a typed `UnknownRequest` under the
/// request's id, saying "wrong direction"; an unknown tag is told apart from it.
#[test]
fn a_request_sent_the_wrong_way_is_a_typed_error_under_its_id() {
    fn refusal<R: RequestBody>(bytes: &[u8]) -> (Option<u64>, WireError) {
        match decode_one::<R>(bytes) {
            Decoded::Invalid { id, error } => (id, error),
            other => panic!("decoded {other:?}"),
        }
    }
    for (name, sample) in samples() {
        if sample.request_name() == Some("ping") {
            continue;
        }
        let bytes = sample.encode();
        let (id, error) = match &sample {
            Sample::E(Frame::Request { id, .. }) => (*id, refusal::<ToParent>(&bytes)),
            Sample::P(Frame::Request { id, .. }) => (*id, refusal::<ToEnclave>(&bytes)),
            _ => continue,
        };
        assert_eq!(error.0, Some(id), "{name}");
        assert_eq!(error.1.code, ErrorCode::UnknownRequest, "{name}");
        assert!(
            error.1.message.contains("wrong direction"),
            "{name}: {}",
            error.1.message
        );
    }
    for name in ToEnclave::WRONG_WAY {
        assert!(ToParent::NAMES.contains(name) && !ToEnclave::NAMES.contains(name));
    }
    for name in ToParent::WRONG_WAY {
        assert!(ToEnclave::NAMES.contains(name) && !ToParent::NAMES.contains(name));
    }
}

#[test]
fn oversized_length_prefix_rejected_before_allocation() {
    let codec = FrameCodec::new(1024);
    let mut buf = BytesMut::with_capacity(8);
    buf.put_u32(0xFFFF_FFF0);
    let err = codec.decode::<ToEnclave>(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        CodecError::FrameTooLarge {
            len: 0xFFFF_FFF0,
            max: 1024
        }
    ));
    assert!(err.is_fatal());
    assert!(
        buf.capacity() < 1024,
        "no allocation for the announced length"
    );
}

#[test]
fn frame_at_exactly_the_cap_is_accepted_and_one_over_is_not() {
    let frame = Frame::Request {
        id: 1,
        deadline_ms: 1,
        body: ToEnclave::Nats(NatsMessage {
            subject: "s".into(),
            reply: None,
            headers: vec![],
            payload: Bytes::from(vec![0u8; 1000]),
        }),
    };
    let len = encode(&frame).len() - LENGTH_PREFIX_LEN;
    let exact = FrameCodec::new(len);
    let bytes = exact.encode_to_bytes(&frame).unwrap();
    assert!(matches!(
        exact.decode::<ToEnclave>(&mut BytesMut::from(&bytes[..])),
        Ok(Some(Decoded::Frame(_)))
    ));
    let small = FrameCodec::new(len - 1);
    assert!(matches!(
        small.encode_to_bytes(&frame),
        Err(CodecError::OutgoingTooLarge { .. })
    ));
    assert!(matches!(
        small.decode::<ToEnclave>(&mut BytesMut::from(&bytes[..])),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn incomplete_input_waits_for_more() {
    let bytes = samples()[1].1.encode();
    let codec = FrameCodec::default();
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(
            codec.decode::<ToEnclave>(&mut buf).unwrap(),
            None,
            "cut at {cut}"
        );
    }
}

#[test]
fn garbage_body_is_a_typed_error_not_a_crash() {
    for garbage in [
        &b"\xff\xff\xff"[..],
        b"hello world",
        b"\x84\x01\x02",
        b"\xa0",
    ] {
        match decode_body::<ToEnclave>(garbage) {
            Decoded::Invalid { id: None, error } => assert_eq!(error.code, ErrorCode::Malformed),
            other => panic!("{garbage:?} gave {other:?}"),
        }
    }
}

#[test]
fn empty_frame_is_malformed() {
    assert!(matches!(
        decode_one::<ToEnclave>(&[0, 0, 0, 0]),
        Decoded::Invalid { id: None, .. }
    ));
}

fn cbor(v: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

#[test]
fn unknown_frame_kind_keeps_its_id() {
    use ciborium::Value as V;
    let body = cbor(&V::Array(vec![
        V::Text("zap".into()),
        V::Integer(42.into()),
        V::Null,
        V::Null,
    ]));
    match decode_body::<ToEnclave>(&body) {
        Decoded::Invalid { id, error } => {
            assert_eq!(id, Some(42));
            assert_eq!(error.code, ErrorCode::UnknownKind);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_request_type_and_bad_body_are_told_apart() {
    use ciborium::Value as V;
    let req = |body: V| {
        cbor(&V::Array(vec![
            V::Text("req".into()),
            V::Integer(5.into()),
            V::Integer(10.into()),
            body,
        ]))
    };
    let unknown = req(V::Map(vec![(V::Text("teleport".into()), V::Null)]));
    let bad = req(V::Map(vec![(V::Text("nats".into()), V::Integer(1.into()))]));
    match (
        decode_body::<ToEnclave>(&unknown),
        decode_body::<ToEnclave>(&bad),
    ) {
        (
            Decoded::Invalid {
                id: Some(5),
                error: e1,
            },
            Decoded::Invalid {
                id: Some(5),
                error: e2,
            },
        ) => {
            assert_eq!(e1.code, ErrorCode::UnknownRequest);
            assert_eq!(e2.code, ErrorCode::Malformed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_without_id_or_with_extra_elements_is_malformed() {
    use ciborium::Value as V;
    let no_id = cbor(&V::Array(vec![
        V::Text("req".into()),
        V::Null,
        V::Integer(1.into()),
        V::Text("ping".into()),
    ]));
    assert!(matches!(
        decode_body::<ToEnclave>(&no_id),
        Decoded::Invalid {
            error: WireError {
                code: ErrorCode::Malformed,
                ..
            },
            ..
        }
    ));
    let five = cbor(&V::Array(vec![
        V::Text("hb".into()),
        V::Null,
        V::Null,
        V::Map(vec![
            (V::Text("seq".into()), V::Integer(1.into())),
            (V::Text("pong".into()), V::Bool(false)),
        ]),
        V::Null,
    ]));
    assert!(matches!(
        decode_body::<ToEnclave>(&five),
        Decoded::Invalid { .. }
    ));
}

#[test]
fn trailing_bytes_inside_a_frame_are_rejected() {
    let mut body = samples()[2].1.encode()[LENGTH_PREFIX_LEN..].to_vec();
    body.push(0);
    assert!(matches!(
        decode_body::<ToEnclave>(&body),
        Decoded::Invalid { .. }
    ));
}

#[test]
fn a_body_over_the_item_cap_is_malformed_under_its_id_and_the_next_frame_decodes() {
    // ["req", 21, 100, [0, 0, ...]] with one item more than the cap allows.
    let n = MAX_FRAME_ITEMS as u32;
    let mut body = vec![0x84, 0x63, b'r', b'e', b'q', 0x15, 0x18, 100, 0x9a];
    body.extend_from_slice(&n.to_be_bytes());
    body.resize(body.len() + n as usize, 0);
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.extend_from_slice(&body);
    buf.extend_from_slice(&samples()[2].1.encode());
    let codec = FrameCodec::default();
    match codec.decode::<ToEnclave>(&mut buf).unwrap().unwrap() {
        Decoded::Invalid { id, error } => {
            assert_eq!(id, Some(21));
            assert_eq!(error.code, ErrorCode::Malformed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        codec.decode(&mut buf).unwrap().unwrap(),
        Decoded::Frame(samples()[2].1.as_e())
    );
}

#[test]
fn the_largest_real_frame_a_full_listing_page_is_under_the_item_cap() {
    // The parent caps a listing page at 1000 objects.
    let frame = Frame::<ToEnclave>::Response {
        id: 1,
        body: Response::Storage(StorageResponse::Listing {
            objects: (0..1000)
                .map(|i| ListedObject {
                    key: format!("vaults/u{i}/vault.v2"),
                    etag: format!("\"{i:032x}\""),
                    size: 4 << 20,
                })
                .collect(),
            continuation: Some("next".into()),
        }),
    };
    assert_eq!(decode_one(&encode(&frame)), Decoded::Frame(frame));
}

#[test]
fn random_bodies_never_panic() {
    // A small deterministic PRNG keeps this reproducible without extra crates.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Bytes> = samples().iter().map(|(_, s)| s.encode()).collect();
    for i in 0..20_000 {
        let mut body = seeds[i % seeds.len()][LENGTH_PREFIX_LEN..].to_vec();
        for _ in 0..(next() % 4 + 1) {
            let pos = (next() as usize) % body.len();
            body[pos] = next() as u8;
        }
        let _ = decode_body::<ToEnclave>(&body);
        let _ = decode_body::<ToParent>(&body);
    }
}

#[tokio::test]
async fn split_reads_reassemble_frames() {
    let frames: Vec<Sample> = samples().into_iter().map(|(_, s)| s).collect();
    let mut wire = Vec::new();
    for s in &frames {
        wire.extend_from_slice(&s.encode());
    }
    // Feed the stream one to seven bytes at a time.
    let mut builder = tokio_test::io::Builder::new();
    let mut i = 0;
    let mut step = 1;
    while i < wire.len() {
        let end = (i + step).min(wire.len());
        builder.read(&wire[i..end]);
        i = end;
        step = step % 7 + 1;
    }
    let mut mock = builder.build();
    let mut buf = BytesMut::new();
    let codec = FrameCodec::default();
    for s in &frames {
        let got = match s {
            Sample::E(_) => read_frame(&mut mock, &mut buf, &codec)
                .await
                .unwrap()
                .map(|d| Sample::E(frame_of(d))),
            Sample::P(_) => read_frame(&mut mock, &mut buf, &codec)
                .await
                .unwrap()
                .map(|d| Sample::P(frame_of(d))),
        };
        assert_eq!(got.as_ref(), Some(s));
    }
    assert_eq!(
        read_frame::<_, ToEnclave>(&mut mock, &mut buf, &codec)
            .await
            .unwrap(),
        None,
        "clean EOF"
    );
}

#[tokio::test]
async fn stream_ending_inside_a_frame_is_truncated() {
    let bytes = samples()[1].1.encode();
    let mut mock = tokio_test::io::Builder::new()
        .read(&bytes[..bytes.len() - 3])
        .build();
    let err = read_frame::<_, ToEnclave>(&mut mock, &mut BytesMut::new(), &FrameCodec::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CodecError::Truncated { .. }), "{err}");
}

#[tokio::test]
async fn large_frames_are_written_in_small_chunks() {
    let payload = Bytes::from(vec![7u8; 100_000]);
    let frame = Frame::<ToEnclave>::Event(Event::Publish(Publication {
        subject: "x".into(),
        payload,
    }));
    let bytes = encode(&frame);
    let mut builder = tokio_test::io::Builder::new();
    for chunk in bytes.chunks(MAX_WRITE_CHUNK) {
        assert!(chunk.len() < 32 * 1024);
        builder.write(chunk);
    }
    let mut mock = builder.build();
    write_chunked(&mut mock, &bytes).await.unwrap();
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn nats_requests_round_trip(
            id in 1u64..,
            deadline in any::<u32>(),
            subject in "[A-Za-z0-9.*>_-]{1,64}",
            reply in proptest::option::of("[A-Za-z0-9._]{1,32}"),
            headers in proptest::collection::vec(("[a-zA-Z-]{1,16}", ".{0,16}"), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let frame = Frame::Request {
                id,
                deadline_ms: deadline,
                body: ToEnclave::Nats(NatsMessage { subject, reply, headers, payload: payload.into() }),
            };
            prop_assert_eq!(decode_one(&encode(&frame)), Decoded::Frame(frame));
        }
    }
}
