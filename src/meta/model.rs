//! Records of the model surfaces: context caches and batch jobs made through filegate. The upstream holds
//! the cache or runs the job; filegate records which project owns it (so that another project's name
//! answers like a missing one before any upstream call) and what it needs to answer for it.

use async_trait::async_trait;

use super::{CopyTarget, MetaResult};
use crate::domain::{FileId, ProjectId, Timestamp};

/// A context cache made through filegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedContent {
    /// filegate's id: callers name the cache `cachedContents/{id}`.
    pub id: String,
    pub project: ProjectId,
    /// The upstream's name (`cachedContents/…`, `projects/…/locations/…/cachedContents/…`).
    pub upstream_name: String,
    /// The model as the caller named it, as the cache's views show it.
    pub model: String,
    /// The upstream's view of the cache as last seen (JSON), with filegate's names in it.
    pub view: String,
    /// The upstream copies of files it was made from, held until it expires.
    pub copies: Vec<(String, CopyTarget)>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A batch job submitted through filegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// filegate's id: callers name the job `batches/{id}`.
    pub id: String,
    pub project: ProjectId,
    /// The upstream's name (`batches/…`, `projects/…/locations/…/batchPredictionJobs/…`).
    pub upstream_name: String,
    /// The model as the caller named it.
    pub model: String,
    pub display_name: Option<String>,
    /// In the Gemini API's spelling (`BATCH_STATE_RUNNING`), whichever upstream runs the job.
    pub state: String,
    /// The filegate file of requests it was made from (none for inline requests).
    pub input_file: Option<FileId>,
    /// The filegate file its results became, once collected.
    pub output_file: Option<FileId>,
    /// The upstream's error (a google.rpc.Status as JSON), for a failed job.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub end_time: Option<Timestamp>,
}

/// Which batches the API has not shown an end for yet, in the service's words: in none of the `ended`
/// states, nor in `succeeded` with their results collected.
#[derive(Debug, Clone, Copy)]
pub struct Unfinished<'a> {
    pub ended: &'a [&'a str],
    pub succeeded: &'a str,
}

/// Where a page of unfinished batches ends: `(created_at, id)` of its last batch.
pub type BatchCursor = (Timestamp, String);

#[async_trait]
pub trait ModelRecords: Send + Sync {
    /// Keeps these copies (blob key, target) from the sweeper until at least `until`, whatever their file does.
    async fn hold_upstream_copies(&self, copies: &[(String, CopyTarget)], until: Timestamp) -> MetaResult<()>;

    async fn put_cached_content(&self, cache: &CachedContent) -> MetaResult<()>;
    /// A project's cache by id, expired or not; another project's is `None`.
    async fn cached_content(&self, project: &ProjectId, id: &str) -> MetaResult<Option<CachedContent>>;
    /// A project's caches unexpired at `now`, in id order after `after`, `limit` at most.
    async fn cached_contents(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> MetaResult<Vec<CachedContent>>;
    /// Records a cache's new view and expiry; `false` when the project has no such cache.
    async fn update_cached_content(
        &self,
        project: &ProjectId,
        id: &str,
        view: &str,
        expires_at: Timestamp,
    ) -> MetaResult<bool>;
    /// `false` when the project has no such cache.
    async fn delete_cached_content(&self, project: &ProjectId, id: &str) -> MetaResult<bool>;
    /// Forgets caches that expired at or before `now` (the upstream drops them itself); returns how many.
    async fn delete_expired_cached_contents(&self, now: Timestamp) -> MetaResult<u64>;

    /// Records a new batch unless its project has `max_unfinished` unfinished ones already (`false` then):
    /// counted and inserted under the project's lock, so racing creates never pass the limit together.
    async fn put_batch(&self, batch: &BatchRecord, unfinished: Unfinished<'_>, max_unfinished: u64)
    -> MetaResult<bool>;
    /// How many unfinished batches a project has.
    async fn unfinished_batch_count(&self, project: &ProjectId, unfinished: Unfinished<'_>) -> MetaResult<u64>;
    /// A project's batch by id; another project's is `None`.
    async fn batch(&self, project: &ProjectId, id: &str) -> MetaResult<Option<BatchRecord>>;
    /// A project's batches in id order after `after`, `limit` at most.
    async fn batches(&self, project: &ProjectId, after: Option<&str>, limit: u32) -> MetaResult<Vec<BatchRecord>>;
    /// Unfinished batches of every project, oldest first after `after`, `limit` at most (a node's watcher
    /// walks them all, page by page, and asks the upstream about each).
    async fn unfinished_batches(
        &self,
        unfinished: Unfinished<'_>,
        after: Option<&BatchCursor>,
        limit: u32,
    ) -> MetaResult<Vec<BatchRecord>>;
    /// `false` when the project has no such batch.
    async fn delete_batch(&self, project: &ProjectId, id: &str) -> MetaResult<bool>;
}
