//! ImportRecords on SQLite and PostgreSQL: the import queue's own claim, over the work queue's lease.

use async_trait::async_trait;

use super::rows::{TASK_COLUMNS, TaskRow, int};
use super::{OPERATION_DEADLINE, SqlMeta, queue};
use crate::domain::Timestamp;
use crate::meta::{ImportRecords, ImportTask, Lease, MetaResult, Queue};

#[async_trait]
impl ImportRecords for SqlMeta {
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
            let candidates = format!(
                "SELECT t.blob_key FROM import_tasks t JOIN files f ON f.blob_key = t.blob_key \
                 WHERE t.finished_at IS NULL AND t.next_attempt_at <= $1 \
                   AND (t.lease_until IS NULL OR t.lease_until <= $1) AND f.expires_at > $1 \
                 ORDER BY t.next_attempt_at LIMIT 1{}",
                self.engine.skip_locked("t")
            );
            let also = ", attempts = attempts + 1, updated_at = $1, fetched_bytes = received_bytes";
            let sql = queue::claim_statement(Queue::Imports, queue::Candidates::One(&candidates), also);
            let claimed: Option<(String, i64)> = sqlx::query_as(&sql)
                .bind(now.as_micros())
                .bind(owner)
                .bind(lease_until.as_micros())
                .fetch_optional(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
            let claimed = claimed.map(|(blob_key, _)| blob_key);
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
    async fn note_import_fetched(&self, lease: &Lease, fetched: u64) -> MetaResult<bool> {
        self.set_while_held(lease, "fetched_bytes", int(fetched)).await
    }
}
