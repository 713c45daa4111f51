//! Requests whose every answer is counted.
//!
//! `async_nats::Client::request` takes the first reply and drops the inbox, so a second answer to
//! the same request (the failure the fault table must rule out) would never be seen. A
//! [`Requester`] instead keeps one wildcard inbox for the whole run and gives every request its own
//! reply subject under it: the first answer completes the request, and any later one is counted
//! against it ([`Requester::duplicates`]) for as long as the requester lives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Answers received per request id; the waiter is taken by the first.
#[derive(Default)]
struct Book {
    waiters: HashMap<u64, oneshot::Sender<Value>>,
    answers: HashMap<u64, u32>,
}

/// A NATS client whose requests each have their own reply subject. Cheap to clone.
#[derive(Clone)]
pub struct Requester {
    client: async_nats::Client,
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
    book: Arc<Mutex<Book>>,
    collector: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Requester {
    fn drop(&mut self) {
        if Arc::strong_count(&self.collector) == 1 {
            self.collector.abort();
        }
    }
}

impl Requester {
    /// Connects to `url`, reconnecting every 50 ms while the server is away (the NATS-restart
    /// fault), and subscribes the run's inbox.
    ///
    /// # Panics
    /// If the server cannot be reached or the subscription fails.
    pub async fn connect(url: &str) -> Self {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|_| Duration::from_millis(50))
            .connect(url)
            .await
            .expect("connect to test nats-server");
        Self::new(client).await
    }

    /// Uses `client`; subscribes a fresh inbox on it.
    ///
    /// # Panics
    /// If the subscription fails.
    pub async fn new(client: async_nats::Client) -> Self {
        let prefix: Arc<str> = format!("{}.counted", client.new_inbox()).into();
        let mut inbox = client
            .subscribe(format!("{prefix}.>"))
            .await
            .expect("subscribe the reply inbox");
        client.flush().await.expect("flush the subscription");
        let book = Arc::new(Mutex::new(Book::default()));
        let collector = tokio::spawn({
            let book = book.clone();
            async move {
                while let Some(m) = inbox.next().await {
                    let Some(id) = m.subject.rsplit('.').next().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    let answer = reply_json(&m);
                    let mut b = book.lock().unwrap();
                    *b.answers.entry(id).or_insert(0) += 1;
                    if let Some(w) = b.waiters.remove(&id) {
                        let _ = w.send(answer);
                    }
                }
            }
        });
        Self {
            client,
            prefix,
            next: Arc::new(AtomicU64::new(1)),
            book,
            collector: Arc::new(collector),
        }
    }

    /// Publishes `payload` to `subject` and waits at most `limit` for the first answer, as JSON.
    /// nats-server's own "no responders" status becomes `{type:"error", code:"no_responders"}`;
    /// a reply that is not JSON becomes code `not_json`.
    ///
    /// # Errors
    /// Why there was no answer: the publish failed, or `limit` passed.
    pub async fn request(
        &self,
        subject: &str,
        payload: &Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.book.lock().unwrap().waiters.insert(id, tx);
        let reply = format!("{}.{id}", self.prefix);
        let sent = self
            .client
            .publish_with_reply(subject.to_owned(), reply, payload.to_string().into())
            .await;
        if let Err(e) = sent {
            self.book.lock().unwrap().waiters.remove(&id);
            return Err(format!("publish failed: {e}"));
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                self.book.lock().unwrap().waiters.remove(&id);
                Err(format!("no answer within {limit:?}"))
            }
        }
    }

    /// Requests answered more than once so far.
    pub fn duplicates(&self) -> usize {
        self.book
            .lock()
            .unwrap()
            .answers
            .values()
            .filter(|&&n| n > 1)
            .count()
    }
}

fn reply_json(m: &async_nats::Message) -> Value {
    if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return json!({"type": "error", "code": "no_responders"});
    }
    serde_json::from_slice(&m.payload)
        .unwrap_or_else(|_| json!({"type": "error", "code": "not_json"}))
}
