//! The KMS tunnel over real loopback sockets (TCP and Unix; never vsock): allowed targets are
//! relayed both ways, everything else is refused with the right one-line answer without touching
//! the target, the listener survives bad clients, and shutdown drains.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vettid_link::{connect, Address, Stream};
use vettid_parent::kms::{AllowList, KmsConfig, TunnelServer};
use vettid_parent::metrics::Metrics;

/// Bound of every wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// A TCP echo server on 127.0.0.1:0 that counts the connections it accepts.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Echo {
        addr,
        accepted,
        task,
    }
}

/// A running tunnel listener.
struct Tunnel {
    addr: Address,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn tunnel_on(
    listen: Address,
    allow: &[String],
    max_tunnels: usize,
    grace: Duration,
) -> Tunnel {
    tunnel_with(listen, allow, max_tunnels, grace, Default::default()).await
}

async fn tunnel_with(
    listen: Address,
    allow: &[String],
    max_tunnels: usize,
    grace: Duration,
    resolve: std::collections::BTreeMap<String, std::net::IpAddr>,
) -> Tunnel {
    let config = KmsConfig {
        tunnel_listen: listen,
        allow: AllowList::new(allow.iter().map(|a| a.parse().unwrap())),
        connect_timeout: Duration::from_secs(2),
        max_tunnels,
        resolve,
    };
    let metrics = Arc::new(Metrics::new());
    let server = TunnelServer::bind(&config, metrics.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(stop_rx, grace));
    Tunnel {
        addr,
        metrics,
        stop,
        task,
    }
}

async fn tunnel(allow: &[String]) -> Tunnel {
    tunnel_on(
        "tcp://127.0.0.1:0".parse().unwrap(),
        allow,
        8,
        Duration::from_secs(1),
    )
    .await
}

/// Reads one reply line (at most 64 bytes); `None` on EOF before any byte.
async fn reply(s: &mut Stream) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
        }
    }
    (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned())
}

/// Connects, sends `preamble` as is, and returns the stream and the parent's reply.
async fn ask(addr: &Address, preamble: &[u8]) -> (Stream, Option<String>) {
    within("ask", async {
        let mut s = connect(addr).await.unwrap();
        s.write_all(preamble).await.unwrap();
        let r = reply(&mut s).await;
        (s, r)
    })
    .await
}

async fn open(addr: &Address, target: &str) -> (Stream, Option<String>) {
    ask(addr, format!("vettid-tunnel-v1 {target}\n").as_bytes()).await
}

