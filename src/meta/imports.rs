//! Import tasks on the work queue (`meta::queue`), outside a write transaction.

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::{ImportTask, Lease, MetaResult};

/// Import tasks on the work queue, outside a write transaction: renewed and released as every leased work
/// is ([`crate::meta::WorkQueue`]).
#[async_trait]
pub trait ImportRecords: Send + Sync {
    /// Leases the most overdue claimable task (unfinished, due, unleased or its lease run out, its file
    /// unexpired) to `owner` until `lease_until`, counts an attempt and marks its file `processing`; the task
    /// carries its [`Lease`].
    /// Racing callers never get the same task.
    async fn claim_import(&self, owner: &str, now: Timestamp, lease_until: Timestamp)
    -> MetaResult<Option<ImportTask>>;
    /// Records how many bytes of an import `owner` (its lease's holder) has received so far, ahead of what it
    /// committed: the import's progress shows the larger of the two. `false` when the lease no longer holds.
    async fn note_import_fetched(&self, lease: &Lease, fetched: u64) -> MetaResult<bool>;
}
