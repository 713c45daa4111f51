//! The parent under a real `sd_notify` socket: READY once subscribed, watchdog pings at half the
//! interval, STOPPING on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use vettid_tests::{System, SystemOptions};

fn collect(sock: &UnixDatagram, until: Instant) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn parent_reports_ready_pets_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut sys = System::start(SystemOptions {
        parent_env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            // 1 s watchdog: pings expected every 500 ms.
            ("WATCHDOG_USEC".into(), "1000000".into()),
        ],
        ..Default::default()
    });
    let msgs = collect(&sock, Instant::now() + Duration::from_millis(2500));
    assert!(msgs.iter().any(|m| m.contains("READY=1")), "{msgs:?}");
    let pings = msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 3,
        "expected a ping every 500 ms, got {pings}: {msgs:?}"
    );

    // A stopped (wedged) process sends nothing: systemd would restart it.
    let parent = sys.parent.as_mut().unwrap();
    parent.signal("STOP");
    let silent = collect(&sock, Instant::now() + Duration::from_millis(1200));
    assert!(silent.is_empty(), "{silent:?}");
    parent.signal("CONT");

    parent.signal("TERM");
    let msgs = collect(&sock, Instant::now() + Duration::from_millis(1500));
    assert!(msgs.iter().any(|m| m.contains("STOPPING=1")), "{msgs:?}");
    assert_eq!(
        parent.wait_exit(Duration::from_secs(10)).expect("exited"),
        Some(0)
    );
}