/// Reads until EOF (bounded): the parent closed.
async fn assert_closed(s: &mut Stream) {
    let mut rest = Vec::new();
    within("close", s.read_to_end(&mut rest)).await.ok();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

fn metric(m: &Metrics, series: &str) -> f64 {
    let text = m.render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_for_metric(m: &Metrics, series: &str, want: f64) {
    within(series, async {
        while metric(m, series) != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_pinned_name_is_reached_at_its_fixed_address() {
    let echo = echo().await;
    let name = format!("kms.vettid.test:{}", echo.addr.port());
    let resolve = [(
        "kms.vettid.test".to_string(),
        std::net::IpAddr::from([127, 0, 0, 1]),
    )]
    .into();
    let t = tunnel_with(
        "tcp://127.0.0.1:0".parse().unwrap(),
        std::slice::from_ref(&name),
        8,
        Duration::from_secs(1),
        resolve,
    )
    .await;
    let (mut s, r) = open(&t.addr, &name).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    within("echo", async {
        s.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    })
    .await;
}

#[tokio::test]
async fn allowed_target_is_relayed_both_ways_and_counted() {
    let echo = echo().await;
    let t = tunnel(&[echo.addr.to_string()]).await;
    let (mut s, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    within("echo", async {
        s.write_all(b"\x16\x03\x01 ciphertext").await.unwrap();
        let mut back = [0u8; 14];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\x16\x03\x01 ciphertext");
    })
    .await;
    assert_eq!(metric(&t.metrics, "vettid_kms_tunnels_active"), 1.0);
    drop(s);
    wait_for_metric(&t.metrics, "vettid_kms_tunnels_active", 0.0).await;
    assert_eq!(
        metric(&t.metrics, r#"vettid_kms_tunnels_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &t.metrics,
            r#"vettid_kms_tunnel_bytes_total{direction="to_kms"}"#
        ),
        14.0
    );
    assert_eq!(
        metric(
            &t.metrics,
            r#"vettid_kms_tunnel_bytes_total{direction="from_kms"}"#
        ),
        14.0
    );
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bytes_pipelined_behind_the_preamble_reach_the_target() {
    let echo = echo().await;
    let t = tunnel(&[echo.addr.to_string()]).await;
    let (mut s, r) = ask(
        &t.addr,
        format!("vettid-tunnel-v1 {}\nclient-hello", echo.addr).as_bytes(),
    )
    .await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    let mut back = [0u8; 12];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"client-hello");
}

#[tokio::test]
async fn target_off_the_list_is_denied_without_a_connection_attempt() {
    let allowed = echo().await;
    let other = echo().await;
    let t = tunnel(&[allowed.addr.to_string()]).await;
    let (mut s, r) = open(&t.addr, &other.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("denied\n"));
    assert_closed(&mut s).await;
    // Same host, other port; and a name that resolves to the allowed address.
    let (_, r) = open(&t.addr, &format!("localhost:{}", allowed.addr.port())).await;
    assert_eq!(r.as_deref(), Some("denied\n"));
    assert_eq!(other.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(allowed.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(
        metric(&t.metrics, r#"vettid_kms_tunnels_total{outcome="denied"}"#),
        2.0
    );
}

#[tokio::test]
async fn empty_allow_list_refuses_everything() {
    let echo = echo().await;
    let t = tunnel(&[]).await;
    let (_, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("denied\n"));
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_preambles_are_denied_and_the_listener_keeps_serving() {
    let echo = echo().await;
    let t = tunnel(&[echo.addr.to_string()]).await;
    let port = echo.addr.port();
    let no_newline = vec![b'a'; 300];
    let long_line = format!("vettid-tunnel-v1 {}:{port}\n", "a".repeat(400));
    let cases: Vec<Vec<u8>> = vec![
        no_newline,
        long_line.into_bytes(),
        b"\n".to_vec(),
        b"vettid-tunnel-v1 \n".to_vec(),
        format!("vettid-tunnel-v1 127.0.0.1:{port}0000\n").into_bytes(),
        b"vettid-tunnel-v1 127.0.0.1:0\n".to_vec(),
        format!("vettid-tunnel-v1 *:{port}\n").into_bytes(),
        format!("vettid-tunnel-v1 127.0.0.*:{port}\n").into_bytes(),
        format!("vettid-tunnel-v2 127.0.0.1:{port}\n").into_bytes(),
        format!("vettid-tunnel-v1 127.0.0.1:{port}\r\n").into_bytes(),
        format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes(),
    ];
    let n = cases.len();
    for preamble in cases {
        let (mut s, r) = ask(&t.addr, &preamble).await;
        assert_eq!(
            r.as_deref(),
            Some("denied\n"),
            "{:?}",
            String::from_utf8_lossy(&preamble)
        );
        assert_closed(&mut s).await;
    }
    // A client that connects and leaves at once.
    drop(within("connect", connect(&t.addr)).await.unwrap());
    wait_for_metric(
        &t.metrics,
        r#"vettid_kms_tunnels_total{outcome="bad_preamble"}"#,
        (n + 1) as f64,
    )
    .await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);

    let (mut s, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    s.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"still here");
}

#[tokio::test]
async fn allowed_but_closed_port_is_unreachable() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let t = tunnel(&[closed.to_string()]).await;
    let (mut s, r) = open(&t.addr, &closed.to_string()).await;
    assert_eq!(r.as_deref(), Some("unreachable\n"));
    assert_closed(&mut s).await;
    assert_eq!(
        metric(
            &t.metrics,
            r#"vettid_kms_tunnels_total{outcome="unreachable"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn tunnels_past_the_limit_are_busy_until_one_closes() {
    let echo = echo().await;
    let t = tunnel_on(
        "tcp://127.0.0.1:0".parse().unwrap(),
        &[echo.addr.to_string()],
        1,
        Duration::from_secs(1),
    )
    .await;
    let (first, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    let (mut s, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("busy\n"));
    assert_closed(&mut s).await;
    assert_eq!(
        metric(&t.metrics, r#"vettid_kms_tunnels_total{outcome="busy"}"#),
        1.0
    );
    drop(first);
    wait_for_metric(&t.metrics, "vettid_kms_tunnels_active", 0.0).await;
    let (_, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
}

#[tokio::test]
async fn unix_socket_listener_serves_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo().await;
    let listen: Address = format!("unix://{}", dir.path().join("kms.sock").display())
        .parse()
        .unwrap();
    let t = tunnel_on(listen, &[echo.addr.to_string()], 4, Duration::from_secs(1)).await;
    let (mut s, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    s.write_all(b"over unix").await.unwrap();
    let mut back = [0u8; 9];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"over unix");
}

#[tokio::test]
async fn shutdown_stops_accepting_lets_open_tunnels_finish_then_closes_them() {
    let echo = echo().await;
    let t = tunnel_on(
        "tcp://127.0.0.1:0".parse().unwrap(),
        &[echo.addr.to_string()],
        4,
        Duration::from_millis(500),
    )
    .await;
    let (mut s, r) = open(&t.addr, &echo.addr.to_string()).await;
    assert_eq!(r.as_deref(), Some("ok\n"));
    t.stop.send(true).unwrap();
    // Within the grace the open tunnel still works...
    s.write_all(b"in grace").await.unwrap();
    let mut back = [0u8; 8];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"in grace");
    // ...no new connection is taken...
    within("listener closed", async {
        while connect(&t.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // ...and after it the parent closes the tunnel and the server returns.
    assert_closed(&mut s).await;
    within("run returns", t.task).await.unwrap();
    assert_eq!(metric(&t.metrics, "vettid_kms_tunnels_active"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn silent_client_is_cut_off_after_the_preamble_timeout() {
    // Paused time: the 5 s preamble timeout passes as soon as everything is idle.
    let t = tunnel(&[]).await;
    let mut s = connect(&t.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(reply(&mut s).await.as_deref(), Some("denied\n"));
    assert!(started.elapsed() >= vettid_parent::kms::preamble::PREAMBLE_TIMEOUT);
    assert_eq!(
        metric(
            &t.metrics,
            r#"vettid_kms_tunnels_total{outcome="bad_preamble"}"#
        ),
        1.0
    );
}
