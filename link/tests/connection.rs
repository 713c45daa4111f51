//! The RPC connection over real sockets: multiplexing both ways, deadlines, dead peers, bad
//! frames, back-pressure and graceful close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use vettid_link::*;
use vettid_protocol::io::read_frame;
use vettid_protocol::*;

/// The link is generic over its [`Side`]; these tests run the same traffic both ways, so both
/// ends send and serve the enclave-bound requests (the real sides are exercised in
/// `enclave/src/server.rs`, `parent/tests` and `tests/`).
enum Sym {}

impl Side for Sym {
    type Sends = ToEnclave;
    type Serves = ToEnclave;
}

/// Answers ping; echoes NATS payloads after sleeping `subject`-many milliseconds if the subject
/// is a number; counts concurrency.
#[derive(Default)]
struct Echo {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Handler for Echo {
    type Side = Sym;

    async fn handle(
        &self,
        request: ToEnclave,
        _ctx: RequestCtx<Sym>,
    ) -> Result<Response, WireError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let out = match request {
            ToEnclave::Ping => Ok(Response::Pong),
            ToEnclave::Nats(m) => {
                if let Ok(ms) = m.subject.parse::<u64>() {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Ok(Response::Nats(NatsReply {
                    reply: Some(m.payload),
                    publish: vec![],
                }))
            }
            _ => Err(WireError::new(ErrorCode::UnknownRequest, "not served here")),
        };
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

fn config(role: Role) -> LinkConfig {
    let mut c = LinkConfig::new(role);
    c.heartbeat_interval = Duration::from_millis(50);
    c.dead_after = Duration::from_millis(400);
    c.hello_timeout = Duration::from_secs(2);
    c.drain_grace = Duration::from_secs(2);
    c
}

struct Pair {
    a: Connection<Sym>,
    b: Connection<Sym>,
    a_task: ConnectionTask,
    b_task: ConnectionTask,
    a_handler: Arc<Echo>,
    b_handler: Arc<Echo>,
}

async fn pair_with(ca: LinkConfig, cb: LinkConfig) -> Pair {
    let (sa, sb) = UnixStream::pair().unwrap();
    let (ha, hb) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (ra, rb) = tokio::join!(
        Connection::establish(sa, ca, ha.clone()),
        Connection::establish(sb, cb, hb.clone())
    );
    let ((a, a_task), (b, b_task)) = (ra.unwrap(), rb.unwrap());
    Pair {
        a,
        b,
        a_task,
        b_task,
        a_handler: ha,
        b_handler: hb,
    }
}

async fn pair() -> Pair {
    pair_with(config(Role::Parent), config(Role::Enclave)).await
}

fn nats(subject: &str, payload: &'static [u8]) -> ToEnclave {
    ToEnclave::Nats(NatsMessage {
        subject: subject.into(),
        reply: None,
        headers: vec![],
        payload: Bytes::from_static(payload),
    })
}

#[tokio::test]
async fn hello_exchange_names_the_peer() {
    let p = pair().await;
    assert_eq!(p.a.peer_hello().role, Role::Enclave);
    assert_eq!(p.b.peer_hello().role, Role::Parent);
    assert_eq!(
        p.a.request(ToEnclave::Ping, Duration::from_secs(1)).await,
        Ok(Response::Pong)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_overlap_in_both_directions() {
    let p = pair().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let (from, _) = if i % 2 == 0 {
            (p.a.clone(), 0)
        } else {
            (p.b.clone(), 1)
        };
        tasks.push(tokio::spawn(async move {
            let payload: &'static [u8] = if i % 3 == 0 { b"x" } else { b"y" };
            let r = from
                .request(nats("100", payload), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(
                r,
                Response::Nats(NatsReply {
                    reply: Some(Bytes::from_static(payload)),
                    publish: vec![]
                })
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 200 requests of 100 ms each, finished well under the 20 s a lock-step link would take.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(p.a_handler.peak.load(Ordering::SeqCst) > 10);
    assert!(p.b_handler.peak.load(Ordering::SeqCst) > 10);
    assert!(p.b.stats().max_serving.load(Ordering::Relaxed) > 10);
}

#[tokio::test]
async fn timeout_then_late_answer_is_discarded() {
    let p = pair().await;
    let err =
        p.a.request(nats("300", b"slow"), Duration::from_millis(50))
            .await
            .unwrap_err();
    assert_eq!(err, RpcError::Timeout(Duration::from_millis(50)));
    assert_eq!(p.a.in_flight(), 0, "timed-out waiter removed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        p.a.request(ToEnclave::Ping, Duration::from_secs(1)).await,
        Ok(Response::Pong)
    );
}

#[tokio::test]
async fn cancelled_request_leaves_no_waiter() {
    let p = pair().await;
    let fut = p.a.request(nats("200", b"z"), Duration::from_secs(5));
    let _ = tokio::time::timeout(Duration::from_millis(20), fut).await;
    assert_eq!(p.a.in_flight(), 0);
}

#[tokio::test]
async fn handler_deadline_is_enforced_by_the_server() {
    let p = pair().await;
    // The server gives up at the request's deadline and says so; the client sees either the
    // server's Timeout error or its own timeout, whichever comes first, never a hang.
    let err =
        p.a.request(nats("2000", b"z"), Duration::from_millis(100))
            .await
            .unwrap_err();
    assert!(matches!(
        err,
        RpcError::Timeout(_)
            | RpcError::Remote(WireError {
                code: ErrorCode::Timeout,
                ..
            })
    ));
}

#[tokio::test]
async fn dead_peer_fails_every_waiter_promptly() {
    let p = pair().await;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let a = p.a.clone();
            tokio::spawn(async move {
                a.request(nats("10000", b"z"), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    drop(p.b_task); // detach; now kill b's side of the socket
    p.b.close("test kills b");
    for w in waiters {
        assert!(matches!(w.await.unwrap(), Err(RpcError::Closed(_))));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(p.a.is_closed());
    assert!(matches!(
        p.a.request(ToEnclave::Ping, Duration::from_secs(1)).await,
        Err(RpcError::Closed(_))
    ));
    let _ = p.a_task.await;
}

#[tokio::test]
async fn silent_peer_is_declared_dead() {
    let (sa, mut raw) = UnixStream::pair().unwrap();
    // The raw side says hello and then never speaks again.
    let hello = Frame::<ToEnclave>::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        role: Role::Tool,
        software: "t".into(),
        capabilities: vec![],
        max_frame_len: 1 << 20,
    });
    raw.write_all(&FrameCodec::default().encode_to_bytes(&hello).unwrap())
        .await
        .unwrap();
    let (a, task) = Connection::establish(sa, config(Role::Parent), Arc::new(Echo::default()))
        .await
        .unwrap();
    let err = a
        .request(ToEnclave::Ping, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Closed(CloseReason::PeerDead(_))),
        "{err}"
    );
    assert!(matches!(task.await, CloseReason::PeerDead(_)));
    drop(raw);
}

#[tokio::test]
async fn full_serve_slots_answer_busy() {
    let mut cb = config(Role::Enclave);
    cb.max_concurrent_serve = 2;
    let p = pair_with(config(Role::Parent), cb).await;
    let reqs: Vec<_> = (0..6)
        .map(|_| {
            let a = p.a.clone();
            tokio::spawn(async move { a.request(nats("300", b"z"), Duration::from_secs(5)).await })
        })
        .collect();
    let mut busy = 0;
    let mut ok = 0;
    for r in reqs {
        match r.await.unwrap() {
            Ok(_) => ok += 1,
            Err(RpcError::Remote(WireError {
                code: ErrorCode::Busy,
                ..
            })) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, busy), (2, 4));
    assert_eq!(p.b.stats().busy_rejections.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn graceful_close_finishes_in_flight_answers() {
    let p = pair().await;
    let a = p.a.clone();
    let slow = tokio::spawn(async move {
        a.request(nats("200", b"kept"), Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.b.close("shutdown");
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(
        answer,
        Response::Nats(NatsReply {
            reply: Some(Bytes::from_static(b"kept")),
            publish: vec![]
        })
    );
    assert_eq!(p.b_task.await, CloseReason::Local("shutdown".into()));
}

/// A raw peer: hello done, then the test writes arbitrary bytes and reads the answers.
async fn raw_peer() -> (Connection<Sym>, ConnectionTask, UnixStream, BytesMut) {
    let (sa, mut raw) = UnixStream::pair().unwrap();
    let hello = Frame::<ToEnclave>::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        role: Role::Tool,
        software: "t".into(),
        capabilities: vec![],
        max_frame_len: 1 << 20,
    });
    raw.write_all(&FrameCodec::default().encode_to_bytes(&hello).unwrap())
        .await
        .unwrap();
    let mut cfg = config(Role::Enclave);
    cfg.dead_after = Duration::from_secs(30);
    cfg.max_frame_len = 4096;
    let (c, t) = Connection::establish(sa, cfg, Arc::new(Echo::default()))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let first = read_frame::<_, ToEnclave>(&mut raw, &mut buf, &FrameCodec::default())
        .await
        .unwrap();
    assert!(matches!(first, Some(Decoded::Frame(Frame::Hello(_)))));
    (c, t, raw, buf)
}

async fn next_non_heartbeat(raw: &mut UnixStream, buf: &mut BytesMut) -> Frame<ToEnclave> {
    loop {
        match read_frame(raw, buf, &FrameCodec::default()).await.unwrap() {
            Some(Decoded::Frame(Frame::Heartbeat(_))) => continue,
            Some(Decoded::Frame(f)) => return f,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_frames_are_answered_and_the_link_keeps_serving() {
    let (conn, _task, mut raw, mut buf) = raw_peer().await;
    let codec = FrameCodec::default();
    // garbage body with a valid prefix
    raw.write_all(&[0, 0, 0, 3, 0xff, 0x00, 0x13])
        .await
        .unwrap();
    match next_non_heartbeat(&mut raw, &mut buf).await {
        Frame::Error { id: None, error } => assert_eq!(error.code, ErrorCode::Malformed),
        f => panic!("{f:?}"),
    }
    // unknown kind with an id
    let mut body = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Array(vec![
            "boom".into(),
            77.into(),
            ciborium::Value::Null,
            ciborium::Value::Null,
        ]),
        &mut body,
    )
    .unwrap();
    raw.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&body).await.unwrap();
    match next_non_heartbeat(&mut raw, &mut buf).await {
        Frame::Error {
            id: Some(77),
            error,
        } => assert_eq!(error.code, ErrorCode::UnknownKind),
        f => panic!("{f:?}"),
    }
    // still serving
    let ping = codec
        .encode_to_bytes(&Frame::Request {
            id: 9,
            deadline_ms: 1000,
            body: ToEnclave::Ping,
        })
        .unwrap();
    raw.write_all(&ping).await.unwrap();
    assert_eq!(
        next_non_heartbeat(&mut raw, &mut buf).await,
        Frame::Response {
            id: 9,
            body: Response::Pong
        }
    );
    // Requests of the other direction never reach the handler: typed refusal under their id.
    for (id, body) in [
        (10, ToParent::AwsCredentials),
        (
            11,
            ToParent::Storage(StorageRequest::Get {
                key: "vaults/u1/x".into(),
            }),
        ),
    ] {
        let frame = Frame::Request {
            id,
            deadline_ms: 1000,
            body,
        };
        raw.write_all(&codec.encode_to_bytes(&frame).unwrap())
            .await
            .unwrap();
        match next_non_heartbeat(&mut raw, &mut buf).await {
            Frame::Error {
                id: Some(got),
                error,
            } if got == id => {
                assert_eq!(error.code, ErrorCode::UnknownRequest);
                assert!(
                    error.message.contains("wrong direction"),
                    "{}",
                    error.message
                );
            }
            f => panic!("{f:?}"),
        }
    }
    // Two undecodable frames above, and the two wrong-direction requests.
    assert_eq!(conn.stats().bad_frames_in.load(Ordering::Relaxed), 4);
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn over_cap_length_prefix_closes_only_this_connection() {
    let (conn, task, mut raw, _buf) = raw_peer().await;
    raw.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    assert!(matches!(task.await, CloseReason::Framing(_)));
    assert!(conn.is_closed());
}

#[tokio::test]
async fn truncated_frame_then_eof_closes_with_framing_error() {
    let (_conn, task, mut raw, _buf) = raw_peer().await;
    raw.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
    drop(raw);
    assert!(matches!(task.await, CloseReason::Framing(_)));
}

#[tokio::test]
async fn wrong_protocol_version_is_refused() {
    let (sa, mut raw) = UnixStream::pair().unwrap();
    let hello = Frame::<ToEnclave>::Hello(Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        role: Role::Tool,
        software: "t".into(),
        capabilities: vec![],
        max_frame_len: 1 << 20,
    });
    raw.write_all(&FrameCodec::default().encode_to_bytes(&hello).unwrap())
        .await
        .unwrap();
    let err = Connection::establish(sa, config(Role::Enclave), Arc::new(Echo::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Version { .. }), "{err}");
}

#[tokio::test]
async fn first_frame_must_be_hello() {
    let (sa, mut raw) = UnixStream::pair().unwrap();
    let ping = Frame::Request {
        id: 1,
        deadline_ms: 10,
        body: ToEnclave::Ping,
    };
    raw.write_all(&FrameCodec::default().encode_to_bytes(&ping).unwrap())
        .await
        .unwrap();
    let err = Connection::establish(sa, config(Role::Enclave), Arc::new(Echo::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::NoHello(_)), "{err}");
}

#[tokio::test]
async fn requests_larger_than_the_peers_cap_are_not_sent() {
    let mut cb = config(Role::Enclave);
    cb.max_frame_len = 1024;
    let p = pair_with(config(Role::Parent), cb).await;
    let big = ToEnclave::Nats(NatsMessage {
        subject: "0".into(),
        reply: None,
        headers: vec![],
        payload: vec![0u8; 4096].into(),
    });
    assert!(matches!(
        p.a.request(big, Duration::from_secs(1)).await,
        Err(RpcError::Encode(_))
    ));
    assert_eq!(
        p.a.request(ToEnclave::Ping, Duration::from_secs(1)).await,
        Ok(Response::Pong)
    );
}

#[tokio::test]
async fn tcp_and_unix_listeners_carry_a_link() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        format!("unix://{}/l.sock", dir.path().display()),
        "tcp://127.0.0.1:0".to_string(),
    ] {
        let listener = Listener::bind(&addr.parse().unwrap()).await.unwrap();
        let bound = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _peer) = listener.accept().await.unwrap();
            let (c, t) =
                Connection::establish(stream, config(Role::Enclave), Arc::new(Echo::default()))
                    .await
                    .unwrap();
            let _ = t.await;
            drop(c);
        });
        let stream = connect(&bound).await.unwrap();
        let (c, t) = Connection::establish(stream, config(Role::Parent), Arc::new(Echo::default()))
            .await
            .unwrap();
        assert_eq!(
            c.request(ToEnclave::Ping, Duration::from_secs(1)).await,
            Ok(Response::Pong)
        );
        c.close("done");
        let _ = t.await;
        server.await.unwrap();
    }
}

#[tokio::test]
async fn stale_unix_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let addr: Address = format!("unix://{}", path.display()).parse().unwrap();
    let first = Listener::bind(&addr).await.unwrap();
    std::mem::forget(first); // simulate a crash: the socket file stays behind
    let _second = Listener::bind(&addr).await.expect("stale socket replaced");
    let file = dir.path().join("f");
    std::fs::write(&file, b"keep").unwrap();
    let err = Listener::bind(&format!("unix://{}", file.display()).parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}
