//! The store's own operations: reads, single-statement compare-and-sets, the import claim, the janitor's
//! queries and the counters' repair.

use async_trait::async_trait;
use sqlx::Executor as _;

use super::rows::{
    ChunkRow, FILE_COLUMNS, FILE_JOIN, FileRow, GarbageRow, PartRow, SESSION_COLUMNS, SESSION_FROM, SessionRow,
    TASK_COLUMNS, TaskRow, USAGE_COLUMNS, UsageRow, int, uint,
};
use super::tx::{insert_parts, numbered, queue_garbage};
use super::{BULK_DEADLINE, Engine, OPERATION_DEADLINE, SqlMeta};
use crate::domain::{FileId, FileRecord, ProjectId, Timestamp};
use crate::meta::{
    ApiKeyInfo, ChunkRecord, CopyTarget, Garbage, ImportTask, ListCursor, MetaError, MetaResult, MetaStore, PartRecord,
    ProjectReport, ProjectUsage, StoredFile, UploadSession, UpstreamCopy, UsageRepair, WriteTx,
};

/// Every project's counters, recomputed from its rows.
const RECOUNT: &str = "UPDATE projects SET \
       used_bytes = (SELECT COALESCE(SUM(charged_bytes), 0) FROM files WHERE project_id = projects.id), \
       file_count = (SELECT COUNT(*) FROM files WHERE project_id = projects.id), \
       open_uploads = (SELECT COUNT(*) FROM upload_sessions \
         WHERE project_id = projects.id AND status = 'active'), \
       active_imports = (SELECT COUNT(*) FROM import_tasks \
         WHERE project_id = projects.id AND finished_at IS NULL)";

/// A page of a project's visible files, newest first: binds the project, now, then (`after` a cursor)
/// its creation time and id, then the page size.
///
/// Keyset paging over the `files_listed` index: a deep page costs what the first one does, and files
/// still being uploaded (the newest rows, which a list never shows) are not in that partial index, so a
/// page does not step over them; the `state <> 'uploading'` term is its predicate, which is what lets an
/// engine use it. The row comparison (not the equivalent OR) is what both engines turn into a range scan.
/// SQLite is told the index by name ([`Engine::indexed_by`]): left to itself it chose
/// `files_by_project_expiry` and sorted every unexpired file of the project for each page — 1.05 s a page
/// with a million files. `INDEXED BY` also makes a query that could not use the index an error rather
/// than slow.
fn list_files_sql(engine: &Engine, after: bool) -> String {
    let index = engine.indexed_by("files_listed");
    let (keyset, limit) = if after { ("AND (f.created_at, f.id) < ($3, $4)", "$5") } else { ("", "$3") };
    format!(
        "SELECT {FILE_COLUMNS} FROM files f{index} {FILE_JOIN} \
           WHERE f.project_id = $1 AND f.state <> 'uploading' AND f.expires_at > $2 {keyset} \
           ORDER BY f.created_at DESC, f.id DESC LIMIT {limit}"
    )
}

#[async_trait]
impl MetaStore for SqlMeta {
    fn describe(&self) -> String {
        match &self.engine {
            super::Engine::Sqlite { path, .. } => format!("SQLite at {} (WAL, synchronous=FULL)", path.display()),
            super::Engine::Postgres { target } => format!("PostgreSQL at {target}"),
        }
    }

