//! The work queue: leased work, with one claim, renewal, release and settlement for every kind.
//!
//! Every piece of work a node does for the whole deployment — fetching an import, delivering a webhook,
//! collecting a batch's results — is a row of its own table that carries the same lease: who holds it
//! (`lease_owner`), until when (`lease_until`), and its **fence**, a counter every claim raises. A holder
//! presents its [`Lease`] (owner and fence) to renew, release or settle, so a holder whose lease ran out and
//! was claimed again — by another node, or by another worker of its own node under the same name — can no
//! longer touch the work: its fence is older. This is pict-rs's `QueueRepo` (push, pop, heartbeat, complete)
//! with fencing; pushing is each kind's own insert, since each carries its own payload.
//!
//! Claiming is written once (`sql::queue`): each kind says which of its rows are due (the import's file not
//! expired, each project's turn for webhook deliveries) and the queue leases them, skipping rows another
//! caller is claiming (PostgreSQL `FOR UPDATE SKIP LOCKED`). Settling is the kind's own write transaction,
//! which first asks [`QueueWrites::holds`].

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::MetaResult;

/// The kinds of leased work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Import tasks, by the file's blob key.
    Imports,
    /// Webhook deliveries, by delivery id.
    Deliveries,
    /// Batches whose results are being copied into a file, by batch id.
    BatchCollections,
}

/// A claim on one piece of work: what it is, who holds it and the fence of this claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub queue: Queue,
    pub key: String,
    pub owner: String,
    pub fence: i64,
}

/// Leases on queued work, outside a write transaction. Each kind's claim of due work is its own method
/// (`ImportRecords::claim_import`, `WebhookRecords::claim_deliveries`), over the same lease.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Claims the item `key` of `queue` for `owner` until `until` if it is open and its lease (if any) ran
    /// out by `now`; `None` when another holds it or it is done.
    async fn claim_item(
        &self,
        queue: Queue,
        key: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> MetaResult<Option<Lease>>;
    /// Extends a lease still held; `false` when it is not (run out and claimed again, or the work is done
    /// or gone).
    async fn renew(&self, lease: &Lease, until: Timestamp) -> MetaResult<bool>;
    /// Gives a held lease up: the work is due again at `due`, with `why` recorded where the kind keeps a
    /// last error. `false` when the lease was not held.
    async fn release(&self, lease: &Lease, due: Timestamp, why: &str, now: Timestamp) -> MetaResult<bool>;
}

/// The lease, inside a write transaction: the settlement of a piece of work begins by asking it.
#[async_trait]
pub trait QueueWrites: Send {
    /// Whether `lease` still holds; the item's row stays locked until the transaction ends, so the lease
    /// cannot change hands before the settlement commits.
    async fn holds(&mut self, lease: &Lease) -> MetaResult<bool>;
}
