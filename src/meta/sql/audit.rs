//! What `filegate fsck` reads and repairs (`meta::audit`). Lists of keys come in pages the caller sizes
//! (a few hundred), so each statement is small and a million files never sit in memory.

use async_trait::async_trait;
use sqlx::FromRow;

use super::rows::uint;
use super::tx::numbered;
use super::{BULK_DEADLINE, SqlMeta};
use crate::domain::{ProjectId, Staging, Timestamp};
use crate::meta::{
    AuditRecords, LeaseKind, LeftoverParts, MetaResult, ProjectUsage, StagedBytes, StaleLease, UsageRepair,
};

/// Whether someone owns the staging area `column` names: an active session, a running import, or the
/// garbage queue.
fn owned_staging(column: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM upload_sessions s WHERE s.staging_key = {column} AND s.status = 'active') \
         OR EXISTS (SELECT 1 FROM import_tasks t WHERE t.staging_key = {column} AND t.finished_at IS NULL) \
         OR EXISTS (SELECT 1 FROM blob_garbage g WHERE g.blob_key = {column})"
    )
}

#[derive(FromRow)]
struct DriftRow {
    id: String,
    used_bytes: i64,
    file_count: i64,
    open_uploads: i64,
    active_imports: i64,
    quota_bytes: Option<i64>,
    rows_bytes: i64,
    rows_files: i64,
    rows_uploads: i64,
    rows_imports: i64,
}

impl SqlMeta {
    /// Runs `sql` (with `$1…$n` for `values`) and returns its first column.
    async fn strings_of(&self, sql: &str, values: &[String]) -> MetaResult<Vec<String>> {
        let mut query = sqlx::query_scalar(sql);
        for value in values {
            query = query.bind(value);
        }
        query.fetch_all(&self.pool()).await.map_err(|e| self.err(e))
    }
}

