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
//! Nothing waits on a receiver but its own attempts, and no project on another's: each attempt has a time
//! limit; a node sends at most `concurrency` at once; a project holds at most a quarter of them ([`Shares`]),
//! and its deliveries are claimed in turn with every other project's (round robin over the projects with
//! due deliveries, each project's oldest first), never behind another project's backlog; and one
//! receiver host of a project gets at most [`PER_RECEIVER`] attempts at once with as many more waiting in
//! memory (the rest go back to the outbox for a moment). So twenty receivers that never answer, on twenty
//! paths or twenty hosts, hold up their own project's deliveries and nobody else's. Memory holds the
//! attempts in flight, never the backlog, however long it grows.

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
use super::sign;
use crate::domain::{FileRecord, ProjectId, Timestamp};
use crate::meta::{Delivery, DeliveryOutcome, MetaStore, Settled};
use crate::services::egress::{GuardedResolver, UrlProblem, check_url};
use crate::services::outbox::Recorded;
use crate::telemetry::metric;

/// Renders a file's views for an event's `data` (the HTTP layer's views: `app.rs` hands them in).
pub type RenderFile = Arc<dyn Fn(&FileRecord) -> Value + Send + Sync>;

/// Attempts sending to one receiver host of a project from one node at once (and at most as many more
/// waiting their turn).
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
    shares: Shares,
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
        let owner = crate::services::lease::holder("webhooks");
        let shares = Shares::new(settings.concurrency);
        Self { meta, client, settings, render, owner, shares }
    }

    /// Delivers until `stop`; attempts in flight then get a moment to end (a lease left behind is taken
    /// over once it runs out), and the outcomes known are recorded.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        tokio::spawn(backlog_gauges(this.meta.clone(), stop.clone()));
        // Outcomes are recorded by one task, many per transaction: a transaction per delivery would make
        // the database's commits, not the receivers, the limit (on SQLite, every commit is an fsync).
        let (outcomes, settling) = mpsc::channel(this.settings.concurrency * 4);
        let settler = tokio::spawn(settle_in_batches(this.meta.clone(), settling));
        let mut in_flight = JoinSet::new();
        // The last project whose deliveries were claimed: the next round starts after it.
        let mut cursor = None;
        // Checked on every round: with a backlog, claims never come back empty and the wait below is skipped.
        while !stop.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let free = this.settings.concurrency.saturating_sub(in_flight.len());
            let claimed = if free == 0 { Ok(Vec::new()) } else { this.claim(free.min(CLAIM_BATCH), &mut cursor).await };
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    for delivery in batch {
                        let held = this.shares.hold(&delivery.project);
                        let (this, outcomes) = (this.clone(), outcomes.clone());
                        in_flight.spawn(async move { this.attempt(delivery, held, outcomes).await });
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

    /// Leases up to `limit` due deliveries, the projects with due deliveries taking turns from the one after
    /// `cursor` (which moves on to the last project served), each up to the room its share has left.
    async fn claim(&self, limit: usize, cursor: &mut Option<ProjectId>) -> crate::meta::MetaResult<Vec<Delivery>> {
        let now = Timestamp::now();
        // Projects at their share are listed too (and skipped): ask for enough to fill `limit` without them.
        let asked = u32::try_from(limit + self.shares.projects_full()).unwrap_or(u32::MAX);
        let mut due = self.meta.projects_with_due_deliveries(now, cursor.as_ref(), asked).await?;
        if due.len() < asked as usize && cursor.is_some() {
            // Around again, from the first project up to the cursor.
            let from_start = self.meta.projects_with_due_deliveries(now, None, asked - due.len() as u32).await?;
            due.extend(from_start.into_iter().filter(|p| Some(p) <= cursor.as_ref()));
        }
        let mut wanted = Vec::new();
        let mut left = limit;
        for project in due {
            let room = self.shares.room(&project).min(left);
            if room == 0 {
                continue;
            }
            left -= room;
            *cursor = Some(project.clone());
            wanted.push((project, u32::try_from(room).unwrap_or(u32::MAX)));
            if left == 0 {
                break;
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // The lease outlives an attempt's time limit (twice over, and a margin), so a live holder never loses
        // it mid-attempt; a dead node's deliveries are taken over soon after.
        let lease = self.settings.attempt_timeout * 2 + Duration::from_secs(5);
        let until = now.plus_seconds(lease.as_secs());
        self.meta.claim_deliveries(&self.owner, now, until, &wanted).await
    }

    /// Sends one delivery (`held`: its place in its project's share, given up when it ends) and hands its
    /// outcome to the settler.
    async fn attempt(&self, delivery: Delivery, held: Held, outcomes: mpsc::Sender<Settled>) {
        let settled =
            |outcome| Settled { lease: delivery.lease.clone(), webhook_id: delivery.webhook_id.clone(), outcome };
        let receiver = format!("{} {}", delivery.project, receiver_host(&delivery.uri));
        let Some(turn) = self.shares.receivers.turn(&receiver, self.settings.attempt_timeout).await else {
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
        drop(held);
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
                        delivery = %delivery.id, receiver = %receiver_shown(&delivery.uri),
                        attempts = delivery.attempts + 1, error = %why,
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
            // Without the URL: its query may carry the receiver's own token, and this text is logged and kept.
            .map_err(|e| crate::error::error_chain(&e.without_url()))?;
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

/// The host a receiver's attempts are counted against: its origin (scheme, host, port). Twenty paths of
/// one host are one receiver; a slow host is one receiver however its URIs differ.
fn receiver_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => uri.to_owned(),
    }
}

/// A receiver as logs name it: its origin and path, never its query (which may carry a token of the
/// receiver's) nor credentials.
fn receiver_shown(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => format!("{}{}", url.origin().ascii_serialization(), url.path()),
        Err(_) => "(an unparsable URI)".into(),
    }
}

/// Records outcomes as they come, as many per transaction as have arrived while the last one committed.
/// One that cannot be recorded is sent again once its lease runs out: at least once, never lost.
async fn settle_in_batches(meta: Arc<dyn MetaStore>, mut outcomes: mpsc::Receiver<Settled>) {
    let mut batch = Vec::new();
    while outcomes.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        match meta.settle_deliveries(&batch, Timestamp::now()).await {
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

/// How a node's delivery slots are shared between projects: a project holds at most `per_project` of them
/// at once (a quarter of the node's `concurrency`, at least one), so three projects whose receivers never
/// answer still leave a quarter of the slots to everyone else.
struct Shares {
    per_project: usize,
    /// Deliveries each project has in hand on this node (sending, or waiting for its receiver's turn).
    held: Arc<Mutex<HashMap<ProjectId, usize>>>,
    receivers: Receivers,
}

/// A project's place in its share, given back when dropped.
struct Held {
    held: Arc<Mutex<HashMap<ProjectId, usize>>>,
    project: ProjectId,
}

impl Shares {
    fn new(concurrency: usize) -> Self {
        Self { per_project: (concurrency / 4).max(1), held: Arc::default(), receivers: Receivers::default() }
    }

    /// Places `project` has left in its share.
    fn room(&self, project: &ProjectId) -> usize {
        let held = self.held.lock().expect("the map is never left half-changed");
        self.per_project.saturating_sub(held.get(project).copied().unwrap_or(0))
    }

    /// Projects with no room left.
    fn projects_full(&self) -> usize {
        let held = self.held.lock().expect("the map is never left half-changed");
        held.values().filter(|n| **n >= self.per_project).count()
    }

    fn hold(&self, project: &ProjectId) -> Held {
        *self.held.lock().expect("the map is never left half-changed").entry(project.clone()).or_default() += 1;
        Held { held: self.held.clone(), project: project.clone() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("the map is never left half-changed");
        if let Some(n) = held.get_mut(&self.project) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.project);
            }
        }
    }
}

/// Each receiver's attempts from this node (a receiver is a project's host: [`receiver_host`]): at most
/// [`PER_RECEIVER`] sending at once, and at most as many more waiting for their turn in memory (a fast
/// receiver is kept busy without a trip to the database); a delivery beyond those goes back to the outbox
/// for a moment, so one slow receiver holds few slots.
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

    /// A receiver that accepts connections and never answers; the connections are held open.
    async fn silent_receiver() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        addr
    }

    /// A receiver that answers every request 200 and sends the time each body arrived down `arrived`.
    async fn answering_receiver(arrived: mpsc::UnboundedSender<std::time::Instant>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let arrived = arrived.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        // The body is `{…}`: its closing brace ends a request of this test.
                        if request.ends_with(b"}") {
                            let _ = arrived.send(std::time::Instant::now());
                            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                            request.clear();
                        }
                    }
                });
            }
        });
        addr
    }

    fn registered(project: &ProjectId, id: &str, uri: String, now: Timestamp) -> crate::meta::Webhook {
        crate::meta::Webhook {
            id: id.into(),
            project: project.clone(),
            uri,
            events: vec!["file.active".into()],
            state: crate::meta::WebhookState::Enabled,
            secrets: crate::meta::SigningSecrets::new(super::sign::new_secret()),
            created_at: now,
            updated_at: now,
        }
    }

    fn queued(project: &ProjectId, webhook: &str, n: usize, now: Timestamp) -> crate::meta::NewDelivery {
        crate::meta::NewDelivery {
            id: format!("msg_{project}_{n}"),
            project: project.clone(),
            webhook_id: Some(webhook.into()),
            uri: None,
            event_type: "webhook.ping".into(),
            event: crate::services::outbox::Recorded::new(super::super::EventType::Ping, project, now)
                .to_json()
                .unwrap(),
            created_at: now,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_project_whose_receivers_never_answer_does_not_delay_another_project() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(crate::meta::sql::SqlMeta::open_sqlite(&dir.path().join("meta.db"), 8, true).await.unwrap());
        let (noisy, quiet) = (ProjectId::parse("noisy").unwrap(), ProjectId::parse("quiet").unwrap());
        let now = Timestamp::now();
        // The noisy project: 20 webhooks on 20 paths of one host that never answers, 400 deliveries.
        let silent = silent_receiver().await;
        let mut backlog = Vec::new();
        for w in 0..20 {
            let id = format!("n{w}");
            assert!(
                meta.insert_webhook(&registered(&noisy, &id, format!("http://{silent}/p{w}"), now), 20).await.unwrap()
            );
            backlog.extend((0..20).map(|n| queued(&noisy, &id, w * 20 + n, now)));
        }
        let mut tx = meta.write().await.unwrap();
        tx.queue_deliveries(&backlog).await.unwrap();
        tx.commit().await.unwrap();
        let (arrived, mut arrivals) = mpsc::unbounded_channel();
        let answering = answering_receiver(arrived).await;
        assert!(
            meta.insert_webhook(&registered(&quiet, "q", format!("http://{answering}/hook"), now), 20).await.unwrap()
        );

        let settings = WebhookSettings {
            allow_http: true,
            policy: Arc::new(crate::services::imports::AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()])),
            retry_for: Duration::from_secs(3600),
            first_retry: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 64,
        };
        let stop = CancellationToken::new();
        let render: RenderFile = Arc::new(|_| json!({}));
        let running = tokio::spawn(Deliverer::new(meta.clone(), settings, render).run(stop.clone()));
        // The noisy project's attempts take their slots and hang there.
        tokio::time::sleep(Duration::from_millis(700)).await;

        for n in 0..3 {
            let asked = std::time::Instant::now();
            let mut tx = meta.write().await.unwrap();
            tx.queue_deliveries(&[queued(&quiet, "q", n, Timestamp::now())]).await.unwrap();
            tx.commit().await.unwrap();
            let delivered = tokio::time::timeout(Duration::from_secs(30), arrivals.recv()).await.unwrap().unwrap();
            let waited = delivered - asked;
            // Before the shares, it waited for the noisy project's hanging attempts: 10 s and more.
            assert!(waited < Duration::from_secs(3), "the quiet project's delivery {n} waited {waited:?}");
        }
        stop.cancel();
        running.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_with_a_backlog_still_stops_when_asked() {
        use crate::domain::ProjectId;
        use crate::meta::{NewDelivery, SigningSecrets, Webhook, WebhookState};

        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(crate::meta::sql::SqlMeta::open_sqlite(&dir.path().join("meta.db"), 8, true).await.unwrap());
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
            secrets: SigningSecrets::new(super::sign::new_secret()),
            created_at: now,
            updated_at: now,
        };
        assert!(meta.insert_webhook(&webhook, 20).await.unwrap());
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
