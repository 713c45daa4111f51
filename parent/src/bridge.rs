//! NATS → enclave → NATS. Subscribes, forwards each message as an opaque request, publishes what
//! the enclave returns on core NATS (never a JetStream publish: VettID's JetStream replies stalled
//! for a PubAck and then went out twice, defect G14). The `ENROLLMENT` stream ([`crate::stream`])
//! still keeps the app answers, because a stream stores core publishes on its subjects too.
//!
//! App requests (`OwnerSpace.*.forVault.*`) are also answered on their correlated subject
//! ([`crate::correlate`]): the enclave's answer on the legacy app subject is published there
//! again, and the parent's own error replies go there too. One answer per request per subject:
//! the queue group gives each request to one parent, and that parent publishes each subject once.
//!
//! Back-pressure: a message is pulled from the subscriptions only once a slot (one of
//! `max_in_flight`) is free, so when the enclave is slow the parent stops pulling rather than
//! queueing without bound or dropping. Beyond our slots, the NATS client buffers up to its
//! subscription capacity and then reports a slow consumer, which is counted and logged as an error
//! (core NATS offers no way to refuse delivery).
//!
//! Shutdown: each subscription is drained (unsubscribed, with what the server already delivered
//! still processed), in-flight requests finish within the grace, replies are flushed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use futures::stream::{SelectAll, StreamExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use vettid_link::RpcError;
use vettid_protocol::{ErrorCode, NatsMessage, NatsReply, Response, ToEnclave};

use crate::config::Config;
use crate::correlate::AppSubjects;
use crate::enclave_link::EnclaveLink;
use crate::metrics::{Metrics, Outcome, SubjectFamily};
use crate::reply::ParentError;

/// The subscriptions, as (subject, whether it uses the queue group). Control commands for all
/// hosts or for this host are not queue-grouped: every targeted host must see them.
pub fn subjects(config: &Config) -> Vec<(String, bool)> {
    vec![
        ("enclave.>".into(), true),
        ("OwnerSpace.*.forVault.>".into(), true),
        ("MessageSpace.*.forOwner.>".into(), true),
        ("Control.user.>".into(), true),
        ("Control.global.>".into(), false),
        (format!("Control.enclave.{}.>", config.enclave_id), false),
    ]
}

/// Subscribes to every subject in [`subjects`].
///
/// # Errors
/// The NATS client's subscribe error.
pub async fn subscribe(
    client: &Client,
    config: &Config,
) -> Result<SelectAll<Subscriber>, async_nats::SubscribeError> {
    let mut all = SelectAll::new();
    for (subject, queued) in subjects(config) {
        let sub = if queued {
            client
                .queue_subscribe(subject, config.nats.queue_group.clone())
                .await?
        } else {
            client.subscribe(subject).await?
        };
        all.push(sub);
    }
    Ok(all)
}

/// Forwards messages until shutdown, then drains.
pub struct Bridge {
    /// NATS client used for replies.
    pub client: Client,
    /// Link to the enclave.
    pub link: Arc<EnclaveLink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How long a forwarded request may take.
    pub request_timeout: Duration,
    /// Slots.
    pub max_in_flight: usize,
    /// Drain grace after shutdown.
    pub grace: Duration,
}

