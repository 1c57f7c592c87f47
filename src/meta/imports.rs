//! The import queue's leases, outside a write transaction.

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::{ImportTask, MetaResult};

/// The import queue's leases, outside a write transaction.
#[async_trait]
pub trait ImportRecords: Send + Sync {
    /// Leases the most overdue claimable task (unfinished, due, unleased or its lease run out, its file
    /// unexpired) to `owner` until `lease_until`, counts an attempt and marks its file `processing`.
    /// Racing callers never get the same task.
    async fn claim_import(&self, owner: &str, now: Timestamp, lease_until: Timestamp)
    -> MetaResult<Option<ImportTask>>;
    /// Extends a lease `owner` still holds; `false` when it lost it (run out and taken, or the file is gone).
    async fn renew_import_lease(&self, blob_key: &str, owner: &str, lease_until: Timestamp) -> MetaResult<bool>;
    /// Records how many bytes of an import `owner` (its lease's holder) has received so far, ahead of what it
    /// committed: the import's progress shows the larger of the two. `false` when it does not hold the lease.
    async fn note_import_fetched(&self, blob_key: &str, owner: &str, fetched: u64) -> MetaResult<bool>;
    /// Gives a held lease up until `next_attempt_at`, recording why; `false` when it was not held.
    async fn release_import(
        &self,
        blob_key: &str,
        owner: &str,
        next_attempt_at: Timestamp,
        why: &str,
        now: Timestamp,
    ) -> MetaResult<bool>;
}
