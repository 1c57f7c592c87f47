//! Write transactions that never poison the pool.
//!
//! sqlx's own `Transaction` tracks its depth inside the connection; when a `COMMIT` fails (SQLite's disk
//! full), the rollback that follows can fail too (SQLite has already rolled back), the depth stays up, and
//! the connection goes back to the pool refusing every later `BEGIN` until a restart. Here filegate begins,
//! commits and rolls back itself: a transaction that does not commit cleanly is rolled back, and if even
//! that fails its connection is closed instead of being returned. A transaction dropped half-way (an error
//! returned early, a request cancelled) is rolled back the same way, on a spawned task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Executor as _};
use tokio::sync::OwnedMutexGuard;

use super::guard::Guard;
use super::rows::{
    FILE_COLUMNS, FILE_JOIN, FileRow, IdempotencyRow, SESSION_COLUMNS, SESSION_FROM, SessionRow, TASK_COLUMNS, TaskRow,
    USAGE_COLUMNS, UsageRow, garbage_row, int, uint,
};
use super::{BULK_DEADLINE, Engine, OPERATION_DEADLINE, SqlMeta, queue};
use crate::domain::Staging;
use crate::domain::{FileId, FileRecord, Origin, ProjectId, Timestamp};
use crate::meta::{
    FileUpdate, FileWrites, Garbage, IdempotencyRecord, ImportProgress, ImportTask, ImportWrites, Lease, MetaResult,
    NewDelivery, NewImport, NewSession, PartRecord, ProjectUsage, QueueWrites, RemovedFile, SessionStatus,
    SessionWrites, StagedBytes, Subscriber, UploadSession, UsageDelta, WebhookWrites, WriteTx,
};

pub struct SqlTx {
    /// `None` once committed or handed to the rollback.
    conn: Option<PoolConnection<Any>>,
    /// The turn of a writer on SQLite, held until the transaction has ended.
    gate: Option<OwnedMutexGuard<()>>,
    engine: Engine,
    pub(super) guard: Arc<Guard>,
}

/// How long a rollback may take before its connection is closed instead.
const ROLLBACK_DEADLINE: Duration = Duration::from_secs(5);

/// Rolls back; a connection that cannot even roll back, or not in time (its database stopped answering),
/// is closed, never reused. The writer's turn is given up only afterwards.
async fn rollback_or_close(mut conn: PoolConnection<Any>, gate: Option<OwnedMutexGuard<()>>) {
    match tokio::time::timeout(ROLLBACK_DEADLINE, conn.execute("ROLLBACK")).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "rollback failed; closing the connection");
            conn.close_on_drop();
        }
        Err(_) => {
            tracing::debug!("rollback did not answer in time; closing the connection");
            conn.close_on_drop();
        }
    }
    drop(conn);
    drop(gate);
}

impl SqlMeta {
    pub(super) async fn begin(&self) -> MetaResult<SqlTx> {
        self.engine.check_file()?;
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        if let Err(e) = conn.execute(self.engine.begin()).await {
            conn.close_on_drop();
            return Err(self.err(e));
        }
        Ok(SqlTx { conn: Some(conn), gate, engine: self.engine.clone(), guard: self.guard.clone() })
    }
}

impl SqlTx {
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a transaction is used only until it ends")
    }

    pub(super) fn err(&self, err: sqlx::Error) -> crate::meta::MetaError {
        self.engine.classify(err)
    }

    pub(super) async fn end(mut self) -> MetaResult<()> {
        let mut conn = self.conn.take().expect("a transaction ends once");
        let gate = self.gate.take();
        match conn.execute("COMMIT").await {
            Ok(_) => Ok(()),
            Err(e) => {
                rollback_or_close(conn, gate).await;
                Err(self.err(e))
            }
        }
    }
}

