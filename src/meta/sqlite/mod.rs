//! [`MetaStore`](super::MetaStore) on SQLite (WAL, `synchronous=FULL`: a committed chunk survives a power
//! cut, not only a crash). Write transactions start with `BEGIN IMMEDIATE`, so the checks they make
//! (quota, names, offsets, leases) cannot race another writer, and no reader ever has to upgrade its lock.
//! One file per repository trait; row mapping and the shared steps live here.

mod files;
mod imports;
mod janitor;
mod uploads;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row as _, SqliteConnection, SqlitePool};

use super::{Garbage, GarbageKind, ProjectRepo, SessionStatus, UploadSession};
use crate::domain::{FileError, FileId, FileRecord, FileState, ImportInfo, Origin, ProjectId, Timestamp};
use crate::error::{Error, Result};

pub struct SqliteMeta {
    pool: SqlitePool,
}

/// The columns [`file_from_row`] reads, selected `FROM {FILE_FROM}`.
const FILE_COLUMNS: &str = "f.project_id, f.id, f.display_name, f.mime_type, f.size_bytes, f.sha256, f.state, \
     f.origin, f.blob_key, f.charged_bytes, f.created_at, f.updated_at, f.expires_at, f.error_code, f.error_message, \
     t.source_url, t.model, t.received_bytes, t.total_bytes";

/// A file with its import task, if it has one.
const FILE_FROM: &str = "files f LEFT JOIN import_tasks t ON t.blob_key = f.blob_key";

const SESSION_COLUMNS: &str = "s.token_hash, s.project_id, s.file_id, s.declared_size, s.received_bytes, s.status, \
     s.hasher_state, s.staging_key, s.expires_at, f.blob_key AS live_blob_key";

/// SQLite stores INTEGER as i64; sizes and offsets are far below 2^63.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("metadata store holds an invalid {what}: {value:?}"))
}

fn file_from_row(row: &SqliteRow) -> Result<FileRecord> {
    let state: String = row.try_get("state")?;
    let origin: String = row.try_get("origin")?;
    let sha256: Option<Vec<u8>> = row.try_get("sha256")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    Ok(FileRecord {
        project: ProjectId::from_stored(row.try_get("project_id")?),
        id: FileId::from_stored(row.try_get("id")?),
        display_name: row.try_get("display_name")?,
        mime_type: row.try_get("mime_type")?,
        size_bytes: row.try_get::<Option<i64>, _>("size_bytes")?.map(uint),
        sha256: sha256.map(|d| d.try_into().map_err(|_| corrupt("sha256", "wrong length"))).transpose()?,
        state: FileState::parse(&state).ok_or_else(|| corrupt("file state", &state))?,
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("file origin", &origin))?,
        blob_key: row.try_get("blob_key")?,
        charged_bytes: uint(row.try_get("charged_bytes")?),
        created_at: Timestamp::from_micros(row.try_get("created_at")?),
        updated_at: Timestamp::from_micros(row.try_get("updated_at")?),
        expires_at: Timestamp::from_micros(row.try_get("expires_at")?),
        error: error_code.map(|code| FileError { code, message: error_message.unwrap_or_default() }),
        import: match row.try_get::<Option<String>, _>("source_url")? {
            None => None,
            Some(source_url) => Some(ImportInfo {
                source_url,
                model: row.try_get("model")?,
                received_bytes: uint(row.try_get("received_bytes")?),
                total_bytes: row.try_get::<Option<i64>, _>("total_bytes")?.map(uint),
            }),
        },
    })
}

fn session_from_row(row: &SqliteRow) -> Result<UploadSession> {
    let status: String = row.try_get("status")?;
    Ok(UploadSession {
        token_hash: row.try_get("token_hash")?,
        project: ProjectId::from_stored(row.try_get("project_id")?),
        file_id: FileId::from_stored(row.try_get("file_id")?),
        declared_size: row.try_get::<Option<i64>, _>("declared_size")?.map(uint),
        received_bytes: uint(row.try_get("received_bytes")?),
        status: SessionStatus::parse(&status).ok_or_else(|| corrupt("session status", &status))?,
        hasher_state: row.try_get("hasher_state")?,
        staging_key: row.try_get("staging_key")?,
        blob_key: row.try_get("live_blob_key")?,
        expires_at: Timestamp::from_micros(row.try_get("expires_at")?),
    })
}

