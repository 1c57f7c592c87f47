//! [`MetaStore`] on SQLite (WAL, `synchronous=FULL`: a committed chunk survives a power cut, not only a
//! crash). Write transactions start with `BEGIN IMMEDIATE`, so the checks they make (quota, names,
//! offsets) cannot race another writer, and no reader ever has to upgrade its lock.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row as _, SqliteConnection, SqlitePool};

use super::{
    ChunkRecord, ExpiryReport, Garbage, GarbageKind, ListCursor, MetaStore, NewSession, SessionStatus, UploadSession,
};
use crate::domain::{FileError, FileId, FileRecord, FileState, Origin, ProjectId, Timestamp};
use crate::error::{Error, Result};

pub struct SqliteMeta {
    pool: SqlitePool,
}

const FILE_COLUMNS: &str = "f.project_id, f.id, f.display_name, f.mime_type, f.size_bytes, f.sha256, f.state, \
     f.origin, f.blob_key, f.charged_bytes, f.created_at, f.updated_at, f.expires_at, f.error_code, f.error_message";

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
        import: None,
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

/// Removes a file row and queues its blob, and the staged bytes of its open session, for deletion.
async fn remove_file(conn: &mut SqliteConnection, blob_key: &str, now: Timestamp) -> Result<()> {
    sqlx::query("INSERT OR IGNORE INTO blob_garbage (blob_key, kind, queued_at) VALUES (?, 'object', ?)")
        .bind(blob_key)
        .bind(now.as_micros())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT OR IGNORE INTO blob_garbage (blob_key, kind, queued_at) \
         SELECT staging_key, 'staging', ? FROM upload_sessions WHERE blob_key = ? AND status = 'active'",
    )
    .bind(now.as_micros())
    .bind(blob_key)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE upload_sessions SET status = 'cancelled', updated_at = ? WHERE blob_key = ? AND status = 'active'",
    )
    .bind(now.as_micros())
    .bind(blob_key)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM files WHERE blob_key = ?").bind(blob_key).execute(&mut *conn).await?;
    Ok(())
}

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
impl MetaStore for SqliteMeta {
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

