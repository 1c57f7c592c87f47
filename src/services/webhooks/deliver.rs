//! The delivery worker: every node runs one; together they drain the outbox.
//!
//! A worker leases a few due deliveries at a time (racing nodes never lease the same one), sends each as
//! its own task, and records outcomes (many per transaction) only while it still holds their leases. A 2xx deletes the delivery;
//! anything else — another status, a timeout, a refused connection — schedules the next attempt with
//! exponential backoff and jitter, with the same `webhook-id`, until the retry window (24 h) has passed
//! since the event; then the delivery is dropped and its webhook disabled. A node that dies mid-attempt
//! leaves a lease that runs out, and another node sends the delivery again: at least once, and a receiver
//! that remembers `webhook-id`s sees each event exactly once.
//!
//! Nothing waits on a receiver but its own attempts: each has a time limit, a node sends at most
//! `concurrency` at once, and at most [`PER_RECEIVER`] of them to one URI with as many more waiting in
//! memory (the rest go back to the outbox for a moment), so a slow receiver cannot take every slot.
//! Memory holds the attempts in flight, never the backlog, however long it grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::WebhookSettings;
use super::event::Recorded;
use super::sign;
use crate::domain::{FileRecord, Timestamp};
use crate::meta::{Delivery, DeliveryOutcome, MetaStore, Settled};
use crate::services::imports::ssrf::{GuardedResolver, UrlProblem, check_url};
use crate::telemetry::metric;

/// Renders a file's views for an event's `data` (the HTTP layer's views: `app.rs` hands them in).
pub type RenderFile = Arc<dyn Fn(&FileRecord) -> Value + Send + Sync>;

/// Attempts sending to one URI from one node at once (and at most as many more waiting their turn).
const PER_RECEIVER: usize = 8;
/// How often an idle worker looks for due deliveries.
const POLL: Duration = Duration::from_millis(100);
/// Deliveries leased per claim.
const CLAIM_BATCH: usize = 50;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Outcomes recorded per transaction, at most.
const SETTLE_BATCH: usize = 500;
/// How soon a delivery put back because its receiver was busy is due again.
const BUSY_RETRY: Duration = Duration::from_millis(250);
/// How often the backlog's gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

pub struct Deliverer {
    meta: Arc<dyn MetaStore>,
    client: reqwest::Client,
    settings: WebhookSettings,
    render: RenderFile,
    /// This node's name in leases.
    owner: String,
    receivers: Receivers,
}

