//! Resumable upload sessions and their chunks.

use async_trait::async_trait;
use sqlx::Row as _;

use super::{
    FILE_COLUMNS, FILE_FROM, SESSION_COLUMNS, corrupt, file_from_row, project_quota, remove_file, session_from_row,
};
use super::{SqliteMeta, int, queue_garbage, uint};
use crate::domain::{FileRecord, Timestamp};
use crate::error::{Error, Result};
use crate::meta::{ChunkRecord, Garbage, GarbageKind, NewSession, UploadRepo, UploadSession};

#[async_trait]
impl UploadRepo for SqliteMeta {
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
        queue_garbage(&mut tx, &staging_key, GarbageKind::Staging, now).await?;
        let sql = format!("SELECT {FILE_COLUMNS} FROM {FILE_FROM} WHERE f.blob_key = ?");
        let file = file_from_row(&sqlx::query(&sql).bind(&blob_key).fetch_one(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(Some(file))
    }

    async fn cancel_upload(&self, token_hash: &str, now: Timestamp) -> Result<Option<Vec<Garbage>>> {
        let mut tx = self.write_tx().await?;
        let blob_key: Option<String> =
            sqlx::query_scalar("SELECT blob_key FROM upload_sessions WHERE token_hash = ? AND status = 'active'")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(blob_key) = blob_key else { return Ok(None) };
        let removed = remove_file(&mut tx, &blob_key, now).await?;
        tx.commit().await?;
        Ok(Some(removed.garbage))
    }
}
