//! What the janitor, the start-up reconciliation and the operators' counters read and sweep.

use async_trait::async_trait;

use crate::domain::{ProjectId, Timestamp};
use crate::meta::{Garbage, MetaResult, ProjectReport, ProjectUsage, StoredFile, UsageRepair};

/// What the janitor, the start-up reconciliation and the operators' counters read and sweep.
#[async_trait]
pub trait UpkeepRecords: Send + Sync {
    /// `(project, blob key)` of files that expired at or before `now`, soonest expired first.
    async fn expired_files(&self, now: Timestamp, limit: u32) -> MetaResult<Vec<(ProjectId, String)>>;
    /// Deletes ended sessions (and their chunk records) that expired, Idempotency-Keys used before
    /// `idempotency_cutoff` and expired download links; returns how many sessions went.
    async fn purge(&self, now: Timestamp, idempotency_cutoff: Timestamp) -> MetaResult<u64>;
    async fn garbage(&self, limit: u32) -> MetaResult<Vec<Garbage>>;
    /// Takes these keys off the queue (their blobs are deleted), in one transaction: one commit per batch,
    /// not per blob, so that a sweep of 100 000 expirations is not 100 000 fsyncs.
    async fn garbage_done(&self, keys: &[&str]) -> MetaResult<()>;
    /// Staging keys an active session or an unfinished import still writes to.
    async fn live_staging_keys(&self) -> MetaResult<Vec<String>>;
    /// Blob keys of every file row.
    async fn live_blob_keys(&self) -> MetaResult<Vec<String>>;
    /// Every project's counters.
    async fn usage(&self) -> MetaResult<Vec<ProjectReport>>;
    /// One project's counters; `None` for a project never seen.
    async fn project_usage(&self, project: &ProjectId) -> MetaResult<Option<ProjectUsage>>;
    /// Finished files after `after` in blob-key order, `limit` at most (to walk them all).
    async fn stored_files(&self, after: Option<&str>, limit: u32) -> MetaResult<Vec<StoredFile>>;
    /// Files whose bytes are still arriving (open uploads, unfinished imports).
    async fn unfinished_files(&self) -> MetaResult<u64>;
    /// Recomputes every project's counters from its rows, in one transaction, and returns those that
    /// had drifted (none, unless a bug or a hand edit changed rows behind filegate's back).
    async fn recompute_usage(&self) -> MetaResult<Vec<UsageRepair>>;
}