/// `$from, $from+1, …`: `count` numbered parameters, for an `IN (…)` list.
pub(super) fn numbered(from: usize, count: usize) -> String {
    (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Queues bytes for deletion (idempotent per key).
pub(super) async fn queue_garbage(conn: &mut AnyConnection, garbage: &[Garbage], now: Timestamp) -> sqlx::Result<()> {
    // Many rows per statement: the janitor queues a thousand at a time.
    for rows in garbage.chunks(100) {
        let values = (0..rows.len())
            .map(|i| format!("(${}, ${}, ${}, ${}, ${})", 5 * i + 1, 5 * i + 2, 5 * i + 3, 5 * i + 4, 5 * i + 5))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO blob_garbage (blob_key, kind, dest_key, upload_id, queued_at) VALUES {values} \
             ON CONFLICT (blob_key) DO NOTHING"
        );
        let mut insert = sqlx::query(&sql);
        for item in rows {
            let (key, kind, dest, upload_id) = garbage_row(item);
            insert = insert.bind(key).bind(kind).bind(dest).bind(upload_id).bind(now.as_micros());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records parts stored for a staging area (a part stored again, after a failed attempt, replaces its id).
pub(super) async fn insert_parts(
    conn: &mut AnyConnection,
    staging_key: &str,
    parts: &[PartRecord],
) -> sqlx::Result<()> {
    for part in parts {
        sqlx::query(
            "INSERT INTO blob_parts (staging_key, part_index, part_id) VALUES ($1, $2, $3) \
             ON CONFLICT (staging_key, part_index) DO UPDATE SET part_id = excluded.part_id",
        )
        .bind(staging_key)
        .bind(int(part.index))
        .bind(&part.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Drop for SqlTx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let gate = self.gate.take();
            match tokio::runtime::Handle::try_current() {
                // A database that stopped answering would not answer the rollback either: its server ends
                // the transaction when it sees the connection gone.
                _ if self.guard.is_down() => conn.close_on_drop(),
                Ok(runtime) => {
                    runtime.spawn(rollback_or_close(conn, gate));
                }
                Err(_) => {
                    let mut conn = conn;
                    conn.close_on_drop();
                }
            }
        }
    }
}

#[async_trait]
impl FileWrites for SqlTx {
    async fn file(&mut self, project: &ProjectId, id: &FileId) -> MetaResult<Option<FileRecord>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql =
                    format!("SELECT {FILE_COLUMNS} FROM files f {FILE_JOIN} WHERE f.project_id = $1 AND f.id = $2");
                let row: Option<FileRow> = sqlx::query_as(&sql)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .fetch_optional(self.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                row.map(FileRecord::try_from).transpose()
            })
            .await
    }

    async fn file_by_blob(&mut self, blob_key: &str) -> MetaResult<Option<FileRecord>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql = format!("SELECT {FILE_COLUMNS} FROM files f {FILE_JOIN} WHERE f.blob_key = $1");
                let row: Option<FileRow> =
                    sqlx::query_as(&sql).bind(blob_key).fetch_optional(self.conn()).await.map_err(|e| self.err(e))?;
                row.map(FileRecord::try_from).transpose()
            })
            .await
    }

    async fn expired_files(&mut self, project: &ProjectId, now: Timestamp, limit: u32) -> MetaResult<Vec<String>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(BULK_DEADLINE), async {
                sqlx::query_scalar(
            "SELECT blob_key FROM files WHERE project_id = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3",
        )
        .bind(project.as_str())
        .bind(now.as_micros())
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await
        .map_err(|e| self.err(e))
            })
            .await
    }

    async fn insert_file(&mut self, file: &FileRecord) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "INSERT INTO files (project_id, id, display_name, mime_type, size_bytes, state, origin, blob_key, \
               charged_bytes, created_at, updated_at, expires_at, generated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(file.project.as_str())
                .bind(file.id.as_str())
                .bind(file.display_name.as_deref())
                .bind(&file.mime_type)
                .bind(file.size_bytes.map(int))
                .bind(file.state.as_str())
                // The column's CHECK predates generated files (a CHECK cannot change in SQLite without rebuilding a
                // table others cascade from): they are stored as uploads, marked by `generated`.
                .bind(if file.origin == Origin::Generated { Origin::Upload.as_str() } else { file.origin.as_str() })
                .bind(file.blob_key.as_str())
                .bind(int(file.charged_bytes))
                .bind(file.created_at.as_micros())
                .bind(file.updated_at.as_micros())
                .bind(file.expires_at.as_micros())
                .bind(i64::from(file.origin == Origin::Generated))
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn update_file(&mut self, blob_key: &str, update: &FileUpdate, now: Timestamp) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "UPDATE files SET state = COALESCE($1, state), size_bytes = COALESCE($2, size_bytes), \
               sha256 = COALESCE($3, sha256), mime_type = COALESCE($4, mime_type), \
               charged_bytes = COALESCE($5, charged_bytes), error_code = COALESCE($6, error_code), \
               error_message = COALESCE($7, error_message), updated_at = $8 \
             WHERE blob_key = $9",
                )
                .bind(update.state.map(|s| s.as_str()))
                .bind(update.size_bytes.map(int))
                .bind(update.sha256.map(|d| d.to_vec()))
                .bind(update.mime_type.as_deref())
                .bind(update.charged_bytes.map(int))
                .bind(update.error.as_ref().map(|e| e.code.as_str()))
                .bind(update.error.as_ref().map(|e| e.message.as_str()))
                .bind(now.as_micros())
                .bind(blob_key)
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn remove_files(&mut self, blob_keys: &[String], now: Timestamp) -> MetaResult<Vec<RemovedFile>> {
        let guard = self.guard.clone();
        guard.bounded(Some(BULK_DEADLINE), async {
            if blob_keys.is_empty() {
                return Ok(Vec::new());
            }
            // `$1 … $n` are the keys; `now` comes after them.
            let keys = numbered(1, blob_keys.len());
            let now_param = blob_keys.len() + 1;
            let sql = format!("SELECT {FILE_COLUMNS} FROM files f {FILE_JOIN} WHERE f.blob_key IN ({keys})");
            let mut select = sqlx::query_as::<_, FileRow>(&sql);
            for key in blob_keys {
                select = select.bind(key);
            }
            let files: Vec<FileRecord> = select
                .fetch_all(self.conn())
                .await
                .map_err(|e| self.err(e))?
                .into_iter()
                .map(FileRecord::try_from)
                .collect::<MetaResult<_>>()?;
            if files.is_empty() {
                return Ok(Vec::new());
            }
            // Locks in the contract's order: import tasks, then sessions, then files.
            type StagedRow = (String, String, i64, Option<String>);
            let sql = format!(
                "DELETE FROM import_tasks WHERE blob_key IN ({keys}) \
                 RETURNING blob_key, staging_key, received_bytes, upload_id, finished_at"
            );
            let mut delete_tasks = sqlx::query_as::<_, (String, String, i64, Option<String>, Option<i64>)>(&sql);
            for key in blob_keys {
                delete_tasks = delete_tasks.bind(key);
            }
            let unfinished_imports: Vec<StagedRow> = delete_tasks
                .fetch_all(self.conn())
                .await
                .map_err(|e| self.err(e))?
                .into_iter()
                .filter(|row| row.4.is_none())
                .map(|(blob, key, received, upload_id, _)| (blob, key, received, upload_id))
                .collect();
            let sql = format!(
                "UPDATE upload_sessions SET status = 'cancelled', updated_at = ${now_param} \
                 WHERE blob_key IN ({keys}) AND status = 'active' RETURNING blob_key, staging_key, received_bytes, upload_id"
            );
            let mut cancel_sessions = sqlx::query_as::<_, StagedRow>(&sql);
            for key in blob_keys {
                cancel_sessions = cancel_sessions.bind(key);
            }
            let open_sessions: Vec<StagedRow> =
                cancel_sessions.bind(now.as_micros()).fetch_all(self.conn()).await.map_err(|e| self.err(e))?;
            let sql = format!("DELETE FROM files WHERE blob_key IN ({keys})");
            let mut delete_files = sqlx::query(&sql);
            for key in blob_keys {
                delete_files = delete_files.bind(key);
            }
            delete_files.execute(self.conn()).await.map_err(|e| self.err(e))?;

            let staged_of = |rows: &[StagedRow], blob_key: &str| {
                rows.iter().find(|row| row.0 == blob_key).map(|(_, key, received, upload_id)| StagedBytes {
                    staging: Staging { key: key.clone(), dest: blob_key.to_owned(), upload_id: upload_id.clone() },
                    received: uint(*received),
                })
            };
            Ok(files
                .into_iter()
                .map(|file| RemovedFile {
                    open_session: staged_of(&open_sessions, &file.blob_key),
                    unfinished_import: staged_of(&unfinished_imports, &file.blob_key),
                    file,
                })
                .collect())
        })
        .await
    }

    async fn queue_garbage(&mut self, garbage: &[Garbage], now: Timestamp) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(BULK_DEADLINE), async {
                queue_garbage(self.conn(), garbage, now).await.map_err(|e| self.err(e))
            })
            .await
    }
}