impl Deliverer {
    pub fn new(meta: Arc<dyn MetaStore>, settings: WebhookSettings, render: RenderFile) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(settings.policy.clone())))
            .timeout(settings.attempt_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("filegate/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
            .build()
            .expect("the webhook HTTP client configuration is valid");
        let owner = format!("webhooks-{}", crate::domain::random_alphanumeric(12));
        Self { meta, client, settings, render, owner, receivers: Receivers::default() }
    }

    /// Delivers until `stop`; attempts in flight then get a moment to end (a lease left behind is taken
    /// over once it runs out), and the outcomes known are recorded.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        tokio::spawn(backlog_gauges(this.meta.clone(), stop.clone()));
        // Outcomes are recorded by one task, many per transaction: a transaction per delivery would make
        // the database's commits, not the receivers, the limit (on SQLite, every commit is an fsync).
        let (outcomes, settling) = mpsc::channel(this.settings.concurrency * 4);
        let settler = tokio::spawn(settle_in_batches(this.meta.clone(), this.owner.clone(), settling));
        let mut in_flight = JoinSet::new();
        // Checked on every round: with a backlog, claims never come back empty and the wait below is skipped.
        while !stop.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let free = this.settings.concurrency.saturating_sub(in_flight.len());
            let claimed = if free == 0 { Ok(Vec::new()) } else { this.claim(free.min(CLAIM_BATCH)).await };
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    for delivery in batch {
                        let (this, outcomes) = (this.clone(), outcomes.clone());
                        in_flight.spawn(async move { this.attempt(delivery, outcomes).await });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(POLL) => {}
                Some(_) = in_flight.join_next(), if free == 0 => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while in_flight.join_next().await.is_some() {} })
            .await;
        in_flight.abort_all();
        drop(outcomes);
        let _ = settler.await;
    }

    async fn claim(&self, limit: usize) -> crate::meta::MetaResult<Vec<Delivery>> {
        let now = Timestamp::now();
        // The lease outlives an attempt's time limit (twice over, and a margin), so a live holder never loses
        // it mid-attempt; a dead node's deliveries are taken over soon after.
        let lease = self.settings.attempt_timeout * 2 + Duration::from_secs(5);
        let until = now.plus_seconds(lease.as_secs());
        self.meta.claim_deliveries(&self.owner, now, until, u32::try_from(limit).unwrap_or(u32::MAX)).await
    }

    async fn attempt(&self, delivery: Delivery, outcomes: mpsc::Sender<Settled>) {
        let settled = |outcome| Settled { id: delivery.id.clone(), webhook_id: delivery.webhook_id.clone(), outcome };
        let Some(turn) = self.receivers.turn(&delivery.uri, self.settings.attempt_timeout).await else {
            // Its receiver has enough in flight from this node: back to the outbox for a moment, untried.
            let later = Timestamp::from_micros(Timestamp::now().as_micros() + BUSY_RETRY.as_micros() as i64);
            let error = "receiver busy".to_owned();
            metrics::counter!(metric::WEBHOOK_DELIVERIES, "outcome" => "deferred").increment(1);
            let _ =
                outcomes.send(settled(DeliveryOutcome::Retry { next_attempt_at: later, error, failed: false })).await;
            return;
        };
        let sent = self.send(&delivery).await;
        drop(turn);
        let now = Timestamp::now();
        let outcome = match sent {
            Ok(()) => {
                let latency = (now.as_micros() - delivery.created_at.as_micros()).max(0) as f64 / 1e6;
                metrics::histogram!(metric::WEBHOOK_LATENCY).record(latency);
                DeliveryOutcome::Delivered
            }
            Err(why) => {
                let next = now.as_micros() + backoff(self.settings.first_retry, delivery.attempts).as_micros() as i64;
                let deadline = delivery.created_at.as_micros() + self.settings.retry_for.as_micros() as i64;
                if next > deadline {
                    tracing::warn!(
                        delivery = %delivery.id, uri = %delivery.uri, attempts = delivery.attempts + 1, error = %why,
                        "webhook delivery abandoned after its retry window; its webhook is disabled"
                    );
                    DeliveryOutcome::Abandoned
                } else {
                    tracing::debug!(delivery = %delivery.id, error = %why, "webhook delivery failed; will retry");
                    DeliveryOutcome::Retry { next_attempt_at: Timestamp::from_micros(next), error: why, failed: true }
                }
            }
        };
        let label = match outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Abandoned => "abandoned",
            DeliveryOutcome::Retry { .. } => "failed",
        };
        metrics::counter!(metric::WEBHOOK_DELIVERIES, "outcome" => label).increment(1);
        // Waits while the settler is behind: deliveries are not sent faster than their outcomes are kept.
        let _ = outcomes.send(settled(outcome)).await;
    }

    /// One attempt: `Ok` on a 2xx, else why not.
    async fn send(&self, delivery: &Delivery) -> Result<(), String> {
        let secrets = delivery.secrets.as_ref().ok_or("the project has no signing secret")?;
        // The URI was checked when it was given; checked again here, with the address policy of now.
        check_url(&delivery.uri, &self.settings.policy).map_err(|problem| match problem {
            UrlProblem::Forbidden(ip) => format!("{ip} is an address webhooks may not reach"),
            UrlProblem::Invalid(why) => why,
        })?;
        let body = self.body(delivery)?;
        let now = Timestamp::now();
        let timestamp = now.as_micros() / 1_000_000;
        let signature = sign::signature(&secrets.live(now), &delivery.id, timestamp, body.as_bytes());
        let response = self
            .client
            .post(&delivery.uri)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| crate::error::error_chain(&e))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered HTTP {}", status.as_u16())) }
    }

    /// The body: the event with its file's views (the same bytes on every attempt).
    fn body(&self, delivery: &Delivery) -> Result<String, String> {
        let event: Recorded =
            serde_json::from_str(&delivery.event).map_err(|e| format!("the recorded event does not parse: {e}"))?;
        let data = match (&event.file, event.batch) {
            (Some(file), _) => (self.render)(&file.record(&event.project)),
            (None, Some(batch)) => json!({ "batch": batch }),
            (None, None) => json!({}),
        };
        let mut body = json!({
            "id": delivery.id,
            "type": event.event_type,
            "timestamp": event.timestamp,
            "project": event.project,
            "data": data,
        });
        if let Some(metadata) = event.user_metadata {
            body["user_metadata"] = metadata;
        }
        Ok(body.to_string())
    }
}