impl SqliteMeta {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| Error::internal(format!("database migration failed: {e}")))?;
        Ok(Self { pool })
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Queues bytes for deletion (idempotent): the caller's transaction removes what owned them.
async fn queue_garbage(conn: &mut SqliteConnection, key: &str, kind: GarbageKind, now: Timestamp) -> Result<()> {
    let kind = match kind {
        GarbageKind::Object => "object",
        GarbageKind::Staging => "staging",
    };
    sqlx::query("INSERT OR IGNORE INTO blob_garbage (blob_key, kind, queued_at) VALUES (?, ?, ?)")
        .bind(key)
        .bind(kind)
        .bind(now.as_micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What removing a file row did: whether the row existed, and the bytes queued for deletion (its object,
/// and the staged bytes of its open upload session or unfinished import), which the caller may delete at
/// once; the janitor deletes whatever it leaves.
struct Removed {
    row: bool,
    garbage: Vec<Garbage>,
}

/// Removes a file row (its import task goes with it, by cascade) and queues its bytes for deletion.
async fn remove_file(conn: &mut SqliteConnection, blob_key: &str, now: Timestamp) -> Result<Removed> {
    let staging: Vec<String> = sqlx::query_scalar(
        "SELECT staging_key FROM upload_sessions WHERE blob_key = ? AND status = 'active' \
         UNION SELECT staging_key FROM import_tasks WHERE blob_key = ? AND finished_at IS NULL",
    )
    .bind(blob_key)
    .bind(blob_key)
    .fetch_all(&mut *conn)
    .await?;
    let mut garbage = vec![Garbage::object(blob_key)];
    garbage.extend(staging.iter().map(|key| Garbage::staging(key)));
    for item in &garbage {
        queue_garbage(conn, &item.key, item.kind, now).await?;
    }
    sqlx::query(
        "UPDATE upload_sessions SET status = 'cancelled', updated_at = ? WHERE blob_key = ? AND status = 'active'",
    )
    .bind(now.as_micros())
    .bind(blob_key)
    .execute(&mut *conn)
    .await?;
    let deleted = sqlx::query("DELETE FROM files WHERE blob_key = ?").bind(blob_key).execute(&mut *conn).await?;
    Ok(Removed { row: deleted.rows_affected() == 1, garbage })
}

/// The project's quota usage (unexpired rows' charged bytes) and its quota.
async fn project_quota(
    conn: &mut SqliteConnection,
    project: &ProjectId,
    now: Timestamp,
    default: u64,
) -> Result<(u64, u64)> {
    let row = sqlx::query(
        "SELECT p.quota_bytes, (SELECT COALESCE(SUM(charged_bytes), 0) FROM files \
           WHERE project_id = p.id AND expires_at > ?) AS used \
         FROM projects p WHERE p.id = ?",
    )
    .bind(now.as_micros())
    .bind(project.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::internal(format!("project {project} has no row")))?;
    let quota = row.try_get::<Option<i64>, _>("quota_bytes")?.map_or(default, uint);
    Ok((uint(row.try_get("used")?), quota))
}

#[async_trait]
impl ProjectRepo for SqliteMeta {
    async fn ensure_project(&self, project: &ProjectId) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO projects (id, created_at) VALUES (?, ?)")
            .bind(project.as_str())
            .bind(Timestamp::now().as_micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (key_hash, project_id, label, created_at) VALUES (?, ?, ?, ?)")
            .bind(key_hash)
            .bind(project.as_str())
            .bind(label)
            .bind(Timestamp::now().as_micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn project_for_key(&self, key_hash: &str) -> Result<Option<ProjectId>> {
        let row = sqlx::query("SELECT project_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("project_id")).transpose()?.map(ProjectId::from_stored))
    }

    async fn count_api_keys(&self) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetch_one(&self.pool).await?;
        Ok(uint(count))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
