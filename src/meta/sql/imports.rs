//! ImportRecords on SQLite and PostgreSQL.

use async_trait::async_trait;

use super::rows::{TASK_COLUMNS, TaskRow, int};
use super::{OPERATION_DEADLINE, SqlMeta};
use crate::domain::Timestamp;
use crate::meta::{ImportRecords, ImportTask, MetaResult};

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
}
