//! Faults with real processes: the enclave killed and restarted, nats-server stopped and
//! restarted, the parent stopped with requests in flight. Every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::json;
use vettid_tests::{request_json, System, SystemOptions};

const LIMIT: Duration = Duration::from_secs(10);

async fn wait_for_health(client: &async_nats::Client, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(v) = request_json(
            client,
            "enclave.health",
            json!({}),
            Duration::from_millis(500),
        )
        .await
        {
            if v["healthy"] == true {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_enclave_gets_prompt_errors_then_service_resumes() {
    let mut sys = System::start(SystemOptions::default());
    let c = sys.client().await;

    // Requests in flight when the enclave dies are answered with an error, not left to time out.
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                request_json(&c, "enclave.dev.sleep", json!({"ms": 5000}), LIMIT).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    sys.kill_enclave();
    for call in in_flight {
        let v = call.await.unwrap().expect("an answer, not a timeout");
        assert_eq!(v["code"], "enclave_unavailable", "{v}");
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "in-flight errors took {:?}",
        killed_at.elapsed()
    );

    // New requests during the outage: an error reply within a second or two.
    for _ in 0..5 {
        let asked = Instant::now();
        let v = request_json(&c, "enclave.health", json!({}), LIMIT)
            .await
            .unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "enclave_unavailable");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
    }
    let (status, health) = sys.health().unwrap();
    assert_eq!(status, 503);
    assert_eq!(health["enclave_connected"], false);
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("enclave not connected"),
        "{health}"
    );

    // The enclave comes back; the parent reconnects by itself.
    sys.start_enclave();
    let resumed = wait_for_health(&c, Duration::from_secs(10))
        .await
        .expect("service resumed");
    assert!(
        resumed < Duration::from_secs(3),
        "resumed after {resumed:?}"
    );
    assert!(sys.wait_healthy(Duration::from_secs(5)));
    assert_eq!(sys.health().unwrap().1["enclave_connects"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_is_survived_without_restarting_the_parent() {
    let mut sys = System::start(SystemOptions::default());
    {
        let c = sys.client().await;
        assert!(wait_for_health(&c, LIMIT).await.is_some());
    }
    sys.nats.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, h) = sys.health().unwrap();
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["nats_connected"], false);
    sys.nats.restart();
    let c = sys.client().await;
    let resumed = wait_for_health(&c, Duration::from_secs(15))
        .await
        .expect("parent resubscribed");
    assert!(
        resumed < Duration::from_secs(5),
        "resumed after {resumed:?}"
    );
    assert!(
        sys.parent.as_mut().unwrap().running(),
        "same parent process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                request_json(&c, "enclave.dev.sleep", json!({"ms": 1000}), LIMIT).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parent = sys.parent.as_mut().unwrap();
    parent.signal("TERM");
    for call in calls {
        let v = call.await.unwrap().expect("answered during drain");
        assert_eq!(v["slept_ms"], 1000, "{v}");
    }
    let code = parent
        .wait_exit(Duration::from_secs(10))
        .expect("parent exited");
    assert_eq!(code, Some(0));
    // Nobody serves now: a new request finds no responders.
    let err = request_json(&c, "enclave.health", json!({}), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.contains("no responders") || err == "timeout", "{err}");
    // A new parent takes over.
    sys.start_parent();
    assert!(wait_for_health(&c, LIMIT).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_sigterm_finishes_in_flight_work() {
    let mut sys = System::start(SystemOptions::default());
    let c = sys.client().await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move {
            request_json(&c, "enclave.dev.sleep", json!({"ms": 800}), LIMIT).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enclave = sys.enclave.as_mut().unwrap();
    enclave.signal("TERM");
    assert_eq!(call.await.unwrap().unwrap()["slept_ms"], 800);
    assert_eq!(
        enclave
            .wait_exit(Duration::from_secs(10))
            .expect("enclave exited"),
        Some(0)
    );
}
