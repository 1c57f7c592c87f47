//! Files: get, list, delete.

use async_trait::async_trait;

use super::SqliteMeta;
use super::{FILE_COLUMNS, FILE_FROM, file_from_row, remove_file};
use crate::domain::{FileId, FileRecord, ProjectId, Timestamp};
use crate::error::Result;
use crate::meta::{FileRepo, Garbage, ListCursor};

#[async_trait]
impl FileRepo for SqliteMeta {
    async fn get_file(&self, project: &ProjectId, id: &FileId) -> Result<Option<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM {FILE_FROM} WHERE f.project_id = ? AND f.id = ?");
        let row = sqlx::query(&sql).bind(project.as_str()).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn list_files(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM {FILE_FROM} \
             WHERE f.project_id = ? AND f.state <> 'uploading' AND f.expires_at > ? \
               AND (? IS NULL OR f.created_at < ? OR (f.created_at = ? AND f.id < ?)) \
             ORDER BY f.created_at DESC, f.id DESC LIMIT ?"
        );
        let (created, id) = after.map_or((None, None), |c| (Some(c.created_at.as_micros()), Some(c.id.as_str())));
        let rows = sqlx::query(&sql)
            .bind(project.as_str())
            .bind(now.as_micros())
            .bind(created)
            .bind(created)
            .bind(created)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn delete_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<(FileRecord, Vec<Garbage>)>> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM {FILE_FROM} \
             WHERE f.project_id = ? AND f.id = ? AND f.state <> 'uploading' AND f.expires_at > ?"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(project.as_str())
            .bind(id.as_str())
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let file = file_from_row(&row)?;
        let removed = remove_file(&mut tx, &file.blob_key, now).await?;
        tx.commit().await?;
        Ok(Some((file, removed.garbage)))
    }
}