    async fn get_file(&self, project: &ProjectId, id: &FileId) -> Result<Option<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.project_id = ? AND f.id = ?");
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn list_files(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f \
             WHERE f.project_id = ? AND f.state <> 'uploading' AND f.expires_at > ? \
               AND (? IS NULL OR f.created_at < ? OR (f.created_at = ? AND f.id < ?)) \
             ORDER BY f.created_at DESC, f.id DESC LIMIT ?"
        );
        let (created, id) = after.map_or((None, None), |c| (Some(c.created_at.as_micros()), Some(c.id.as_str())));
        let rows = sqlx::query(&sql)
            .bind(project.as_str())
            .bind(now.as_micros())
            .bind(created)
            .bind(created)
            .bind(created)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn delete_file(&self, project: &ProjectId, id: &FileId, now: Timestamp) -> Result<Option<FileRecord>> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f \
             WHERE f.project_id = ? AND f.id = ? AND f.state <> 'uploading' AND f.expires_at > ?"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(project.as_str())
            .bind(id.as_str())
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let file = file_from_row(&row)?;
        remove_file(&mut tx, &file.blob_key, now).await?;
        tx.commit().await?;
        Ok(Some(file))
    }

    async fn quota_usage(&self, project: &ProjectId, now: Timestamp, default_quota: u64) -> Result<(u64, u64)> {
        let mut conn = self.pool.acquire().await?;
        project_quota(&mut conn, project, now, default_quota).await
    }

    async fn create_upload(&self, file: &FileRecord, session: &NewSession, default_quota: u64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let existing = sqlx::query("SELECT blob_key, expires_at FROM files WHERE project_id = ? AND id = ?")
            .bind(file.project.as_str())
            .bind(file.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            // An expired file the janitor has not swept yet no longer holds its name.
            if Timestamp::from_micros(row.try_get("expires_at")?) > file.created_at {
                return Err(Error::AlreadyExists(file.id.to_string()));
            }
            let blob_key: String = row.try_get("blob_key")?;
            remove_file(&mut tx, &blob_key, file.created_at).await?;
        }
        let (used, quota) = project_quota(&mut tx, &file.project, file.created_at, default_quota).await?;
        if used.saturating_add(file.charged_bytes) > quota {
            return Err(Error::QuotaExceeded {
                requested: file.charged_bytes,
                available: quota.saturating_sub(used),
                quota,
            });
        }
        sqlx::query(
            "INSERT INTO files (project_id, id, display_name, mime_type, size_bytes, state, origin, blob_key, \
               charged_bytes, created_at, updated_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(file.project.as_str())
        .bind(file.id.as_str())
        .bind(file.display_name.as_deref())
        .bind(&file.mime_type)
        .bind(file.size_bytes.map(int))
        .bind(file.state.as_str())
        .bind(file.origin.as_str())
        .bind(&file.blob_key)
        .bind(int(file.charged_bytes))
        .bind(file.created_at.as_micros())
        .bind(file.updated_at.as_micros())
        .bind(file.expires_at.as_micros())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO upload_sessions (token_hash, project_id, file_id, blob_key, declared_size, status, \
               hasher_state, staging_key, created_at, updated_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
        )
        .bind(&session.token_hash)
        .bind(file.project.as_str())
        .bind(file.id.as_str())
        .bind(&file.blob_key)
        .bind(session.declared_size.map(int))
        .bind(&session.hasher_state)
        .bind(&session.staging_key)
        .bind(file.created_at.as_micros())
        .bind(file.created_at.as_micros())
        .bind(session.expires_at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_upload(&self, token_hash: &str) -> Result<Option<UploadSession>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM upload_sessions s LEFT JOIN files f ON f.blob_key = s.blob_key \
             WHERE s.token_hash = ?"
        );
        let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn chunk_at(&self, token_hash: &str, offset: u64) -> Result<Option<(Option<Vec<u8>>, ChunkRecord)>> {
        let Some(row) = sqlx::query(
            "SELECT length_bytes, hasher_state FROM upload_chunks WHERE token_hash = ? AND offset_bytes = ?",
        )
        .bind(token_hash)
        .bind(int(offset))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let chunk = ChunkRecord {
            offset,
            length: uint(row.try_get("length_bytes")?),
            hasher_state: row.try_get("hasher_state")?,
        };
        let before = if offset == 0 {
            None
        } else {
            let state: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT hasher_state FROM upload_chunks \
                 WHERE token_hash = ? AND offset_bytes + length_bytes = ? AND length_bytes > 0",
            )
            .bind(token_hash)
            .bind(int(offset))
            .fetch_optional(&self.pool)
            .await?;
            Some(state.ok_or_else(|| corrupt("chunk chain", token_hash))?)
        };
        Ok(Some((before, chunk)))
    }

    async fn commit_chunk(&self, token_hash: &str, chunk: &ChunkRecord, now: Timestamp) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let advanced = sqlx::query(
            "UPDATE upload_sessions SET received_bytes = ?, hasher_state = ?, updated_at = ? \
             WHERE token_hash = ? AND status = 'active' AND received_bytes = ?",
        )
        .bind(int(chunk.offset + chunk.length))
        .bind(&chunk.hasher_state)
        .bind(now.as_micros())
        .bind(token_hash)
        .bind(int(chunk.offset))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if advanced == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_chunks (token_hash, offset_bytes, length_bytes, hasher_state) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(int(chunk.offset))
        .bind(int(chunk.length))
        .bind(&chunk.hasher_state)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finalize_upload(
        &self,
        token_hash: &str,
        size: u64,
        sha256: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<FileRecord>> {
        let mut tx = self.write_tx().await?;
        let session =
            sqlx::query("SELECT blob_key, staging_key FROM upload_sessions WHERE token_hash = ? AND status = 'active'")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(session) = session else { return Ok(None) };
        let blob_key: String = session.try_get("blob_key")?;
        let staging_key: String = session.try_get("staging_key")?;
        let updated = sqlx::query(
            "UPDATE files SET state = 'ready', size_bytes = ?, sha256 = ?, charged_bytes = ?, updated_at = ? \
             WHERE blob_key = ? AND state = 'uploading'",
        )
        .bind(int(size))
        .bind(&sha256[..])
        .bind(int(size))
        .bind(now.as_micros())
        .bind(&blob_key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE upload_sessions SET status = 'final', updated_at = ? WHERE token_hash = ?")
            .bind(now.as_micros())
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT OR IGNORE INTO blob_garbage (blob_key, kind, queued_at) VALUES (?, 'staging', ?)")
            .bind(&staging_key)
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await?;
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.blob_key = ?");
        let file = file_from_row(&sqlx::query(&sql).bind(&blob_key).fetch_one(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(Some(file))
    }

    async fn cancel_upload(&self, token_hash: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let blob_key: Option<String> =
            sqlx::query_scalar("SELECT blob_key FROM upload_sessions WHERE token_hash = ? AND status = 'active'")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(blob_key) = blob_key else { return Ok(false) };
        remove_file(&mut tx, &blob_key, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn expire(&self, now: Timestamp) -> Result<ExpiryReport> {
        let mut tx = self.write_tx().await?;
        let now_us = now.as_micros();
        // Expired files, and the files of expired sessions (an upload's file never outlives its session).
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT blob_key FROM files WHERE expires_at <= ? \
             UNION SELECT blob_key FROM upload_sessions WHERE status = 'active' AND expires_at <= ?",
        )
        .bind(now_us)
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await?;
        let mut files = 0;
        for key in &keys {
            files += sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM files WHERE blob_key = ?")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            remove_file(&mut tx, key, now).await?;
        }
        let sessions =
            sqlx::query("DELETE FROM upload_sessions WHERE expires_at <= ?").bind(now_us).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ExpiryReport { files: uint(files), sessions: sessions.rows_affected() })
    }

    async fn garbage(&self, limit: u32) -> Result<Vec<Garbage>> {
        let rows = sqlx::query("SELECT blob_key, kind FROM blob_garbage ORDER BY queued_at LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let kind = match kind.as_str() {
                    "object" => GarbageKind::Object,
                    "staging" => GarbageKind::Staging,
                    other => return Err(corrupt("garbage kind", other)),
                };
                Ok(Garbage { key: row.try_get("blob_key")?, kind })
            })
            .collect()
    }

    async fn garbage_done(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM blob_garbage WHERE blob_key = ?").bind(key).execute(&self.pool).await?;
        Ok(())
    }

    async fn live_staging_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT staging_key FROM upload_sessions WHERE status = 'active'")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn live_blob_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT blob_key FROM files").fetch_all(&self.pool).await?)
    }
}