impl Bridge {
    /// Runs until `shutdown` turns true and the drain is complete (or the grace is over).
    pub async fn run(self, mut subs: SelectAll<Subscriber>, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            let deadline = drain_deadline;
            tokio::select! {
                biased;
                _ = crate::signalled(&mut shutdown), if deadline.is_none() => {
                    tracing::info!(in_flight = tasks.len(), "draining NATS subscriptions");
                    for sub in subs.iter_mut() {
                        if let Err(e) = sub.drain().await {
                            tracing::warn!(error = %e, "subscription drain failed");
                        }
                    }
                    drain_deadline = Some(tokio::time::Instant::now() + this.grace);
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                    tracing::warn!("drain grace over before every subscription ended");
                    break;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = pull(&slots, &mut subs) => match next {
                    Some((permit, msg)) => {
                        let this = this.clone();
                        tasks.spawn(async move { this.forward(msg, permit).await });
                    }
                    None => break,
                },
            }
        }
        let grace_left = drain_deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(this.grace);
        if tokio::time::timeout(grace_left, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "in-flight requests still running at the end of the grace"
            );
            tasks.shutdown().await;
        }
        // Bounded: with nats-server already gone a flush would wait forever and the parent
        // would never exit.
        match tokio::time::timeout(Duration::from_secs(2), this.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "final NATS flush failed"),
            Err(_) => tracing::warn!("final NATS flush timed out"),
        }
    }

    async fn forward(&self, msg: Message, _permit: OwnedSemaphorePermit) {
        let started = Instant::now();
        let family = SubjectFamily::of(&msg.subject);
        self.metrics.in_flight.inc();
        let app = AppSubjects::of(&msg.subject, &msg.payload);
        if app.as_ref().is_some_and(|a| a.correlated.is_none()) {
            self.metrics.uncorrelated_app_requests.inc();
        }
        let result = self.call_enclave(&msg).await;
        let outcome = match result {
            Ok(reply) => {
                if let (Some(inbox), Some(body)) = (&msg.reply, reply.reply) {
                    self.publish(inbox.to_string(), body).await;
                }
                self.publish_enclave_answers(app.as_ref(), reply.publish)
                    .await;
                Outcome::Ok
            }
            Err(err) => {
                let body = err.to_json(app.as_ref());
                if let Some(inbox) = &msg.reply {
                    self.publish(inbox.to_string(), body.clone()).await;
                }
                // The correlated subject is this request's alone, so an app waiting there
                // without an inbox learns at once that no answer is coming (v1 sent nothing and
                // the app waited out its timeout). The shared legacy subject gets nothing, as in
                // v1: its listeners cannot tell whose request failed.
                if let Some(correlated) = app.and_then(|a| a.correlated) {
                    self.publish(correlated, body).await;
                }
                tracing::debug!(subject = %msg.subject, code = err.code(), "request answered by the parent");
                match err {
                    ParentError::EnclaveUnavailable => Outcome::EnclaveUnavailable,
                    ParentError::EnclaveTimeout => Outcome::EnclaveTimeout,
                    ParentError::Busy => Outcome::Busy,
                    ParentError::ShuttingDown => Outcome::ShuttingDown,
                    ParentError::BadEnclaveReply => Outcome::Error,
                }
            }
        };
        self.metrics.in_flight.dec();
        self.metrics
            .observe(family, outcome, started.elapsed().as_secs_f64());
    }

    /// Publishes what the enclave asked for, and mirrors its answer on the request's
    /// legacy app subject onto the correlated one (once, even if the enclave listed it twice).
    async fn publish_enclave_answers(
        &self,
        app: Option<&AppSubjects>,
        publications: Vec<vettid_protocol::Publication>,
    ) {
        let mut correlated = app.and_then(|a| a.correlated.as_deref());
        for p in publications {
            if !valid_publish_subject(&p.subject) {
                self.metrics.publish_errors.inc();
                tracing::error!("enclave asked to publish on an invalid subject");
                continue;
            }
            let mirror = match (app, correlated) {
                (Some(a), Some(c)) if p.subject == a.legacy => {
                    correlated = None;
                    Some((c.to_owned(), p.payload.clone()))
                }
                _ => None,
            };
            self.publish(p.subject, p.payload).await;
            if let Some((subject, payload)) = mirror {
                self.publish(subject, payload).await;
            }
        }
    }

    async fn call_enclave(&self, msg: &Message) -> Result<NatsReply, ParentError> {
        let conn = self.link.current().ok_or(ParentError::EnclaveUnavailable)?;
        let headers = msg
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.to_string()))
            })
            .collect();
        let request = ToEnclave::Nats(NatsMessage {
            subject: msg.subject.to_string(),
            reply: msg.reply.as_ref().map(|r| r.to_string()),
            headers,
            payload: msg.payload.clone(),
        });
        match conn.request(request, self.request_timeout).await {
            Ok(Response::Nats(reply)) => Ok(reply),
            Ok(_) => Err(ParentError::BadEnclaveReply),
            Err(RpcError::Closed(_)) => Err(ParentError::EnclaveUnavailable),
            Err(RpcError::Timeout(_)) => Err(ParentError::EnclaveTimeout),
            Err(RpcError::Remote(e)) if e.code == ErrorCode::Busy => Err(ParentError::Busy),
            Err(RpcError::Remote(e)) if e.code == ErrorCode::ShuttingDown => {
                Err(ParentError::ShuttingDown)
            }
            Err(e) => {
                tracing::error!(error = %e, "enclave request failed");
                Err(ParentError::BadEnclaveReply)
            }
        }
    }

    async fn publish(&self, subject: String, payload: bytes::Bytes) {
        if let Err(e) = self.client.publish(subject, payload).await {
            self.metrics.publish_errors.inc();
            tracing::warn!(error = %e, "publish failed");
        }
    }
}

/// Waits for a free slot, then for the next message. Cancel-safe: a dropped call returns its slot
/// and takes no message.
async fn pull(
    slots: &Arc<Semaphore>,
    subs: &mut SelectAll<Subscriber>,
) -> Option<(OwnedSemaphorePermit, Message)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    let msg = subs.next().await?;
    Some((permit, msg))
}

/// A concrete subject: non-empty tokens, no wildcards or whitespace.
fn valid_publish_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects_must_be_concrete() {
        assert!(valid_publish_subject(
            "OwnerSpace.u.forApp.attestation.response"
        ));
        for bad in ["", "a..b", "OwnerSpace.*.forApp", "a.>", "a b", ".a"] {
            assert!(!valid_publish_subject(bad), "{bad}");
        }
    }

    #[test]
    fn control_subjects_for_this_host_are_not_queue_grouped() {
        let c = Config::load(
            Some("enclave_id = \"us-east-1-i-0abc-1\"\n[attestation]\ndev_mode = true\ndev_accept_any_pcrs = true\n"),
            &Default::default(),
        )
        .unwrap();
        let s = subjects(&c);
        assert!(s.contains(&("Control.enclave.us-east-1-i-0abc-1.>".into(), false)));
        assert!(s.contains(&("Control.global.>".into(), false)));
        assert!(s.contains(&("OwnerSpace.*.forVault.>".into(), true)));
    }
}