/// Records outcomes as they come, as many per transaction as have arrived while the last one committed.
/// One that cannot be recorded is sent again once its lease runs out: at least once, never lost.
async fn settle_in_batches(meta: Arc<dyn MetaStore>, owner: String, mut outcomes: mpsc::Receiver<Settled>) {
    let mut batch = Vec::new();
    while outcomes.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        match meta.settle_deliveries(&owner, &batch, Timestamp::now()).await {
            Ok(recorded) if recorded < batch.len() => {
                tracing::debug!(
                    lost = batch.len() - recorded,
                    "leases of webhook deliveries ran out before their outcome"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, deliveries = batch.len(), "recording webhook deliveries failed"),
        }
        batch.clear();
    }
}

/// Each receiver's attempts from this node: at most [`PER_RECEIVER`] sending at once, and at most as many
/// more waiting for their turn in memory (a fast receiver is kept busy without a trip to the database); a
/// delivery beyond those goes back to the outbox for a moment, so one slow receiver holds few slots.
#[derive(Default)]
struct Receivers {
    slots: Mutex<HashMap<String, Arc<Slots>>>,
}

struct Slots {
    sending: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Distinct receivers remembered before idle ones are forgotten.
const REMEMBERED_RECEIVERS: usize = 1024;

impl Receivers {
    /// A turn to send to `uri`: at once, or after waiting up to `patience` behind the attempts in flight;
    /// `None` when the receiver has enough in hand already, or the wait ran out.
    async fn turn(&self, uri: &str, patience: Duration) -> Option<OwnedSemaphorePermit> {
        let slots = {
            let mut all = self.slots.lock().expect("the map is never left half-changed");
            if all.len() >= REMEMBERED_RECEIVERS {
                all.retain(|_, s| {
                    s.sending.available_permits() < PER_RECEIVER || s.waiting.load(Ordering::Relaxed) > 0
                });
            }
            let fresh =
                || Arc::new(Slots { sending: Arc::new(Semaphore::new(PER_RECEIVER)), waiting: AtomicUsize::new(0) });
            all.entry(uri.to_owned()).or_insert_with(fresh).clone()
        };
        if let Ok(permit) = slots.sending.clone().try_acquire_owned() {
            return Some(permit);
        }
        if slots.waiting.fetch_add(1, Ordering::AcqRel) >= PER_RECEIVER {
            slots.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = tokio::time::timeout(patience, slots.sending.clone().acquire_owned()).await;
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.ok().and_then(Result::ok)
    }
}

/// The wait after `failed` failed attempts: `first` doubled each time, at most an hour, ±25 % jitter (so
/// that deliveries that failed together do not all come back together).
fn backoff(first: Duration, failed: u32) -> Duration {
    let doubled = first.saturating_mul(2u32.saturating_pow(failed.min(30)));
    doubled.min(MAX_BACKOFF).mul_f64(rand::thread_rng().gen_range(0.75..1.25))
}

/// Keeps the backlog gauges of `/metrics` current (one node's view of the shared outbox).
async fn backlog_gauges(meta: Arc<dyn MetaStore>, stop: CancellationToken) {
    loop {
        match meta.delivery_backlog().await {
            Ok(backlog) => {
                let age = backlog
                    .oldest
                    .map_or(0.0, |oldest| (Timestamp::now().as_micros() - oldest.as_micros()).max(0) as f64 / 1e6);
                metrics::gauge!(metric::WEBHOOK_PENDING).set(backlog.pending as f64);
                metrics::gauge!(metric::WEBHOOK_OLDEST).set(age);
            }
            Err(e) => tracing::debug!(error = %e, "reading the webhook backlog failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_growing_at_an_hour() {
        let first = Duration::from_secs(5);
        for (failed, nominal) in [(0u32, 5.0), (1, 10.0), (2, 20.0), (5, 160.0)] {
            let wait = backoff(first, failed).as_secs_f64();
            assert!((nominal * 0.75..nominal * 1.25).contains(&wait), "{failed}: {wait}");
        }
        assert!(backoff(first, 40).as_secs_f64() <= 3600.0 * 1.25);
        assert!(backoff(first, 40).as_secs_f64() >= 3600.0 * 0.75);
    }

    #[tokio::test]
    async fn one_receiver_gets_at_most_its_share_of_slots() {
        let receivers = Receivers::default();
        let patience = Duration::from_secs(5);
        let mut sending = Vec::new();
        for _ in 0..PER_RECEIVER {
            sending.push(receivers.turn("https://a/", patience).await.unwrap());
        }
        let receivers = Arc::new(receivers);
        let waiting: Vec<_> = (0..PER_RECEIVER)
            .map(|_| {
                let receivers = receivers.clone();
                tokio::spawn(async move { receivers.turn("https://a/", Duration::from_secs(5)).await.is_some() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(receivers.turn("https://a/", patience).await.is_none(), "beyond those waiting: back to the outbox");
        assert!(receivers.turn("https://b/", patience).await.is_some(), "another receiver is not held up");
        drop(sending);
        for waiter in waiting {
            assert!(waiter.await.unwrap(), "the waiting ones get their turns as the sending ones end");
        }
        let _busy = receivers.turn("https://c/", patience).await.unwrap();
        assert!(receivers.turn("https://a/", Duration::from_millis(10)).await.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_with_a_backlog_still_stops_when_asked() {
        use crate::domain::ProjectId;
        use crate::meta::{NewDelivery, SigningSecrets, Webhook, WebhookState};

        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(crate::meta::sql::SqlMeta::open_sqlite(&dir.path().join("meta.db"), 8).await.unwrap());
        let project = ProjectId::parse("alpha").unwrap();
        let now = Timestamp::now();
        meta.ensure_project(&project).await.unwrap();
        // Port 9 on loopback: nothing listens, every attempt fails at once and the backlog never empties.
        let webhook = Webhook {
            id: "w".into(),
            project: project.clone(),
            uri: "http://127.0.0.1:9/".into(),
            events: vec!["file.active".into()],
            state: WebhookState::Enabled,
            secrets: SigningSecrets { current: super::sign::new_secret(), previous: None },
            created_at: now,
            updated_at: now,
        };
        meta.insert_webhook(&webhook).await.unwrap();
        let deliveries: Vec<NewDelivery> = (0..5000)
            .map(|n| NewDelivery {
                id: format!("msg_{n}"),
                project: project.clone(),
                webhook_id: Some("w".into()),
                uri: None,
                event_type: "file.active".into(),
                event: "{}".into(),
                created_at: now,
            })
            .collect();
        let mut tx = meta.write().await.unwrap();
        tx.queue_deliveries(&deliveries).await.unwrap();
        tx.commit().await.unwrap();
        let settings = WebhookSettings {
            allow_http: true,
            policy: Arc::new(crate::services::imports::AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()])),
            retry_for: Duration::from_secs(3600),
            first_retry: Duration::from_millis(1),
            attempt_timeout: Duration::from_secs(2),
            concurrency: 16,
        };
        let render: RenderFile = Arc::new(|_| json!({}));
        let stop = CancellationToken::new();
        let running = tokio::spawn(Deliverer::new(meta.clone(), settings, render).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        // In-flight attempts get 2 s to end; nothing else may hold the stop up.
        tokio::time::timeout(Duration::from_secs(4), running).await.expect("it stopped").unwrap();
        assert_eq!(meta.delivery_backlog().await.unwrap().pending, 5000, "failed attempts keep their deliveries");
    }
}
