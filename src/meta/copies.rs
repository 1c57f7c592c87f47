//! Copies of files made for a model upstream (a staged `gs://` object, a Google file).

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::{CopyTarget, MetaResult, UpstreamCopy};

/// Copies of files made for a model upstream (a staged `gs://` object, a Google file).
#[async_trait]
pub trait CopyRecords: Send + Sync {
    /// The copy of a file generation at `target`, if one was recorded (expired or not).
    async fn upstream_copy(&self, blob_key: &str, target: CopyTarget) -> MetaResult<Option<UpstreamCopy>>;
    /// Records a copy, unless one is recorded already for its blob key and target (another request or node
    /// made it first): returns the copy that is recorded now, so racing callers all use the same one.
    async fn put_upstream_copy(&self, copy: &UpstreamCopy) -> MetaResult<UpstreamCopy>;
    /// Copies to delete: expired at or before `now`, or whose file row is gone.
    async fn stale_upstream_copies(&self, now: Timestamp, limit: u32) -> MetaResult<Vec<UpstreamCopy>>;
    async fn delete_upstream_copy(&self, blob_key: &str, target: CopyTarget) -> MetaResult<()>;
}
