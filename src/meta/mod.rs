//! The metadata port: projects, keys, files, upload sessions, import tasks and the blob garbage queue.
//!
//! Services see only [`MetaStore`], the sum of one repository trait per concern. SQLite implements it
//! today; the traits are shaped so PostgreSQL can join without touching a service: every multi-row change
//! is one method (one transaction), and every check that must not race (quota, name uniqueness, the chunk
//! offset, the import lease) happens inside that transaction.

mod sqlite;

use async_trait::async_trait;

pub use sqlite::SqliteMeta;

use crate::domain::{FileError, FileId, FileRecord, ProjectId, Timestamp};
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

/// An import to enqueue together with its file row (state `pending`).
#[derive(Debug, Clone)]
pub struct NewImport {
    pub source_url: String,
    pub model: String,
    /// Lowercase hex the client expects; a mismatch fails the task with `checksum_mismatch`.
    pub expected_sha256: Option<String>,
    pub staging_key: String,
    pub hasher_state: Vec<u8>,
    /// `(Idempotency-Key, hash of the request)`.
    pub idempotency: Option<(String, String)>,
}

/// What creating an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportCreated {
    New,
    /// The Idempotency-Key was used before for the same request: this is the file it created.
    Existing(FileId),
}

/// A claimed import task: everything a worker needs to continue it.
#[derive(Debug, Clone)]
pub struct ImportTask {
    pub blob_key: String,
    pub project: ProjectId,
    pub file_id: FileId,
    pub source_url: String,
    pub expected_sha256: Option<String>,
    pub staging_key: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub received_bytes: u64,
    pub total_bytes: Option<u64>,
    pub hasher_state: Vec<u8>,
    pub validator: Option<String>,
    pub mime_type: String,
    pub created_at: Timestamp,
}

/// Durable progress of an import: bytes staged so far and what is known of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    pub received_bytes: u64,
    pub hasher_state: Vec<u8>,
    pub validator: Option<String>,
    pub total_bytes: Option<u64>,
    pub mime_type: Option<String>,
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

impl Garbage {
    pub fn object(key: &str) -> Self {
        Self { key: key.to_owned(), kind: GarbageKind::Object }
    }

    pub fn staging(key: &str) -> Self {
        Self { key: key.to_owned(), kind: GarbageKind::Staging }
    }
}

/// What one expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    pub files: u64,
    pub sessions: u64,
}

#[async_trait]
pub trait ProjectRepo: Send + Sync {
    async fn ensure_project(&self, project: &ProjectId) -> Result<()>;
    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> Result<()>;
    async fn project_for_key(&self, key_hash: &str) -> Result<Option<ProjectId>>;
    async fn count_api_keys(&self) -> Result<u64>;
    /// Cheap round trip for the health check.
    async fn ping(&self) -> Result<()>;
    /// Closes connections; called once at shutdown.
    async fn close(&self);
}

#[async_trait]
pub trait FileRepo: Send + Sync {
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
    /// Removes a visible, unexpired file (and its import task or open session) and queues its bytes for
    /// deletion, in one transaction; returns the file and what was queued. `None` when there was no such file.
    async fn delete_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<(FileRecord, Vec<Garbage>)>>;
}

#[async_trait]
pub trait UploadRepo: Send + Sync {
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
    /// the staged bytes for deletion; returns what was queued. `None` when the session was not active.
    async fn cancel_upload(&self, token_hash: &str, now: Timestamp) -> Result<Option<Vec<Garbage>>>;
}

#[async_trait]
pub trait ImportRepo: Send + Sync {
    /// Enqueues an import with its file row (state `pending`), unless its Idempotency-Key already names
    /// one (then `Existing`; `Conflict`-style `InvalidArgument` when the request differs). Refuses with
    /// `TooManyRequests` when the project has `max_active` unfinished tasks, `QuotaExceeded` when its
    /// quota is used up.
    async fn create_import(
        &self,
        file: &FileRecord,
        task: &NewImport,
        default_quota: u64,
        max_active: u64,
    ) -> Result<ImportCreated>;
    /// Leases the most overdue claimable task to `owner` until `lease_until` and counts an attempt.
    async fn claim_import(&self, owner: &str, now: Timestamp, lease_until: Timestamp) -> Result<Option<ImportTask>>;
    /// Extends a lease `owner` still holds; `false` when it lost it (expired and taken, or the file is gone).
    async fn renew_import_lease(&self, blob_key: &str, owner: &str, lease_until: Timestamp) -> Result<bool>;
    /// Records durable progress and charges the project for it (`total_bytes` when known, else the bytes
    /// received); `QuotaExceeded` when that does not fit, `false` when the lease is lost.
    async fn commit_import_progress(
        &self,
        blob_key: &str,
        owner: &str,
        progress: &ImportProgress,
        default_quota: u64,
        now: Timestamp,
    ) -> Result<bool>;
    /// Marks the file ready with its exact size, digest and type; the task is finished.
    async fn finish_import(
        &self,
        blob_key: &str,
        owner: &str,
        size: u64,
        sha256: [u8; 32],
        mime_type: &str,
        now: Timestamp,
    ) -> Result<Option<FileRecord>>;
    /// Marks the file failed with `error` (it then holds no quota); the task is finished.
    async fn fail_import(&self, blob_key: &str, owner: &str, error: &FileError, now: Timestamp) -> Result<bool>;
    /// Gives the lease up until `next_attempt_at`, recording why.
    async fn retry_import(&self, blob_key: &str, owner: &str, next_attempt_at: Timestamp, why: &str) -> Result<bool>;
}

#[async_trait]
pub trait JanitorRepo: Send + Sync {
    /// Removes expired files and sessions (and stale idempotency keys), queueing their bytes for deletion.
    async fn expire(&self, now: Timestamp) -> Result<ExpiryReport>;
    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>>;
    async fn garbage_done(&self, key: &str) -> Result<()>;
    /// Staging keys an active session or an unfinished import still writes to.
    async fn live_staging_keys(&self) -> Result<Vec<String>>;
    /// Blob keys of every file row.
    async fn live_blob_keys(&self) -> Result<Vec<String>>;
}

/// Everything the services need of the metadata store.
pub trait MetaStore: ProjectRepo + FileRepo + UploadRepo + ImportRepo + JanitorRepo + 'static {}

impl<T: ProjectRepo + FileRepo + UploadRepo + ImportRepo + JanitorRepo + 'static> MetaStore for T {}
