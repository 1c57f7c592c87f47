//! What `filegate fsck` asks of the metadata store: which of the keys found in storage a row refers to,
//! how the counters compare with the rows, and the records a crash or a bug may have left behind.
//!
//! Every read is one statement, so it is a consistent snapshot on both engines while the deployment keeps
//! running; nothing here locks a row a request waits for, except the repairs.

use async_trait::async_trait;

use super::{MetaResult, StagedBytes, UsageRepair};
use crate::domain::Timestamp;

/// Which kind of work a lease was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// The claim of a request writing an upload session (`upload_sessions.writer`).
    UploadWriter,
    /// The lease of a worker running an import (`import_tasks.lease_owner`).
    Import,
}

impl LeaseKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UploadWriter => "upload",
            Self::Import => "import",
        }
    }
}

/// A lease that ended a while ago and is still recorded: its holder (a node killed, cut off from the
/// database) never released it. Harmless to the work (an ended lease is taken over), but it says a node
/// went away mid-work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLease {
    pub kind: LeaseKind,
    pub project: String,
    pub file_id: String,
    pub owner: String,
    pub until: Timestamp,
}

/// A staging area that no session, import or queued garbage owns, and yet has part records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverParts {
    pub staging_key: String,
    pub parts: u64,
}

#[async_trait]
pub trait AuditRecords: Send + Sync {
    /// Of `keys` (objects found in the store), those a file row or the garbage queue names.
    async fn known_objects(&self, keys: &[String]) -> MetaResult<Vec<String>>;
    /// Of `staging_keys`, those of an active upload session or a running import, with their committed
    /// bytes (which name their current tail).
    async fn owned_staging(&self, staging_keys: &[String]) -> MetaResult<Vec<StagedBytes>>;
    /// Of `upload_ids` (a bucket's open multipart uploads), those a live staging area or the garbage queue
    /// records.
    async fn known_upload_ids(&self, upload_ids: &[String]) -> MetaResult<Vec<String>>;
    /// Projects whose counters differ from their rows, as a recount would set them; changes nothing.
    async fn usage_drift(&self) -> MetaResult<Vec<UsageRepair>>;
    /// Leases that ended before `cutoff` and are still recorded, at most `limit`.
    async fn stale_leases(&self, cutoff: Timestamp, limit: u32) -> MetaResult<Vec<StaleLease>>;
    /// Releases the leases [`AuditRecords::stale_leases`] lists; returns how many.
    async fn release_stale_leases(&self, cutoff: Timestamp) -> MetaResult<u64>;
    /// Part records of staging areas nobody owns, after `after` by key, at most `limit`.
    async fn leftover_parts(&self, after: Option<&str>, limit: u32) -> MetaResult<Vec<LeftoverParts>>;
    /// Deletes the part records of `staging_keys`, if still nobody owns them; returns how many went.
    async fn delete_leftover_parts(&self, staging_keys: &[String]) -> MetaResult<u64>;
    /// Garbage queued before `before` and still not deleted (the store refused it every sweep since).
    async fn old_garbage(&self, before: Timestamp) -> MetaResult<u64>;
}
