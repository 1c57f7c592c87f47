//! Expiry, the garbage queue and the live keys reconciliation compares storage with.

use async_trait::async_trait;
use sqlx::Row as _;

use super::{SqliteMeta, corrupt, remove_file};
use crate::domain::Timestamp;
use crate::error::Result;
use crate::meta::{ExpiryReport, Garbage, GarbageKind, JanitorRepo};

#[async_trait]
impl JanitorRepo for SqliteMeta {
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
            files += u64::from(remove_file(&mut tx, key, now).await?.row);
        }
        let sessions =
            sqlx::query("DELETE FROM upload_sessions WHERE expires_at <= ?").bind(now_us).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM import_idempotency WHERE created_at <= ?")
            .bind(now_us - super::imports::IDEMPOTENCY_WINDOW_MICROS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ExpiryReport { files, sessions: sessions.rows_affected() })
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
        Ok(sqlx::query_scalar(
            "SELECT staging_key FROM upload_sessions WHERE status = 'active' \
             UNION SELECT staging_key FROM import_tasks WHERE finished_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn live_blob_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT blob_key FROM files").fetch_all(&self.pool).await?)
    }
}
