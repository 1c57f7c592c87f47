//! The metadata port: projects, keys, files, upload sessions and the blob garbage queue.
//!
//! Services see only [`MetaStore`]; SQLite implements it today, and the trait is shaped so PostgreSQL can
//! join without touching a service: every multi-row change is one method (one transaction), and every
//! check that must not race (quota, name uniqueness, the chunk offset) happens inside that transaction.

mod sqlite;

use async_trait::async_trait;

pub use sqlite::SqliteMeta;

use crate::domain::{FileId, FileRecord, ProjectId, Timestamp};
use crate::error::Result;

/// Where a page of the file list ends: `(createTime, id)` of its last file, listing newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: Timestamp,
    pub id: FileId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Final,
    Cancelled,
}

impl SessionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Final => "final",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "final" => Some(Self::Final),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A session to open together with its file row (which starts in state `uploading`).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub declared_size: Option<u64>,
    pub hasher_state: Vec<u8>,
    pub staging_key: String,
    pub expires_at: Timestamp,
}

/// An upload session with what the upload path needs of its file.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub token_hash: String,
    pub project: ProjectId,
    pub file_id: FileId,
    pub declared_size: Option<u64>,
    pub received_bytes: u64,
    pub status: SessionStatus,
    pub hasher_state: Vec<u8>,
    pub staging_key: String,
    /// The file's blob key; `None` once the file row is gone (cancelled, deleted or expired).
    pub blob_key: Option<String>,
    pub expires_at: Timestamp,
}

/// A committed chunk and the running hasher state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub offset: u64,
    pub length: u64,
    pub hasher_state: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbageKind {
    Object,
    Staging,
}

/// A blob whose row is gone and whose bytes are still to be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    pub key: String,
    pub kind: GarbageKind,
}

/// What one expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    pub files: u64,
    pub sessions: u64,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    // --- projects and keys -------------------------------------------------------------------------
    async fn ensure_project(&self, project: &ProjectId) -> Result<()>;
    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> Result<()>;
    async fn project_for_key(&self, key_hash: &str) -> Result<Option<ProjectId>>;
    async fn count_api_keys(&self) -> Result<u64>;
    /// Cheap round trip for the health check.
    async fn ping(&self) -> Result<()>;
    /// Closes connections; called once at shutdown.
    async fn close(&self);

    // --- files --------------------------------------------------------------------------------------
    /// The row as stored, whatever its state or expiry; callers decide what is visible.
    async fn get_file(&self, project: &ProjectId, id: &FileId) -> Result<Option<FileRecord>>;
    /// Visible, unexpired files, newest first, strictly after `after`.
    async fn list_files(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<FileRecord>>;
    /// Removes a visible, unexpired file and queues its blob (and any staging bytes) for deletion, in one
    /// transaction. `None` when there was no such file.
    async fn delete_file(&self, project: &ProjectId, id: &FileId, now: Timestamp) -> Result<Option<FileRecord>>;
    /// Bytes the project's unexpired files count against its quota, and the quota itself.
    async fn quota_usage(&self, project: &ProjectId, now: Timestamp, default_quota: u64) -> Result<(u64, u64)>;

    // --- uploads ------------------------------------------------------------------------------------
    /// Inserts the file (state `uploading`) and its session if the name is free (else `AlreadyExists`)
    /// and the project's quota can hold `file.charged_bytes` (else `QuotaExceeded`).
    async fn create_upload(&self, file: &FileRecord, session: &NewSession, default_quota: u64) -> Result<()>;
    async fn get_upload(&self, token_hash: &str) -> Result<Option<UploadSession>>;
    /// The committed chunk that starts at `offset`, and the hasher state before it (the state after the
    /// chunk that ends at `offset`; `None` for offset 0, meaning the empty state).
    async fn chunk_at(&self, token_hash: &str, offset: u64) -> Result<Option<(Option<Vec<u8>>, ChunkRecord)>>;
    /// Records a chunk and advances the session to `chunk.offset + chunk.length` if the session is active
    /// and still at `chunk.offset`. `false` when another request committed first.
    async fn commit_chunk(&self, token_hash: &str, chunk: &ChunkRecord, now: Timestamp) -> Result<bool>;
    /// Marks the session final and its file ready with its exact size and digest; returns the file.
    async fn finalize_upload(
        &self,
        token_hash: &str,
        size: u64,
        sha256: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<FileRecord>>;
    /// Marks an active session cancelled, removes its file row (releasing the quota at once) and queues
    /// the staged bytes for deletion. `false` when the session was not active.
    async fn cancel_upload(&self, token_hash: &str, now: Timestamp) -> Result<bool>;

    // --- janitor ------------------------------------------------------------------------------------
    /// Removes expired files and sessions, queueing their bytes for deletion.
    async fn expire(&self, now: Timestamp) -> Result<ExpiryReport>;
    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>>;
    async fn garbage_done(&self, key: &str) -> Result<()>;
    /// Staging keys an active session or import still writes to.
    async fn live_staging_keys(&self) -> Result<Vec<String>>;
    /// Blob keys of every file row.
    async fn live_blob_keys(&self) -> Result<Vec<String>>;
}
