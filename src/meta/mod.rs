//! The metadata port: projects, keys, files, upload sessions, import tasks and the blob garbage queue.
//!
//! Adapters store and lock; they hold no business rule. Quotas, per-project limits, name reuse, the
//! idempotency window and what a file is charged live in the services, which compose the primitives of a
//! [`WriteTx`]. One adapter ([`sql::SqlMeta`]) serves SQLite and PostgreSQL from one set of queries.
//!
//! # The concurrency contract
//!
//! Every adapter gives these guarantees, and `meta::conformance` holds each of them to it, SQLite and
//! PostgreSQL alike, with racing callers:
//!
//! - **A write transaction is all or nothing.** [`MetaStore::write`] begins one; nothing it did is visible
//!   to anyone before [`WriteTx::commit`] returns `Ok`, and if it is dropped (an error, a cancelled request)
//!   or its commit fails, nothing of it happened and its connection never serves another caller in a
//!   half-finished state.
//! - **A project is changed by one transaction at a time.** [`WriteTx::lock_project`] locks the project's
//!   usage row until the transaction ends (PostgreSQL: `SELECT … FOR UPDATE`; SQLite: every write
//!   transaction holds the database's write lock from its start). Every transaction that adds, removes
//!   or recharges a project's files, sessions or imports calls it first, so the checks a service makes
//!   on what it read (quota, limits, a free name, an idempotency key) still hold when it writes. Locks
//!   are always taken in the order project → import task → upload session → file, so no two
//!   transactions wait for each other in a cycle.
//! - **Single-statement operations are atomic compare-and-sets**: [`UploadRecords::commit_chunk`] advances a
//!   session only from the offset the caller read; [`ImportRecords::claim_import`] hands a due task to exactly
//!   one caller (PostgreSQL: `FOR UPDATE SKIP LOCKED`); lease renewals, releases and settlements apply only
//!   while the caller's lease — owner and fence ([`Lease`]) — still holds. A racing caller sees `false` or
//!   `None`, never an error.
//! - **Reads outside a transaction** see committed data, possibly not the newest.
//! - **Errors have meanings** ([`MetaError`]): a conflict, a busy database (retry soon), an unavailable one
//!   (full, read-only, unreachable: retry later), or something else (a bug).

mod audit;
#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_audit;
#[cfg(test)]
mod conformance_queue;
#[cfg(test)]
mod conformance_webhooks;
mod copies;
mod error;
mod files;
mod imports;
mod keys;
mod model;
mod queue;
pub mod sql;
mod store;
mod tx;
mod upkeep;
mod uploads;
mod webhooks;

pub use audit::{AuditRecords, LeaseKind, LeftoverParts, StaleLease};
pub use copies::CopyRecords;
pub use error::{MetaError, MetaResult};
pub use files::FileRecords;
pub use imports::ImportRecords;
pub use keys::KeyRecords;
pub use model::{BatchCursor, BatchRecord, CachedContent, ModelRecords, Unfinished};
pub use queue::{Lease, Queue, QueueWrites, WorkQueue};
pub use store::MetaStore;
pub use tx::{FileWrites, ImportWrites, SessionWrites, WebhookWrites, WriteTx};
pub use upkeep::UpkeepRecords;
pub use uploads::UploadRecords;
pub use webhooks::{
    Delivery, DeliveryBacklog, DeliveryOutcome, NewDelivery, Settled, SigningSecrets, Subscriber, Webhook,
    WebhookRecords, WebhookState,
};

use crate::domain::{FileError, FileId, FileRecord, FileState, ProjectId, Timestamp};
use crate::domain::{Staging, StorageKey};

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

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "final" => Some(Self::Final),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A session to open beside its file row (which starts in state `uploading`).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub project: ProjectId,
    pub file_id: FileId,
    pub blob_key: String,
    pub declared_size: Option<u64>,
    pub hasher_state: Vec<u8>,
    pub staging_key: String,
    pub created_at: Timestamp,
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
    /// The key of the file generation the session uploads; unique, so it never names a later file.
    pub session_blob_key: String,
    /// The file's blob key; `None` once the file row is gone (cancelled, deleted or expired).
    pub blob_key: Option<String>,
    /// The multipart upload of a bucket store, once created.
    pub upload_id: Option<String>,
    pub expires_at: Timestamp,
}

impl UploadSession {
    pub fn staging(&self) -> Staging {
        Staging {
            key: self.staging_key.clone(),
            dest: self.session_blob_key.clone(),
            upload_id: self.upload_id.clone(),
        }
    }
}

/// A stored part of a bucket upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub index: u64,
    pub id: String,
}

/// A committed chunk and the running hasher state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub offset: u64,
    pub length: u64,
    pub hasher_state: Vec<u8>,
}

/// An import task to enqueue beside its file row (state `pending`).
#[derive(Debug, Clone)]
pub struct NewImport {
    pub blob_key: String,
    pub project: ProjectId,
    pub file_id: FileId,
    pub source_url: String,
    pub model: String,
    /// Lowercase hex the client expects; a mismatch fails the task with `checksum_mismatch`.
    pub expected_sha256: Option<String>,
    pub staging_key: String,
    pub hasher_state: Vec<u8>,
    pub created_at: Timestamp,
    /// The W3C `traceparent` of the request that created it, if traces are on.
    pub traceparent: Option<String>,
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
    /// What the file is charged against its project's quota right now.
    pub charged_bytes: u64,
    /// The multipart upload of a bucket store, once created.
    pub upload_id: Option<String>,
    pub created_at: Timestamp,
    /// The trace the task's creation belongs to, which its fetch continues.
    pub traceparent: Option<String>,
    /// The claim its worker holds it by.
    pub lease: Lease,
}

