//! Records of webhooks (`services::webhooks`): the registered webhooks of each project, the secret that
//! signs a project's per-request webhooks, and the outbox of deliveries.
//!
//! Deliveries are queued inside the write transaction of the change they report ([`super::WriteTx`]'s
//! `webhook_subscribers`, `request_webhooks` and `queue_deliveries`); everything else here is a single
//! statement or a short transaction of its own. Claims follow the import queue's contract: racing claimers
//! never get the same delivery, and a lease's holder alone may record its outcome.

use async_trait::async_trait;

use super::{Lease, MetaResult};
use crate::domain::{ProjectId, Timestamp};

/// A registered webhook's state, in the Gemini API's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    Enabled,
    Disabled,
    /// Set by filegate when a delivery failed for the whole retry window.
    DisabledDueToFailedDeliveries,
}

impl WebhookState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::DisabledDueToFailedDeliveries => "disabled_due_to_failed_deliveries",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Disabled, Self::DisabledDueToFailedDeliveries]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// Signing secrets: the current one, and those it replaced that still sign beside it, each until its own
/// end (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecrets {
    pub current: String,
    pub previous: Vec<(String, Timestamp)>,
}

impl SigningSecrets {
    /// A first secret, which replaced none.
    pub fn new(current: String) -> Self {
        Self { current, previous: Vec::new() }
    }

    /// The secrets that sign a message sent at `now`.
    pub fn live(&self, now: Timestamp) -> Vec<&str> {
        let previous = self.previous.iter().filter(|(_, until)| *until > now).map(|(secret, _)| secret.as_str());
        std::iter::once(self.current.as_str()).chain(previous).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// filegate's id: callers name it `webhooks/{id}`.
    pub id: String,
    pub project: ProjectId,
    pub uri: String,
    pub events: Vec<String>,
    pub state: WebhookState,
    pub secrets: SigningSecrets,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A delivery to queue: one event for one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The `webhook-id` every attempt carries.
    pub id: String,
    pub project: ProjectId,
    /// A registered webhook, or `None` for a per-request one at `uri`.
    pub webhook_id: Option<String>,
    pub uri: Option<String>,
    pub event_type: String,
    /// The event as `services::webhooks::event` records it.
    pub event: String,
    pub created_at: Timestamp,
}

/// A claimed delivery, with what sending it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    /// The claim its worker holds it by; it settles it with this.
    pub lease: Lease,
    pub project: ProjectId,
    pub webhook_id: Option<String>,
    /// Where it goes now (a registered webhook's URI as it is now, after any `PATCH`).
    pub uri: String,
    pub event_type: String,
    pub event: String,
    pub created_at: Timestamp,
    /// Failed attempts so far.
    pub attempts: u32,
    /// `None` when nothing can sign it (a per-request webhook of a project whose secret is gone).
    pub secrets: Option<SigningSecrets>,
}

/// What happened to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx: the delivery is done.
    Delivered,
    /// Try again at `next_attempt_at`; `error` says why, `failed` whether it counts as a failed attempt (a
    /// delivery put back untried because its receiver is busy does not).
    Retry { next_attempt_at: Timestamp, error: String, failed: bool },
    /// Retries ran out: the delivery is dropped and its webhook becomes `disabled_due_to_failed_deliveries`
    /// (its other pending deliveries with it).
    Abandoned,
}

/// A leased delivery's outcome, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The lease it was claimed by: only its holder settles it.
    pub lease: Lease,
    pub webhook_id: Option<String>,
    pub outcome: DeliveryOutcome,
}

/// The outbox's size, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryBacklog {
    pub pending: u64,
    pub oldest: Option<Timestamp>,
}

/// A project's enabled webhook and the event types it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub webhook_id: String,
    pub events: Vec<String>,
}

#[async_trait]
pub trait WebhookRecords: Send + Sync {
    /// Registers a webhook unless its project has `max_per_project` already (`false` then): counted and
    /// inserted under the project's lock, so racing registrations never pass the limit together.
    async fn insert_webhook(&self, webhook: &Webhook, max_per_project: u64) -> MetaResult<bool>;
    /// A project's webhook by id; another project's is `None`.
    async fn webhook(&self, project: &ProjectId, id: &str) -> MetaResult<Option<Webhook>>;
    /// A project's webhooks in id order after `after`, `limit` at most.
    async fn webhooks(&self, project: &ProjectId, after: Option<&str>, limit: u32) -> MetaResult<Vec<Webhook>>;
    /// Writes a webhook's URI, events, state and secrets; `false` when it is gone. A webhook that is not
    /// enabled drops its pending deliveries: it asked to hear nothing more (or could not be reached for the
    /// whole retry window).
    async fn update_webhook(&self, webhook: &Webhook) -> MetaResult<bool>;
    /// `false` when the project has no such webhook. Its pending deliveries go with it.
    async fn delete_webhook(&self, project: &ProjectId, id: &str) -> MetaResult<bool>;

    async fn project_signing_secrets(&self, project: &ProjectId) -> MetaResult<Option<SigningSecrets>>;
    async fn put_project_signing_secrets(
        &self,
        project: &ProjectId,
        secrets: &SigningSecrets,
        now: Timestamp,
    ) -> MetaResult<()>;

    /// Projects with deliveries due at `now` (unleased, or their lease run out), in project order after
    /// `after`, `limit` at most. Costs a step per project with pending deliveries, whatever their number.
    async fn projects_with_due_deliveries(
        &self,
        now: Timestamp,
        after: Option<&ProjectId>,
        limit: u32,
    ) -> MetaResult<Vec<ProjectId>>;
    /// Leases to `owner` until `lease_until` up to `count` due deliveries of each project `wanted` names,
    /// each project's most overdue first. Racing callers never get the same delivery.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        wanted: &[(ProjectId, u32)],
    ) -> MetaResult<Vec<Delivery>>;
    /// Records outcomes, in one transaction, of the deliveries whose lease still holds (the others are
    /// skipped: another worker took them over); returns how many were recorded.
    async fn settle_deliveries(&self, settled: &[Settled], now: Timestamp) -> MetaResult<usize>;
    async fn delivery_backlog(&self) -> MetaResult<DeliveryBacklog>;
}
