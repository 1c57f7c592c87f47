//! Rows as they come out of the database (`sqlx::FromRow`), and their conversion to domain records, which
//! checks every value an enum or a fixed length must hold.

use sqlx::FromRow;

use crate::domain::{FailureCode, FileError, FileId, FileRecord, FileState, ImportInfo, Origin, ProjectId, Timestamp};
use crate::domain::{Staging, StorageKey};
use crate::meta::{
    ChunkRecord, Garbage, IdempotencyRecord, ImportTask, Lease, MetaError, MetaResult, PartRecord, ProjectUsage, Queue,
    SessionStatus, UploadSession,
};

/// Sizes, offsets and counters are stored as BIGINT; they are far below 2^63.
pub fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The columns [`FileRow`] reads, selected `FROM files f {FILE_JOIN}`.
pub const FILE_COLUMNS: &str = "f.project_id, f.id, f.display_name, f.mime_type, f.size_bytes, f.sha256, f.state, \
     f.origin, f.generated, f.blob_key, f.charged_bytes, f.created_at, f.updated_at, f.expires_at, f.error_code, f.error_message, \
     t.source_url, t.model, \
     CASE WHEN t.fetched_bytes > t.received_bytes THEN t.fetched_bytes ELSE t.received_bytes END AS received_bytes, \
     t.received_bytes AS stored_bytes, t.total_bytes";

/// Joins a file (`files f`) with its import task, if it has one. Kept apart from the table so that a query
/// can name an index for `f` (`INDEXED BY` comes right after the table).
pub const FILE_JOIN: &str = "LEFT JOIN import_tasks t ON t.blob_key = f.blob_key";

#[derive(FromRow)]
pub struct FileRow {
    project_id: String,
    id: String,
    display_name: Option<String>,
    mime_type: String,
    size_bytes: Option<i64>,
    sha256: Option<Vec<u8>>,
    state: String,
    origin: String,
    generated: i64,
    blob_key: String,
    charged_bytes: i64,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    source_url: Option<String>,
    model: Option<String>,
    received_bytes: Option<i64>,
    stored_bytes: Option<i64>,
    total_bytes: Option<i64>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = MetaError;

    fn try_from(row: FileRow) -> MetaResult<Self> {
        let sha256 = match row.sha256 {
            None => None,
            Some(digest) => Some(digest.try_into().map_err(|_| MetaError::corrupt("sha256", "wrong length"))?),
        };
        Ok(Self {
            project: ProjectId::from_stored(row.project_id),
            id: FileId::from_stored(row.id),
            display_name: row.display_name,
            mime_type: row.mime_type,
            size_bytes: row.size_bytes.map(uint),
            sha256,
            state: FileState::parse(&row.state).ok_or_else(|| MetaError::corrupt("file state", &row.state))?,
            origin: match row.generated {
                0 => Origin::parse(&row.origin).ok_or_else(|| MetaError::corrupt("file origin", &row.origin))?,
                _ => Origin::Generated,
            },
            blob_key: StorageKey::from_stored(row.blob_key),
            charged_bytes: uint(row.charged_bytes),
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            expires_at: Timestamp::from_micros(row.expires_at),
            error: row.error_code.map(|code| FileError {
                code: FailureCode::from_stored(&code),
                message: row.error_message.unwrap_or_default(),
            }),
            import: row.source_url.map(|source_url| ImportInfo {
                source_url,
                model: row.model.unwrap_or_default(),
                received_bytes: row.received_bytes.map_or(0, uint),
                stored_bytes: row.stored_bytes.map_or(0, uint),
                total_bytes: row.total_bytes.map(uint),
            }),
        })
    }
}

pub const SESSION_COLUMNS: &str = "s.token_hash, s.project_id, s.file_id, s.declared_size, s.received_bytes, \
     s.status, s.hasher_state, s.staging_key, s.blob_key, s.upload_id, s.expires_at, f.blob_key AS live_blob_key";

/// A session with the blob key of its file, if the file row still exists.
pub const SESSION_FROM: &str = "upload_sessions s LEFT JOIN files f ON f.blob_key = s.blob_key";

#[derive(FromRow)]
pub struct SessionRow {
    token_hash: String,
    project_id: String,
    file_id: String,
    declared_size: Option<i64>,
    received_bytes: i64,
    status: String,
    hasher_state: Vec<u8>,
    staging_key: String,
    blob_key: String,
    upload_id: Option<String>,
    expires_at: i64,
    live_blob_key: Option<String>,
}

impl TryFrom<SessionRow> for UploadSession {
    type Error = MetaError;

    fn try_from(row: SessionRow) -> MetaResult<Self> {
        Ok(Self {
            token_hash: row.token_hash,
            project: ProjectId::from_stored(row.project_id),
            file_id: FileId::from_stored(row.file_id),
            declared_size: row.declared_size.map(uint),
            received_bytes: uint(row.received_bytes),
            status: SessionStatus::parse(&row.status)
                .ok_or_else(|| MetaError::corrupt("session status", &row.status))?,
            hasher_state: row.hasher_state,
            staging_key: row.staging_key,
            session_blob_key: row.blob_key,
            blob_key: row.live_blob_key,
            upload_id: row.upload_id,
            expires_at: Timestamp::from_micros(row.expires_at),
        })
    }
}