impl ImportTask {
    pub fn staging(&self) -> Staging {
        Staging { key: self.staging_key.clone(), dest: self.blob_key.clone(), upload_id: self.upload_id.clone() }
    }
}

/// Durable progress of an import: bytes staged so far and what is known of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    pub received_bytes: u64,
    pub hasher_state: Vec<u8>,
    pub validator: Option<String>,
    pub total_bytes: Option<u64>,
}

/// What an `Idempotency-Key` named when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub created_at: Timestamp,
    /// The file the request created, if its row still exists: `(id, expires_at)`.
    pub file: Option<(FileId, Timestamp)>,
}

/// A change to a file row. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileUpdate {
    pub state: Option<FileState>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub mime_type: Option<String>,
    pub charged_bytes: Option<u64>,
    pub error: Option<FileError>,
}

/// A project's counters, kept in its row by every transaction that changes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    /// The sum of its files' `charged_bytes` (reservations of open uploads included).
    pub used_bytes: u64,
    /// File rows, whatever their state (open uploads and unfinished imports included).
    pub files: u64,
    /// Upload sessions in status `active`.
    pub open_uploads: u64,
    /// Import tasks not finished.
    pub active_imports: u64,
    /// The project's own quota, if it has one (else the server's default).
    pub quota_bytes: Option<u64>,
}

/// A change to a project's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub bytes: i64,
    pub files: i64,
    pub open_uploads: i64,
    pub active_imports: i64,
}

impl UsageDelta {
    /// Both changes at once.
    pub fn plus(self, other: Self) -> Self {
        Self {
            bytes: self.bytes + other.bytes,
            files: self.files + other.files,
            open_uploads: self.open_uploads + other.open_uploads,
            active_imports: self.active_imports + other.active_imports,
        }
    }
}

/// A staging area and how many bytes were committed to it (which says whether it has a tail object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedBytes {
    pub staging: Staging,
    pub received: u64,
}

/// What removing a file row took with it.
#[derive(Debug, Clone)]
pub struct RemovedFile {
    pub file: FileRecord,
    /// The staging of its upload session, if one was still active (now cancelled).
    pub open_session: Option<StagedBytes>,
    /// The staging of its import task, if it was unfinished (now gone).
    pub unfinished_import: Option<StagedBytes>,
}

/// Bytes whose row is gone and that are still to be deleted from the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    /// A finished file, or a bucket upload's tail object.
    Object(String),
    /// A staging area: a local staging file, or a bucket's multipart upload to abort.
    Staging(Staging),
}

impl Garbage {
    pub fn object(key: &str) -> Self {
        Self::Object(key.to_owned())
    }

    /// The key the queue knows it by.
    pub fn key(&self) -> &str {
        match self {
            Self::Object(key) => key,
            Self::Staging(staging) => &staging.key,
        }
    }
}

/// A project whose counters disagreed with its rows, as repaired by [`UpkeepRecords::recompute_usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRepair {
    pub project: ProjectId,
    pub before: ProjectUsage,
    pub after: ProjectUsage,
}

/// A finished file's bytes, as `filegate migrate-store` copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub blob_key: StorageKey,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Where a copy of a file was made so that a model upstream can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyTarget {
    /// An object in `FILEGATE_VERTEX_STAGING_BUCKET`, read by Vertex AI by its `gs://` URI.
    VertexStaging,
    /// A file in the Gemini API's Files API.
    GeminiFiles,
}

impl CopyTarget {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VertexStaging => "vertex-staging",
            Self::GeminiFiles => "gemini-files",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vertex-staging" => Some(Self::VertexStaging),
            "gemini-files" => Some(Self::GeminiFiles),
            _ => None,
        }
    }
}

/// A copy of one file generation (its blob key) at an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCopy {
    pub blob_key: String,
    pub target: CopyTarget,
    pub project: ProjectId,
    /// What the upstream reads: `gs://…`, or the Google file's `uri`.
    pub uri: String,
    /// The upstream's name for it, to delete it (`files/abc` at the Gemini API).
    pub remote_name: Option<String>,
    pub created_at: Timestamp,
    /// When the copy stops being usable (the file's expiry, or earlier at the upstream).
    pub expires_at: Timestamp,
}

/// An API key as operators see it: never the key, only an id derived from its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The first [`KEY_ID_LEN`] hex digits of the key's SHA-256: stable, unique in practice, and no help to
    /// anyone guessing the key (the key has 238 random bits; its hash is not the secret).
    pub id: String,
    pub project: ProjectId,
    pub label: String,
    pub created_at: Timestamp,
    /// Within a minute: see [`KeyRecords::key_used`].
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Hex digits of a key's hash that make its id.
pub const KEY_ID_LEN: usize = 16;

/// The id operators know a key by, from its hash (see [`ApiKeyInfo::id`]).
pub fn key_id(key_hash: &str) -> String {
    key_hash.chars().take(KEY_ID_LEN).collect()
}

/// A project's counters, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectReport {
    pub project: ProjectId,
    pub usage: ProjectUsage,
}