#[async_trait]
impl SessionWrites for SqlTx {
    async fn insert_session(&mut self, session: &NewSession) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "INSERT INTO upload_sessions (token_hash, project_id, file_id, blob_key, declared_size, status, \
               hasher_state, staging_key, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $8, $9)",
                )
                .bind(&session.token_hash)
                .bind(session.project.as_str())
                .bind(session.file_id.as_str())
                .bind(&session.blob_key)
                .bind(session.declared_size.map(int))
                .bind(&session.hasher_state)
                .bind(&session.staging_key)
                .bind(session.created_at.as_micros())
                .bind(session.expires_at.as_micros())
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn session(&mut self, token_hash: &str) -> MetaResult<Option<UploadSession>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let lock = self.engine.lock_rows(Some("s"));
                let sql = format!("SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE s.token_hash = $1{lock}");
                let row: Option<SessionRow> =
                    sqlx::query_as(&sql).bind(token_hash).fetch_optional(self.conn()).await.map_err(|e| self.err(e))?;
                row.map(UploadSession::try_from).transpose()
            })
            .await
    }

    async fn set_session_status(&mut self, token_hash: &str, status: SessionStatus, now: Timestamp) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("UPDATE upload_sessions SET status = $1, updated_at = $2 WHERE token_hash = $3")
                    .bind(status.as_str())
                    .bind(now.as_micros())
                    .bind(token_hash)
                    .execute(self.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ImportWrites for SqlTx {
    async fn insert_import(&mut self, task: &NewImport) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "INSERT INTO import_tasks (blob_key, project_id, file_id, source_url, model, expected_sha256, \
               staging_key, next_attempt_at, hasher_state, created_at, updated_at, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $8, $10)",
                )
                .bind(&task.blob_key)
                .bind(task.project.as_str())
                .bind(task.file_id.as_str())
                .bind(&task.source_url)
                .bind(&task.model)
                .bind(task.expected_sha256.as_deref())
                .bind(&task.staging_key)
                .bind(task.created_at.as_micros())
                .bind(&task.hasher_state)
                .bind(task.traceparent.as_deref())
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn leased_import(&mut self, lease: &Lease) -> MetaResult<Option<ImportTask>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let lock = self.engine.lock_rows(None);
                if !queue::holds_on(self.conn(), lease, &lock).await.map_err(|e| self.err(e))? {
                    return Ok(None);
                }
                let sql = format!(
                    "SELECT {TASK_COLUMNS} FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key WHERE t.blob_key = $1"
                );
                let row: Option<TaskRow> =
                    sqlx::query_as(&sql).bind(&lease.key).fetch_optional(self.conn()).await.map_err(|e| self.err(e))?;
                Ok(row.map(ImportTask::from))
            })
            .await
    }

    async fn save_import_progress(
        &mut self,
        task: &ImportTask,
        progress: &ImportProgress,
        parts: &[PartRecord],
        restart: bool,
        now: Timestamp,
    ) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                if restart {
                    sqlx::query("DELETE FROM blob_parts WHERE staging_key = $1")
                        .bind(&task.staging_key)
                        .execute(self.conn())
                        .await
                        .map_err(|e| self.err(e))?;
                }
                insert_parts(self.conn(), &task.staging_key, parts).await.map_err(|e| self.err(e))?;
                let blob_key = task.blob_key.as_str();
                // A restart forgets what was fetched of the old version too.
                let fetched = if restart { ", fetched_bytes = 0" } else { "" };
                let sql = format!(
                    "UPDATE import_tasks SET received_bytes = $1, hasher_state = $2, validator = $3, total_bytes = $4, \
                       updated_at = $5{fetched} WHERE blob_key = $6"
                );
                sqlx::query(&sql)
                    .bind(int(progress.received_bytes))
                    .bind(&progress.hasher_state)
                    .bind(progress.validator.as_deref())
                    .bind(progress.total_bytes.map(int))
                    .bind(now.as_micros())
                    .bind(blob_key)
                    .execute(self.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn finish_import_task(&mut self, blob_key: &str, error_code: Option<&str>, now: Timestamp) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "UPDATE import_tasks SET finished_at = $1, lease_owner = NULL, lease_until = NULL, \
               last_error = COALESCE($2, last_error), updated_at = $1 WHERE blob_key = $3",
                )
                .bind(now.as_micros())
                .bind(error_code)
                .bind(blob_key)
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn idempotency(&mut self, project: &ProjectId, key: &str) -> MetaResult<Option<IdempotencyRecord>> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let row: Option<IdempotencyRow> = sqlx::query_as(
                    "SELECT i.request_hash, i.created_at, f.id AS file_id, f.expires_at FROM import_idempotency i \
             LEFT JOIN files f ON f.blob_key = i.blob_key WHERE i.project_id = $1 AND i.idempotency_key = $2",
                )
                .bind(project.as_str())
                .bind(key)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(row.map(IdempotencyRecord::from))
            })
            .await
    }

    async fn put_idempotency(
        &mut self,
        project: &ProjectId,
        key: &str,
        request_hash: &str,
        blob_key: &str,
        now: Timestamp,
    ) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "INSERT INTO import_idempotency (project_id, idempotency_key, request_hash, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, idempotency_key) DO UPDATE SET \
               request_hash = excluded.request_hash, blob_key = excluded.blob_key, created_at = excluded.created_at",
                )
                .bind(project.as_str())
                .bind(key)
                .bind(request_hash)
                .bind(blob_key)
                .bind(now.as_micros())
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl WebhookWrites for SqlTx {
    async fn webhook_subscribers(&mut self, project: &ProjectId) -> MetaResult<Vec<Subscriber>> {
        let guard = self.guard.clone();
        guard.bounded(Some(OPERATION_DEADLINE), async { self.subscribers(project).await }).await
    }

    async fn request_webhooks(&mut self, blob_keys: &[String]) -> MetaResult<Vec<(String, String)>> {
        let guard = self.guard.clone();
        guard.bounded(Some(OPERATION_DEADLINE), async { self.webhook_configs(blob_keys).await }).await
    }

    async fn set_request_webhooks(&mut self, blob_key: &str, config: &str) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard.bounded(Some(OPERATION_DEADLINE), async { self.set_webhook_config(blob_key, config).await }).await
    }

    async fn queue_deliveries(&mut self, deliveries: &[NewDelivery]) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard.bounded(Some(BULK_DEADLINE), async { self.insert_deliveries(deliveries).await }).await
    }
}