    fn connections(&self) -> (u32, usize) {
        (self.pool().size(), self.pool().num_idle())
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn write(&self) -> MetaResult<Box<dyn WriteTx>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async { Ok(Box::new(self.begin().await?) as Box<dyn WriteTx>) })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn ensure_project(&self, project: &ProjectId) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("INSERT INTO projects (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(project.as_str())
                    .bind(Timestamp::now().as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("INSERT INTO api_keys (key_hash, project_id, label, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(key_hash)
                    .bind(project.as_str())
                    .bind(label)
                    .bind(Timestamp::now().as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn project_for_key(&self, key_hash: &str) -> MetaResult<Option<ProjectId>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let project: Option<String> =
                    sqlx::query_scalar("SELECT project_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                        .bind(key_hash)
                        .fetch_optional(&self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                Ok(project.map(ProjectId::from_stored))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn count_api_keys(&self) -> MetaResult<u64> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
                    .fetch_one(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(uint(count))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn list_api_keys(&self, project: Option<&ProjectId>) -> MetaResult<Vec<ApiKeyInfo>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.keys(project).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> MetaResult<Option<ApiKeyInfo>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.revoke_key(id, now).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn key_used(&self, key_hash: &str, now: Timestamp) -> MetaResult<()> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.touch_key(key_hash, now).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn get_file(&self, project: &ProjectId, id: &FileId) -> MetaResult<Option<FileRecord>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql =
                    format!("SELECT {FILE_COLUMNS} FROM files f {FILE_JOIN} WHERE f.project_id = $1 AND f.id = $2");
                let row: Option<FileRow> = sqlx::query_as(&sql)
                    .bind(project.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                row.map(FileRecord::try_from).transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn list_files(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> MetaResult<Vec<FileRecord>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let rows: Vec<FileRow> = match after {
                    None => {
                        sqlx::query_as(&list_files_sql(&self.engine, false))
                            .bind(project.as_str())
                            .bind(now.as_micros())
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool())
                            .await
                    }
                    Some(cursor) => {
                        sqlx::query_as(&list_files_sql(&self.engine, true))
                            .bind(project.as_str())
                            .bind(now.as_micros())
                            .bind(cursor.created_at.as_micros())
                            .bind(cursor.id.as_str())
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool())
                            .await
                    }
                }
                .map_err(|e| self.err(e))?;
                rows.into_iter().map(FileRecord::try_from).collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn get_upload(&self, token_hash: &str) -> MetaResult<Option<UploadSession>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql = format!("SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE s.token_hash = $1");
                let row: Option<SessionRow> = sqlx::query_as(&sql)
                    .bind(token_hash)
                    .fetch_optional(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                row.map(UploadSession::try_from).transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn chunk_at(&self, token_hash: &str, offset: u64) -> MetaResult<Option<(Option<Vec<u8>>, ChunkRecord)>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let chunk: Option<ChunkRow> = sqlx::query_as(
                    "SELECT offset_bytes, length_bytes, hasher_state FROM upload_chunks \
             WHERE token_hash = $1 AND offset_bytes = $2",
                )
                .bind(token_hash)
                .bind(int(offset))
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                let Some(chunk) = chunk else { return Ok(None) };
                if offset == 0 {
                    return Ok(Some((None, chunk.into())));
                }
                let before: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT hasher_state FROM upload_chunks \
             WHERE token_hash = $1 AND offset_bytes + length_bytes = $2 AND length_bytes > 0",
                )
                .bind(token_hash)
                .bind(int(offset))
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                let before = before.ok_or_else(|| MetaError::corrupt("chunk chain", token_hash))?;
                Ok(Some((Some(before), chunk.into())))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn commit_chunk(
        &self,
        token_hash: &str,
        chunk: &ChunkRecord,
        parts: &[PartRecord],
        garbage: &[Garbage],
        writer: Option<&str>,
        now: Timestamp,
    ) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut tx = self.begin().await?;
                // The compare-and-set: only from the offset the caller read, only while active, and only by the
                // request that holds the claim (if it took one), which keeps it.
                let staging_key: Option<String> = sqlx::query_scalar(
                    "UPDATE upload_sessions SET received_bytes = $1, hasher_state = $2, updated_at = $3 \
             WHERE token_hash = $4 AND status = 'active' AND received_bytes = $5 \
               AND ($6 = '' OR writer = $6) RETURNING staging_key",
                )
                .bind(int(chunk.offset + chunk.length))
                .bind(&chunk.hasher_state)
                .bind(now.as_micros())
                .bind(token_hash)
                .bind(int(chunk.offset))
                .bind(writer.unwrap_or_default())
                .fetch_optional(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
                let Some(staging_key) = staging_key else { return Ok(false) };
                insert_parts(tx.conn(), &staging_key, parts).await.map_err(|e| self.err(e))?;
                queue_garbage(tx.conn(), garbage, now).await.map_err(|e| self.err(e))?;
                sqlx::query(
            "INSERT INTO upload_chunks (token_hash, offset_bytes, length_bytes, hasher_state) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(int(chunk.offset))
        .bind(int(chunk.length))
        .bind(&chunk.hasher_state)
        .execute(tx.conn())
        .await
        .map_err(|e| self.err(e))?;
                tx.end().await?;
                Ok(true)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn claim_writer(&self, token_hash: &str, writer: &str, until: Timestamp, now: Timestamp) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let claimed = sqlx::query(
                    "UPDATE upload_sessions SET writer = $1, writer_until = $2 \
             WHERE token_hash = $3 AND status = 'active' \
               AND (writer IS NULL OR writer = $1 OR writer_until <= $4)",
                )
                .bind(writer)
                .bind(until.as_micros())
                .bind(token_hash)
                .bind(now.as_micros())
                .execute(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(claimed.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn release_writer(&self, token_hash: &str, writer: &str) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
            "UPDATE upload_sessions SET writer = NULL, writer_until = NULL WHERE token_hash = $1 AND writer = $2",
        )
        .bind(token_hash)
        .bind(writer)
        .execute(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn set_upload_id(&self, staging_key: &str, upload_id: &str) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut recorded = 0;
                // Only a live owner records it: a cancelled session keeps its row, a finished task its row.
                for (table, live) in [("upload_sessions", "status = 'active'"), ("import_tasks", "finished_at IS NULL")]
                {
                    recorded +=
                        sqlx::query(&format!("UPDATE {table} SET upload_id = $1 WHERE staging_key = $2 AND {live}"))
                            .bind(upload_id)
                            .bind(staging_key)
                            .execute(&self.pool())
                            .await
                            .map_err(|e| self.err(e))?
                            .rows_affected();
                }
                Ok(recorded > 0)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn parts(&self, staging_key: &str) -> MetaResult<Vec<PartRecord>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let rows: Vec<PartRow> = sqlx::query_as(
                    "SELECT part_index, part_id FROM blob_parts WHERE staging_key = $1 ORDER BY part_index",
                )
                .bind(staging_key)
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(rows.into_iter().map(PartRecord::from).collect())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn claim_import(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> MetaResult<Option<ImportTask>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async {
            let mut tx = self.begin().await?;
            // What the last holder fetched and did not commit is fetched again: progress starts from the
            // resume point.
            let sql = format!(
                "UPDATE import_tasks SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3, \
                   fetched_bytes = received_bytes \
                 WHERE blob_key = (SELECT t.blob_key FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key \
                   WHERE t.finished_at IS NULL AND t.next_attempt_at <= $3 \
                     AND (t.lease_until IS NULL OR t.lease_until <= $3) AND f.expires_at > $3 \
                   ORDER BY t.next_attempt_at LIMIT 1{}) \
                 RETURNING blob_key",
                self.engine.skip_locked("t")
            );
            let claimed: Option<String> = sqlx::query_scalar(&sql)
                .bind(owner)
                .bind(lease_until.as_micros())
                .bind(now.as_micros())
                .fetch_optional(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
            let Some(blob_key) = claimed else { return Ok(None) };
            sqlx::query("UPDATE files SET state = 'processing', updated_at = $1 WHERE blob_key = $2 AND state = 'pending'")
                .bind(now.as_micros())
                .bind(&blob_key)
                .execute(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key WHERE t.blob_key = $1"
            );
            let task: TaskRow = sqlx::query_as(&sql).bind(&blob_key).fetch_one(tx.conn()).await.map_err(|e| self.err(e))?;
            tx.end().await?;
            Ok(Some(task.into()))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn renew_import_lease(&self, blob_key: &str, owner: &str, lease_until: Timestamp) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let done = sqlx::query(
                    "UPDATE import_tasks SET lease_until = $1 \
             WHERE blob_key = $2 AND lease_owner = $3 AND finished_at IS NULL",
                )
                .bind(lease_until.as_micros())
                .bind(blob_key)
                .bind(owner)
                .execute(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn note_import_fetched(&self, blob_key: &str, owner: &str, fetched: u64) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let done = sqlx::query(
                    "UPDATE import_tasks SET fetched_bytes = $1 \
                     WHERE blob_key = $2 AND lease_owner = $3 AND finished_at IS NULL",
                )
                .bind(int(fetched))
                .bind(blob_key)
                .bind(owner)
                .execute(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn release_import(
        &self,
        blob_key: &str,
        owner: &str,
        next_attempt_at: Timestamp,
        why: &str,
        now: Timestamp,
    ) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let done = sqlx::query(
            "UPDATE import_tasks SET lease_owner = NULL, lease_until = NULL, next_attempt_at = $1, last_error = $2, \
               updated_at = $3 WHERE blob_key = $4 AND lease_owner = $5 AND finished_at IS NULL",
        )
        .bind(next_attempt_at.as_micros())
        .bind(why)
        .bind(now.as_micros())
        .bind(blob_key)
        .bind(owner)
        .execute(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn expired_files(&self, now: Timestamp, limit: u32) -> MetaResult<Vec<(ProjectId, String)>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT project_id, blob_key FROM files WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
                )
                .bind(now.as_micros())
                .bind(i64::from(limit))
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(rows.into_iter().map(|(project, key)| (ProjectId::from_stored(project), key)).collect())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn purge(&self, now: Timestamp, idempotency_cutoff: Timestamp) -> MetaResult<u64> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let sessions = sqlx::query("DELETE FROM upload_sessions WHERE expires_at <= $1 AND status <> 'active'")
                    .bind(now.as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                sqlx::query("DELETE FROM import_idempotency WHERE created_at <= $1")
                    .bind(idempotency_cutoff.as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                sqlx::query("DELETE FROM download_links WHERE expires_at <= $1")
                    .bind(now.as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(sessions.rows_affected())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_download_link(
        &self,
        token_hash: &str,
        project: &ProjectId,
        file: &FileId,
        expires_at: Timestamp,
    ) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query(
                    "INSERT INTO download_links (token_hash, project_id, file_id, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(project.as_str())
                .bind(file.as_str())
                .bind(expires_at.as_micros())
                .execute(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn download_link(&self, token_hash: &str, now: Timestamp) -> MetaResult<Option<(ProjectId, FileId)>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT project_id, file_id FROM download_links WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(now.as_micros())
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(row.map(|(project, file)| (ProjectId::from_stored(project), FileId::from_stored(file))))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn garbage(&self, limit: u32) -> MetaResult<Vec<Garbage>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let rows: Vec<GarbageRow> = sqlx::query_as(
                    "SELECT blob_key, kind, dest_key, upload_id FROM blob_garbage ORDER BY queued_at LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                rows.into_iter().map(Garbage::try_from).collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn garbage_done(&self, keys: &[&str]) -> MetaResult<()> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                if keys.is_empty() {
                    return Ok(());
                }
                let listed = numbered(1, keys.len());
                let mut tx = self.begin().await?;
                // A staging area that is gone takes its part records with it.
                for sql in [
                    format!("DELETE FROM blob_garbage WHERE blob_key IN ({listed})"),
                    format!("DELETE FROM blob_parts WHERE staging_key IN ({listed})"),
                ] {
                    let mut delete = sqlx::query(&sql);
                    for key in keys {
                        delete = delete.bind(*key);
                    }
                    delete.execute(tx.conn()).await.map_err(|e| self.err(e))?;
                }
                tx.end().await
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn live_staging_keys(&self) -> MetaResult<Vec<String>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                sqlx::query_scalar(
                    "SELECT staging_key FROM upload_sessions WHERE status = 'active' \
             UNION SELECT staging_key FROM import_tasks WHERE finished_at IS NULL",
                )
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn live_blob_keys(&self) -> MetaResult<Vec<String>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                sqlx::query_scalar("SELECT blob_key FROM files").fetch_all(&self.pool()).await.map_err(|e| self.err(e))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn usage(&self) -> MetaResult<Vec<ProjectReport>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let sql = format!("SELECT {USAGE_COLUMNS} FROM projects ORDER BY id");
                let rows: Vec<UsageRow> =
                    sqlx::query_as(&sql).fetch_all(&self.pool()).await.map_err(|e| self.err(e))?;
                Ok(rows
                    .iter()
                    .map(|row| ProjectReport { project: ProjectId::from_stored(row.id.clone()), usage: row.into() })
                    .collect())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn project_usage(&self, project: &ProjectId) -> MetaResult<Option<ProjectUsage>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql = format!("SELECT {USAGE_COLUMNS} FROM projects WHERE id = $1");
                let row: Option<UsageRow> = sqlx::query_as(&sql)
                    .bind(project.as_str())
                    .fetch_optional(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(row.as_ref().map(ProjectUsage::from))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn stored_files(&self, after: Option<&str>, limit: u32) -> MetaResult<Vec<StoredFile>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let rows: Vec<(String, i64, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT blob_key, size_bytes, sha256 FROM files WHERE state = 'ready' AND blob_key > $1 \
             ORDER BY blob_key LIMIT $2",
                )
                .bind(after.unwrap_or_default())
                .bind(i64::from(limit))
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                rows.into_iter()
                    .map(|(blob_key, size, sha256)| {
                        let sha256 = sha256
                            .and_then(|d| <[u8; 32]>::try_from(d).ok())
                            .ok_or_else(|| MetaError::corrupt("sha256 of a ready file", &blob_key))?;
                        Ok(StoredFile { blob_key, size: uint(size), sha256 })
                    })
                    .collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn unfinished_files(&self) -> MetaResult<u64> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM files WHERE state IN ('uploading', 'pending', 'processing')",
                )
                .fetch_one(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(uint(count))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn recompute_usage(&self) -> MetaResult<Vec<UsageRepair>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let mut tx = self.begin().await?;
                let sql = format!("SELECT {USAGE_COLUMNS} FROM projects ORDER BY id{}", self.engine.lock_rows(None));
                let before: Vec<UsageRow> = sqlx::query_as(&sql).fetch_all(tx.conn()).await.map_err(|e| self.err(e))?;
                tx.conn().execute(RECOUNT).await.map_err(|e| self.err(e))?;
                let sql = format!("SELECT {USAGE_COLUMNS} FROM projects ORDER BY id");
                let after: Vec<UsageRow> = sqlx::query_as(&sql).fetch_all(tx.conn()).await.map_err(|e| self.err(e))?;
                tx.end().await?;
                Ok(before
                    .iter()
                    .zip(&after)
                    .filter_map(|(b, a)| {
                        let (before, after) = (ProjectUsage::from(b), ProjectUsage::from(a));
                        (before != after).then(|| UsageRepair {
                            project: ProjectId::from_stored(b.id.clone()),
                            before,
                            after,
                        })
                    })
                    .collect())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn upstream_copy(&self, blob_key: &str, target: CopyTarget) -> MetaResult<Option<UpstreamCopy>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.copy_of(blob_key, target).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_upstream_copy(&self, copy: &UpstreamCopy) -> MetaResult<UpstreamCopy> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.insert_copy(copy).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn stale_upstream_copies(&self, now: Timestamp, limit: u32) -> MetaResult<Vec<UpstreamCopy>> {
        self.guard.bounded(Some(BULK_DEADLINE), async { self.stale_copies(now, limit).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_upstream_copy(&self, blob_key: &str, target: CopyTarget) -> MetaResult<()> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.delete_copy(blob_key, target).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn ping(&self) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("SELECT 1").execute(&self.pool()).await.map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn probe_write(&self, now: Timestamp) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO health_probe (id, checked_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                )
                .bind(now.as_micros())
                .execute(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
                tx.end().await
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn close(&self) {
        self.pool().close().await;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;

    /// The list's plan on a database without statistics (as filegate's always are): a range scan of the
    /// partial index, no sort. Fails if the query and the index stop matching.
    #[tokio::test]
    async fn both_list_queries_scan_the_index_without_open_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlMeta::open_sqlite(&dir.path().join("meta.db"), 1, true).await.unwrap();
        for after in [false, true] {
            let sql = format!("EXPLAIN QUERY PLAN {}", list_files_sql(&store.engine, after));
            let mut query = sqlx::query(&sql).bind("p").bind(0_i64);
            if after {
                query = query.bind(0_i64).bind("f");
            }
            let plan: Vec<String> = query
                .bind(100_i64)
                .fetch_all(&store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH f USING INDEX files_listed")),
                "after = {after}: {plan:?}"
            );
            assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort: {plan:?}");
        }
    }
}
