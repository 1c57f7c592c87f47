//! The store's own operations: reads, single-statement compare-and-sets, the import claim, the janitor's
//! queries and the counters' repair.

use async_trait::async_trait;
use sqlx::Executor as _;

use super::rows::{FILE_COLUMNS, FILE_JOIN, FileRow, GarbageRow, USAGE_COLUMNS, UsageRow, uint};
use super::tx::numbered;
use super::{BULK_DEADLINE, Engine, OPERATION_DEADLINE, SqlMeta};
use crate::domain::{FileId, FileRecord, ProjectId, StorageKey, Timestamp};
use crate::meta::{
    FileRecords, Garbage, ListCursor, MetaError, MetaResult, MetaStore, ProjectReport, ProjectUsage, StoredFile,
    UpkeepRecords, UsageRepair, WriteTx,
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

#[async_trait]
impl FileRecords for SqlMeta {
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
}

#[async_trait]
impl UpkeepRecords for SqlMeta {
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
                        Ok(StoredFile { blob_key: StorageKey::from_stored(blob_key), size: uint(size), sha256 })
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