#[async_trait]
impl WriteTx for SqlTx {
    async fn lock_project(&mut self, project: &ProjectId) -> MetaResult<ProjectUsage> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let created = Timestamp::now().as_micros();
                sqlx::query("INSERT INTO projects (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(project.as_str())
                    .bind(created)
                    .execute(self.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                let sql = format!("SELECT {USAGE_COLUMNS} FROM projects WHERE id = $1{}", self.engine.lock_rows(None));
                let row: UsageRow = sqlx::query_as(&sql)
                    .bind(project.as_str())
                    .fetch_one(self.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(ProjectUsage::from(&row))
            })
            .await
    }

    async fn add_usage(&mut self, project: &ProjectId, delta: UsageDelta) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                if delta == UsageDelta::default() {
                    return Ok(());
                }
                sqlx::query(
                    "UPDATE projects SET used_bytes = used_bytes + $1, file_count = file_count + $2, \
               open_uploads = open_uploads + $3, active_imports = active_imports + $4 WHERE id = $5",
                )
                .bind(delta.bytes)
                .bind(delta.files)
                .bind(delta.open_uploads)
                .bind(delta.active_imports)
                .bind(project.as_str())
                .execute(self.conn())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    async fn update_batch_from(
        &mut self,
        batch: &crate::meta::BatchRecord,
        expected_state: &str,
        was_collected: bool,
    ) -> MetaResult<bool> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                self.update_batch_row_from(batch, expected_state, was_collected).await
            })
            .await
    }

    async fn commit(self: Box<Self>) -> MetaResult<()> {
        let guard = self.guard.clone();
        guard.bounded(Some(OPERATION_DEADLINE), async move { (*self).end().await }).await
    }
}

#[async_trait]
impl QueueWrites for SqlTx {
    async fn holds(&mut self, lease: &Lease) -> MetaResult<bool> {
        let guard = self.guard.clone();
        guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let lock = self.engine.lock_rows(None);
                queue::holds_on(self.conn(), lease, &lock).await.map_err(|e| self.err(e))
            })
            .await
    }
}