#[async_trait]
impl AuditRecords for SqlMeta {
    async fn known_objects(&self, keys: &[String]) -> MetaResult<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listed = numbered(1, keys.len());
        let sql = format!(
            "SELECT blob_key FROM files WHERE blob_key IN ({listed}) \
             UNION SELECT blob_key FROM blob_garbage WHERE blob_key IN ({listed})"
        );
        self.guard.bounded(Some(BULK_DEADLINE), self.strings_of(&sql, keys)).await
    }

    async fn owned_staging(&self, staging_keys: &[String]) -> MetaResult<Vec<StagedBytes>> {
        if staging_keys.is_empty() {
            return Ok(Vec::new());
        }
        let listed = numbered(1, staging_keys.len());
        let sql = format!(
            "SELECT staging_key, blob_key, received_bytes, upload_id FROM upload_sessions \
               WHERE staging_key IN ({listed}) AND status = 'active' \
             UNION ALL SELECT staging_key, blob_key, received_bytes, upload_id FROM import_tasks \
               WHERE staging_key IN ({listed}) AND finished_at IS NULL"
        );
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let mut query = sqlx::query_as::<_, (String, String, i64, Option<String>)>(&sql);
                for key in staging_keys {
                    query = query.bind(key);
                }
                let rows = query.fetch_all(&self.pool()).await.map_err(|e| self.err(e))?;
                Ok(rows
                    .into_iter()
                    .map(|(key, dest, received, upload_id)| StagedBytes {
                        staging: Staging { key, dest, upload_id },
                        received: uint(received),
                    })
                    .collect())
            })
            .await
    }

    async fn known_upload_ids(&self, upload_ids: &[String]) -> MetaResult<Vec<String>> {
        if upload_ids.is_empty() {
            return Ok(Vec::new());
        }
        let listed = numbered(1, upload_ids.len());
        let sql = format!(
            "SELECT upload_id FROM upload_sessions WHERE upload_id IN ({listed}) AND status = 'active' \
             UNION SELECT upload_id FROM import_tasks WHERE upload_id IN ({listed}) AND finished_at IS NULL \
             UNION SELECT upload_id FROM blob_garbage WHERE upload_id IN ({listed})"
        );
        self.guard.bounded(Some(BULK_DEADLINE), self.strings_of(&sql, upload_ids)).await
    }

    async fn usage_drift(&self) -> MetaResult<Vec<UsageRepair>> {
        // One statement: the counters and the rows they count come from one snapshot, on both engines.
        let sql = "SELECT p.id, p.used_bytes, p.file_count, p.open_uploads, p.active_imports, p.quota_bytes, \
             CAST((SELECT COALESCE(SUM(charged_bytes), 0) FROM files WHERE project_id = p.id) AS BIGINT) AS rows_bytes, \
             (SELECT COUNT(*) FROM files WHERE project_id = p.id) AS rows_files, \
             (SELECT COUNT(*) FROM upload_sessions WHERE project_id = p.id AND status = 'active') AS rows_uploads, \
             (SELECT COUNT(*) FROM import_tasks WHERE project_id = p.id AND finished_at IS NULL) AS rows_imports \
             FROM projects p ORDER BY p.id";
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let rows: Vec<DriftRow> = sqlx::query_as(sql).fetch_all(&self.pool()).await.map_err(|e| self.err(e))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|row| {
                        let quota_bytes = row.quota_bytes.map(uint);
                        let before = ProjectUsage {
                            used_bytes: uint(row.used_bytes),
                            files: uint(row.file_count),
                            open_uploads: uint(row.open_uploads),
                            active_imports: uint(row.active_imports),
                            quota_bytes,
                        };
                        let after = ProjectUsage {
                            used_bytes: uint(row.rows_bytes),
                            files: uint(row.rows_files),
                            open_uploads: uint(row.rows_uploads),
                            active_imports: uint(row.rows_imports),
                            quota_bytes,
                        };
                        (before != after).then(|| UsageRepair {
                            project: ProjectId::from_stored(row.id),
                            before,
                            after,
                        })
                    })
                    .collect())
            })
            .await
    }

    async fn stale_leases(&self, cutoff: Timestamp, limit: u32) -> MetaResult<Vec<StaleLease>> {
        let sql = "SELECT 'upload', project_id, file_id, writer, writer_until FROM upload_sessions \
               WHERE status = 'active' AND writer IS NOT NULL AND writer_until < $1 \
             UNION ALL SELECT 'import', project_id, file_id, lease_owner, lease_until FROM import_tasks \
               WHERE finished_at IS NULL AND lease_owner IS NOT NULL AND lease_until < $1 \
             LIMIT $2";
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(sql)
                    .bind(cutoff.as_micros())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(rows
                    .into_iter()
                    .map(|(kind, project, file_id, owner, until)| StaleLease {
                        kind: if kind == "upload" { LeaseKind::UploadWriter } else { LeaseKind::Import },
                        project,
                        file_id,
                        owner,
                        until: Timestamp::from_micros(until),
                    })
                    .collect())
            })
            .await
    }

    async fn release_stale_leases(&self, cutoff: Timestamp) -> MetaResult<u64> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let mut released = 0;
                // The conditions are those of the listing: a holder that renews right now keeps its lease.
                for sql in [
                    "UPDATE upload_sessions SET writer = NULL, writer_until = NULL \
                     WHERE status = 'active' AND writer IS NOT NULL AND writer_until < $1",
                    "UPDATE import_tasks SET lease_owner = NULL, lease_until = NULL \
                     WHERE finished_at IS NULL AND lease_owner IS NOT NULL AND lease_until < $1",
                ] {
                    let done = sqlx::query(sql)
                        .bind(cutoff.as_micros())
                        .execute(&self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                    released += done.rows_affected();
                }
                Ok(released)
            })
            .await
    }

    async fn leftover_parts(&self, after: Option<&str>, limit: u32) -> MetaResult<Vec<LeftoverParts>> {
        let sql = format!(
            "SELECT p.staging_key, COUNT(*) FROM blob_parts p WHERE p.staging_key > $1 AND NOT ({}) \
             GROUP BY p.staging_key ORDER BY p.staging_key LIMIT $2",
            owned_staging("p.staging_key")
        );
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
                    .bind(after.unwrap_or_default())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(rows
                    .into_iter()
                    .map(|(staging_key, parts)| LeftoverParts { staging_key, parts: uint(parts) })
                    .collect())
            })
            .await
    }

    async fn delete_leftover_parts(&self, staging_keys: &[String]) -> MetaResult<u64> {
        if staging_keys.is_empty() {
            return Ok(0);
        }
        let listed = numbered(1, staging_keys.len());
        let sql = format!(
            "DELETE FROM blob_parts WHERE staging_key IN ({listed}) AND NOT ({})",
            owned_staging("blob_parts.staging_key")
        );
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let mut delete = sqlx::query(&sql);
                for key in staging_keys {
                    delete = delete.bind(key);
                }
                Ok(delete.execute(&self.pool()).await.map_err(|e| self.err(e))?.rows_affected())
            })
            .await
    }

    async fn old_garbage(&self, before: Timestamp) -> MetaResult<u64> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blob_garbage WHERE queued_at < $1")
                    .bind(before.as_micros())
                    .fetch_one(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(uint(count))
            })
            .await
    }
}
