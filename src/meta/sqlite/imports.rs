//! Import tasks: a durable queue in the `import_tasks` table, leased by workers.
//!
//! On SQLite the claim is one `BEGIN IMMEDIATE` transaction (writers are serialized, so two workers never
//! take the same row); on PostgreSQL the same method is a `SELECT … FOR UPDATE SKIP LOCKED`. Every write a
//! worker makes checks that it still holds the lease, so a worker whose lease ran out (and whose task
//! another worker took) can never overwrite the newer progress.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::{FILE_COLUMNS, FILE_FROM, SqliteMeta, file_from_row, int, project_quota, queue_garbage, uint};
use crate::domain::{FileError, FileId, FileRecord, ProjectId, Timestamp};
use crate::error::{Error, Result};
use crate::meta::{GarbageKind, ImportCreated, ImportProgress, ImportRepo, ImportTask, NewImport};

/// An Idempotency-Key names its task for this long.
pub const IDEMPOTENCY_WINDOW_MICROS: i64 = 24 * 3600 * 1_000_000;

const TASK_COLUMNS: &str = "t.blob_key, t.project_id, t.file_id, t.source_url, t.expected_sha256, t.staging_key, \
     t.attempts, t.received_bytes, t.total_bytes, t.hasher_state, t.validator, t.created_at, f.mime_type";

fn task_from_row(row: &SqliteRow) -> Result<ImportTask> {
    Ok(ImportTask {
        blob_key: row.try_get("blob_key")?,
        project: ProjectId::from_stored(row.try_get("project_id")?),
        file_id: FileId::from_stored(row.try_get("file_id")?),
        source_url: row.try_get("source_url")?,
        expected_sha256: row.try_get("expected_sha256")?,
        staging_key: row.try_get("staging_key")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        received_bytes: uint(row.try_get("received_bytes")?),
        total_bytes: row.try_get::<Option<i64>, _>("total_bytes")?.map(uint),
        hasher_state: row.try_get("hasher_state")?,
        validator: row.try_get("validator")?,
        mime_type: row.try_get("mime_type")?,
        created_at: Timestamp::from_micros(row.try_get("created_at")?),
    })
}

/// The lease check every worker write starts with.
const HOLDS_LEASE: &str = "blob_key = ? AND lease_owner = ? AND finished_at IS NULL";

/// Marks a task finished if `owner` holds it (with its final size, or why it failed) and queues its
/// staging bytes for deletion; `false` when the lease is lost.
async fn end_task(
    conn: &mut SqliteConnection,
    blob_key: &str,
    owner: &str,
    size: Option<u64>,
    error_code: Option<&str>,
    now: Timestamp,
) -> Result<bool> {
    let sql = format!(
        "UPDATE import_tasks SET finished_at = ?, lease_owner = NULL, lease_until = NULL, \
           received_bytes = COALESCE(?, received_bytes), total_bytes = COALESCE(?, total_bytes), \
           last_error = COALESCE(?, last_error), updated_at = ? \
         WHERE {HOLDS_LEASE} RETURNING staging_key"
    );
    let staging: Option<String> = sqlx::query_scalar(&sql)
        .bind(now.as_micros())
        .bind(size.map(int))
        .bind(size.map(int))
        .bind(error_code)
        .bind(now.as_micros())
        .bind(blob_key)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?;
    match staging {
        Some(staging) => queue_garbage(conn, &staging, GarbageKind::Staging, now).await.map(|()| true),
        None => Ok(false),
    }
}