#[derive(FromRow)]
pub struct ChunkRow {
    pub offset_bytes: i64,
    pub length_bytes: i64,
    pub hasher_state: Vec<u8>,
}

impl From<ChunkRow> for ChunkRecord {
    fn from(row: ChunkRow) -> Self {
        Self { offset: uint(row.offset_bytes), length: uint(row.length_bytes), hasher_state: row.hasher_state }
    }
}

pub const TASK_COLUMNS: &str = "t.blob_key, t.project_id, t.file_id, t.source_url, t.expected_sha256, t.staging_key, \
     t.attempts, t.received_bytes, t.total_bytes, t.hasher_state, t.validator, t.upload_id, t.created_at, \
     t.traceparent, t.lease_owner, t.lease_fence, f.mime_type, f.charged_bytes";

#[derive(FromRow)]
pub struct TaskRow {
    blob_key: String,
    project_id: String,
    file_id: String,
    source_url: String,
    expected_sha256: Option<String>,
    staging_key: String,
    attempts: i64,
    received_bytes: i64,
    total_bytes: Option<i64>,
    hasher_state: Vec<u8>,
    validator: Option<String>,
    upload_id: Option<String>,
    created_at: i64,
    traceparent: Option<String>,
    lease_owner: Option<String>,
    lease_fence: i64,
    mime_type: String,
    charged_bytes: i64,
}

impl From<TaskRow> for ImportTask {
    fn from(row: TaskRow) -> Self {
        let lease = Lease {
            queue: Queue::Imports,
            key: row.blob_key.clone(),
            owner: row.lease_owner.unwrap_or_default(),
            fence: row.lease_fence,
        };
        Self {
            blob_key: row.blob_key,
            project: ProjectId::from_stored(row.project_id),
            file_id: FileId::from_stored(row.file_id),
            source_url: row.source_url,
            expected_sha256: row.expected_sha256,
            staging_key: row.staging_key,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            received_bytes: uint(row.received_bytes),
            total_bytes: row.total_bytes.map(uint),
            hasher_state: row.hasher_state,
            validator: row.validator,
            mime_type: row.mime_type,
            charged_bytes: uint(row.charged_bytes),
            upload_id: row.upload_id,
            created_at: Timestamp::from_micros(row.created_at),
            traceparent: row.traceparent,
            lease,
        }
    }
}

pub const USAGE_COLUMNS: &str = "id, used_bytes, file_count, open_uploads, active_imports, quota_bytes";

#[derive(FromRow)]
pub struct UsageRow {
    pub id: String,
    used_bytes: i64,
    file_count: i64,
    open_uploads: i64,
    active_imports: i64,
    quota_bytes: Option<i64>,
}

impl From<&UsageRow> for ProjectUsage {
    fn from(row: &UsageRow) -> Self {
        Self {
            used_bytes: uint(row.used_bytes),
            files: uint(row.file_count),
            open_uploads: uint(row.open_uploads),
            active_imports: uint(row.active_imports),
            quota_bytes: row.quota_bytes.map(uint),
        }
    }
}

#[derive(FromRow)]
pub struct GarbageRow {
    blob_key: String,
    kind: String,
    dest_key: Option<String>,
    upload_id: Option<String>,
}

impl TryFrom<GarbageRow> for Garbage {
    type Error = MetaError;

    fn try_from(row: GarbageRow) -> MetaResult<Self> {
        match row.kind.as_str() {
            "object" => Ok(Self::Object(row.blob_key)),
            "staging" => Ok(Self::Staging(Staging {
                key: row.blob_key,
                dest: row.dest_key.unwrap_or_default(),
                upload_id: row.upload_id,
            })),
            other => Err(MetaError::corrupt("garbage kind", other)),
        }
    }
}

/// `(blob_key, kind, dest_key, upload_id)` of a garbage row.
pub fn garbage_row(garbage: &Garbage) -> (&str, &'static str, Option<&str>, Option<&str>) {
    match garbage {
        Garbage::Object(key) => (key, "object", None, None),
        Garbage::Staging(s) => (&s.key, "staging", Some(s.dest.as_str()), s.upload_id.as_deref()),
    }
}

#[derive(FromRow)]
pub struct PartRow {
    part_index: i64,
    part_id: String,
}

impl From<PartRow> for PartRecord {
    fn from(row: PartRow) -> Self {
        Self { index: uint(row.part_index), id: row.part_id }
    }
}

#[derive(FromRow)]
pub struct IdempotencyRow {
    request_hash: String,
    created_at: i64,
    file_id: Option<String>,
    expires_at: Option<i64>,
}

impl From<IdempotencyRow> for IdempotencyRecord {
    fn from(row: IdempotencyRow) -> Self {
        Self {
            request_hash: row.request_hash,
            created_at: Timestamp::from_micros(row.created_at),
            file: row.file_id.zip(row.expires_at).map(|(id, at)| (FileId::from_stored(id), Timestamp::from_micros(at))),
        }
    }
}
