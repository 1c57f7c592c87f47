//! UploadRecords on SQLite and PostgreSQL.

use async_trait::async_trait;

use super::rows::{ChunkRow, PartRow, SESSION_COLUMNS, SESSION_FROM, SessionRow, int};
use super::tx::{insert_parts, queue_garbage};
use super::{OPERATION_DEADLINE, SqlMeta};
use crate::domain::Timestamp;
use crate::meta::{ChunkRecord, Garbage, MetaError, MetaResult, PartRecord, UploadRecords, UploadSession};

#[async_trait]
impl UploadRecords for SqlMeta {
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
}