#[async_trait]
impl ImportRepo for SqliteMeta {
    async fn create_import(
        &self,
        file: &FileRecord,
        task: &NewImport,
        default_quota: u64,
        max_active: u64,
    ) -> Result<ImportCreated> {
        let mut tx = self.write_tx().await?;
        let now = file.created_at;
        if let Some((key, request_hash)) = &task.idempotency {
            let previous = sqlx::query(
                "SELECT i.request_hash, f.id FROM import_idempotency i \
                 LEFT JOIN files f ON f.blob_key = i.blob_key AND f.expires_at > ? \
                 WHERE i.project_id = ? AND i.idempotency_key = ? AND i.created_at > ?",
            )
            .bind(now.as_micros())
            .bind(file.project.as_str())
            .bind(key)
            .bind(now.as_micros() - IDEMPOTENCY_WINDOW_MICROS)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = previous {
                let id: Option<String> = row.try_get("id")?;
                match id {
                    // The task it named is gone (deleted or expired): the key is free again.
                    None => {}
                    Some(id) if row.try_get::<String, _>("request_hash")? == *request_hash => {
                        return Ok(ImportCreated::Existing(FileId::from_stored(id)));
                    }
                    Some(_) => return Err(Error::IdempotencyConflict(key.clone())),
                }
            }
        }
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM import_tasks WHERE project_id = ? AND finished_at IS NULL")
                .bind(file.project.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if uint(active) >= max_active {
            return Err(Error::TooManyRequests(format!(
                "The project has {active} imports in flight, the most allowed; retry when some have finished."
            )));
        }
        let (used, quota) = project_quota(&mut tx, &file.project, now, default_quota).await?;
        if used >= quota {
            return Err(Error::QuotaExceeded { requested: 1, available: 0, quota });
        }
        sqlx::query(
            "INSERT INTO files (project_id, id, display_name, mime_type, state, origin, blob_key, charged_bytes, \
               created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, 'pending', 'import', ?, 0, ?, ?, ?)",
        )
        .bind(file.project.as_str())
        .bind(file.id.as_str())
        .bind(file.display_name.as_deref())
        .bind(&file.mime_type)
        .bind(&file.blob_key)
        .bind(now.as_micros())
        .bind(now.as_micros())
        .bind(file.expires_at.as_micros())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO import_tasks (blob_key, project_id, file_id, source_url, model, expected_sha256, \
               staging_key, next_attempt_at, hasher_state, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&file.blob_key)
        .bind(file.project.as_str())
        .bind(file.id.as_str())
        .bind(&task.source_url)
        .bind(&task.model)
        .bind(task.expected_sha256.as_deref())
        .bind(&task.staging_key)
        .bind(now.as_micros())
        .bind(&task.hasher_state)
        .bind(now.as_micros())
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        if let Some((key, request_hash)) = &task.idempotency {
            sqlx::query(
                "INSERT OR REPLACE INTO import_idempotency (project_id, idempotency_key, request_hash, blob_key, \
                   created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(file.project.as_str())
            .bind(key)
            .bind(request_hash)
            .bind(&file.blob_key)
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ImportCreated::New)
    }

    async fn claim_import(&self, owner: &str, now: Timestamp, lease_until: Timestamp) -> Result<Option<ImportTask>> {
        let mut tx = self.write_tx().await?;
        let due: Option<String> = sqlx::query_scalar(
            "SELECT t.blob_key FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key \
             WHERE t.finished_at IS NULL AND t.next_attempt_at <= ? \
               AND (t.lease_until IS NULL OR t.lease_until <= ?) AND f.expires_at > ? \
             ORDER BY t.next_attempt_at LIMIT 1",
        )
        .bind(now.as_micros())
        .bind(now.as_micros())
        .bind(now.as_micros())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blob_key) = due else { return Ok(None) };
        sqlx::query(
            "UPDATE import_tasks SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ? \
             WHERE blob_key = ?",
        )
        .bind(owner)
        .bind(lease_until.as_micros())
        .bind(now.as_micros())
        .bind(&blob_key)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE files SET state = 'processing', updated_at = ? WHERE blob_key = ? AND state = 'pending'")
            .bind(now.as_micros())
            .bind(&blob_key)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key WHERE t.blob_key = ?"
        );
        let task = task_from_row(&sqlx::query(&sql).bind(&blob_key).fetch_one(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(Some(task))
    }

    async fn renew_import_lease(&self, blob_key: &str, owner: &str, lease_until: Timestamp) -> Result<bool> {
        let sql = format!("UPDATE import_tasks SET lease_until = ? WHERE {HOLDS_LEASE}");
        let done =
            sqlx::query(&sql).bind(lease_until.as_micros()).bind(blob_key).bind(owner).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn commit_import_progress(
        &self,
        blob_key: &str,
        owner: &str,
        progress: &ImportProgress,
        default_quota: u64,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT f.project_id, f.charged_bytes FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key \
             WHERE t.{HOLDS_LEASE}"
        );
        let Some(row) = sqlx::query(&sql).bind(blob_key).bind(owner).fetch_optional(&mut *tx).await? else {
            return Ok(false);
        };
        let project = ProjectId::from_stored(row.try_get("project_id")?);
        let charged_before = uint(row.try_get("charged_bytes")?);
        let charge = progress.total_bytes.unwrap_or(progress.received_bytes).max(progress.received_bytes);
        if charge > charged_before {
            let (used, quota) = project_quota(&mut tx, &project, now, default_quota).await?;
            let used_by_others = used.saturating_sub(charged_before);
            if used_by_others.saturating_add(charge) > quota {
                return Err(Error::QuotaExceeded {
                    requested: charge,
                    available: quota.saturating_sub(used_by_others),
                    quota,
                });
            }
        }
        sqlx::query(
            "UPDATE import_tasks SET received_bytes = ?, hasher_state = ?, validator = ?, total_bytes = ?, \
               updated_at = ? WHERE blob_key = ?",
        )
        .bind(int(progress.received_bytes))
        .bind(&progress.hasher_state)
        .bind(progress.validator.as_deref())
        .bind(progress.total_bytes.map(int))
        .bind(now.as_micros())
        .bind(blob_key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE files SET charged_bytes = ?, size_bytes = ?, mime_type = COALESCE(?, mime_type), updated_at = ? \
             WHERE blob_key = ?",
        )
        .bind(int(charge))
        .bind(progress.total_bytes.map(int))
        .bind(progress.mime_type.as_deref())
        .bind(now.as_micros())
        .bind(blob_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_import(
        &self,
        blob_key: &str,
        owner: &str,
        size: u64,
        sha256: [u8; 32],
        mime_type: &str,
        now: Timestamp,
    ) -> Result<Option<FileRecord>> {
        let mut tx = self.write_tx().await?;
        if !end_task(&mut tx, blob_key, owner, Some(size), None, now).await? {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE files SET state = 'ready', size_bytes = ?, sha256 = ?, charged_bytes = ?, mime_type = ?, \
               updated_at = ? WHERE blob_key = ?",
        )
        .bind(int(size))
        .bind(&sha256[..])
        .bind(int(size))
        .bind(mime_type)
        .bind(now.as_micros())
        .bind(blob_key)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {FILE_COLUMNS} FROM {FILE_FROM} WHERE f.blob_key = ?");
        let file = file_from_row(&sqlx::query(&sql).bind(blob_key).fetch_one(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(Some(file))
    }

    async fn fail_import(&self, blob_key: &str, owner: &str, error: &FileError, now: Timestamp) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !end_task(&mut tx, blob_key, owner, None, Some(&error.code), now).await? {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE files SET state = 'failed', error_code = ?, error_message = ?, charged_bytes = 0, updated_at = ? \
             WHERE blob_key = ?",
        )
        .bind(&error.code)
        .bind(&error.message)
        .bind(now.as_micros())
        .bind(blob_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn retry_import(&self, blob_key: &str, owner: &str, next_attempt_at: Timestamp, why: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE import_tasks SET lease_owner = NULL, lease_until = NULL, next_attempt_at = ?, last_error = ?, \
               updated_at = ? WHERE {HOLDS_LEASE}"
        );
        let done = sqlx::query(&sql)
            .bind(next_attempt_at.as_micros())
            .bind(why)
            .bind(Timestamp::now().as_micros())
            .bind(blob_key)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
