//! The fault table: a fixed-rate load while one part of the system fails and comes back, counting
//! for every request how many answers it got. Each request has its own reply inbox, so a second
//! answer to the same request (a duplicate) is seen, not hidden by request/reply plumbing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::system::System;

/// When an answer arrived, and whether it was a success (or the error code).
type Answer = (Instant, Result<(), String>);

/// A part that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// nats-server killed, restarted after the outage.
    NatsRestart,
    /// The enclave killed (SIGKILL), restarted after the outage.
    EnclaveKill,
    /// The parent stopped with SIGTERM (drain), restarted.
    ParentTerm,
    /// The parent killed (SIGKILL) mid-request, restarted.
    ParentKill,
}

impl Fault {
    /// Every fault, in table order.
    pub const ALL: [Fault; 4] = [
        Fault::NatsRestart,
        Fault::EnclaveKill,
        Fault::ParentTerm,
        Fault::ParentKill,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::NatsRestart => "nats-server stopped, restarted",
            Fault::EnclaveKill => "enclave SIGKILL, restarted",
            Fault::ParentTerm => "parent SIGTERM, restarted",
            Fault::ParentKill => "parent SIGKILL mid-request, restarted",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct FaultRow {
    /// What failed.
    pub fault: &'static str,
    /// Requests sent.
    pub sent: usize,
    /// Requests answered with a success.
    pub ok: usize,
    /// Requests answered with a clear error (e.g. `enclave_unavailable`).
    pub errors: usize,
    /// Error replies by code.
    pub error_codes: std::collections::BTreeMap<String, usize>,
    /// Requests with no answer within the deadline.
    pub unanswered: usize,
    /// Requests answered more than once.
    pub duplicates: usize,
    /// From the part being back to the first success of a request sent after that.
    pub recovery: Option<Duration>,
}

/// Runs the load for `before`, applies `fault` with an outage of `outage`, keeps loading for
/// `after`, then waits `deadline` for late answers.
pub async fn run(
    sys: &mut System,
    fault: Fault,
    rate: u32,
    before: Duration,
    outage: Duration,
    after: Duration,
    deadline: Duration,
) -> FaultRow {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(sys.nats.url())
        .await
        .expect("load client");
    let prefix = format!("_INBOX.faults.{}", std::process::id());
    let mut inbox = client
        .subscribe(format!("{prefix}.>"))
        .await
        .expect("inbox");
    client.flush().await.expect("flush");
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(usize, Instant, Result<(), String>)>();
    let collector = tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            let Some(id) = m
                .subject
                .rsplit('.')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            // With no subscriber on the subject the server itself answers "503 no responders".
            let no_responders = m.status == Some(async_nats::StatusCode::NO_RESPONDERS);
            let ok = match serde_json::from_slice::<Value>(&m.payload) {
                _ if no_responders => Err("no_responders (from nats-server)".to_string()),
                Ok(v) if v["type"] == "error" => Err(v["code"].as_str().unwrap_or("?").to_string()),
                Ok(_) => Ok(()),
                Err(_) => Err("not json".to_string()),
            };
            if tx.send((id, Instant::now(), ok)).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = before + outage + after;
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut fault_done = false;
    let mut back_at: Option<Instant> = None;
    while started.elapsed() < total {
        let i = sent_at.len();
        let (subject, payload) = if i.is_multiple_of(2) {
            ("enclave.health", json!({}))
        } else {
            (
                "enclave.attestation.request",
                json!({"nonce": B64.encode((i as u64).to_be_bytes())}),
            )
        };
        let _ = client
            .publish_with_reply(subject, format!("{prefix}.{i}"), payload.to_string().into())
            .await;
        sent_at.push(Instant::now());
        if !fault_done && started.elapsed() >= before {
            fault_done = true;
            let s = &mut *sys;
            inject(s, fault, outage).await;
            back_at = Some(Instant::now());
        }
        tokio::time::sleep(interval).await;
    }
    tokio::time::sleep(deadline).await;
    drop(client);
    collector.abort();

    let mut answers: HashMap<usize, Vec<Answer>> = HashMap::new();
    while let Ok((id, at, ok)) = rx.try_recv() {
        answers.entry(id).or_default().push((at, ok));
    }
    let mut row = FaultRow {
        fault: fault.name(),
        sent: sent_at.len(),
        ok: 0,
        errors: 0,
        error_codes: std::collections::BTreeMap::new(),
        unanswered: 0,
        duplicates: 0,
        recovery: None,
    };
    for (id, at) in sent_at.iter().enumerate() {
        match answers.get(&id).map(Vec::as_slice) {
            None | Some([]) => row.unanswered += 1,
            Some(list) => {
                if list.len() > 1 {
                    row.duplicates += 1;
                }
                let (answered, result) = &list[0];
                let (answered, ok) = (*answered, result.is_ok());
                match result {
                    Ok(()) => row.ok += 1,
                    Err(code) => {
                        row.errors += 1;
                        *row.error_codes.entry(code.clone()).or_insert(0) += 1;
                    }
                }
                if let Some(back) = back_at {
                    if ok && *at >= back {
                        let r = answered.saturating_duration_since(back);
                        row.recovery = Some(row.recovery.map_or(r, |old| old.min(r)));
                    }
                }
            }
        }
    }
    row
}

async fn inject(sys: &mut System, fault: Fault, outage: Duration) {
    match fault {
        Fault::NatsRestart => {
            sys.nats.stop();
            tokio::time::sleep(outage).await;
            sys.nats.restart();
        }
        Fault::EnclaveKill => {
            sys.kill_enclave();
            tokio::time::sleep(outage).await;
            sys.start_enclave();
        }
        Fault::ParentTerm => {
            if let Some(p) = sys.parent.as_mut() {
                p.signal("TERM");
                let _ = p.wait_exit(Duration::from_secs(15));
            }
            tokio::time::sleep(outage).await;
            sys.start_parent();
        }
        Fault::ParentKill => {
            if let Some(mut p) = sys.parent.take() {
                p.kill();
            }
            tokio::time::sleep(outage).await;
            sys.start_parent();
        }
    }
}

/// Renders rows as a markdown table.
pub fn markdown(rows: &[FaultRow]) -> String {
    let mut s = String::from("| fault | requests | ok | error replies (codes) | unanswered | duplicates | recovery |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let rec = r
            .recovery
            .map(|d| format!("{} ms", d.as_millis()))
            .unwrap_or_else(|| "none".into());
        let codes: Vec<String> = r
            .error_codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        s += &format!(
            "| {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            r.fault,
            r.sent,
            r.ok,
            r.errors,
            codes.join(", "),
            r.unanswered,
            r.duplicates,
            rec
        );
    }
    s
}
