//! The `upstream_copies` table: copies of files made for a model upstream (`services::model::copies`).

use sqlx::FromRow;

use async_trait::async_trait;

use super::rows::int;
use super::{BULK_DEADLINE, OPERATION_DEADLINE, SqlMeta};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{CopyRecords, CopyTarget, MetaError, MetaResult, UpstreamCopy};

const COLUMNS: &str = "c.blob_key, c.target, c.project_id, c.uri, c.remote_name, c.created_at, c.expires_at";

#[derive(FromRow)]
struct CopyRow {
    blob_key: String,
    target: String,
    project_id: String,
    uri: String,
    remote_name: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<CopyRow> for UpstreamCopy {
    type Error = MetaError;

    fn try_from(row: CopyRow) -> MetaResult<Self> {
        Ok(Self {
            target: CopyTarget::parse(&row.target).ok_or_else(|| MetaError::corrupt("copy target", &row.target))?,
            blob_key: row.blob_key,
            project: ProjectId::from_stored(row.project_id),
            uri: row.uri,
            remote_name: row.remote_name,
            created_at: Timestamp::from_micros(row.created_at),
            expires_at: Timestamp::from_micros(row.expires_at),
        })
    }
}

impl SqlMeta {
    pub(super) async fn copy_of(&self, blob_key: &str, target: CopyTarget) -> MetaResult<Option<UpstreamCopy>> {
        let row: Option<CopyRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM upstream_copies c WHERE c.blob_key = $1 AND c.target = $2"))
                .bind(blob_key)
                .bind(target.as_str())
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
        row.map(UpstreamCopy::try_from).transpose()
    }

    /// `INSERT … ON CONFLICT DO NOTHING`, then the row that won: one statement each, so racing callers on
    /// either engine end up reading the same copy.
    pub(super) async fn insert_copy(&self, copy: &UpstreamCopy) -> MetaResult<UpstreamCopy> {
        sqlx::query(
            "INSERT INTO upstream_copies (blob_key, target, project_id, uri, remote_name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (blob_key, target) DO NOTHING",
        )
        .bind(&copy.blob_key)
        .bind(copy.target.as_str())
        .bind(copy.project.as_str())
        .bind(&copy.uri)
        .bind(copy.remote_name.as_deref())
        .bind(copy.created_at.as_micros())
        .bind(copy.expires_at.as_micros())
        .execute(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
        self.copy_of(&copy.blob_key, copy.target)
            .await?
            .ok_or_else(|| MetaError::Conflict(format!("the copy of {} was deleted as it was recorded", copy.blob_key)))
    }

    pub(super) async fn stale_copies(&self, now: Timestamp, limit: u32) -> MetaResult<Vec<UpstreamCopy>> {
        let rows: Vec<CopyRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM upstream_copies c \
             WHERE c.held_until <= $1 \
               AND (c.expires_at <= $1 OR NOT EXISTS (SELECT 1 FROM files f WHERE f.blob_key = c.blob_key)) \
             ORDER BY c.expires_at LIMIT $2"
        ))
        .bind(now.as_micros())
        .bind(int(u64::from(limit)))
        .fetch_all(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.into_iter().map(UpstreamCopy::try_from).collect()
    }

    /// Raises each copy's hold to `until` (never lowers it: several caches may hold one copy).
    pub(super) async fn hold_copies(&self, copies: &[(String, CopyTarget)], until: Timestamp) -> MetaResult<()> {
        for (blob_key, target) in copies {
            sqlx::query(
                "UPDATE upstream_copies SET held_until = $3 WHERE blob_key = $1 AND target = $2 AND held_until < $3",
            )
            .bind(blob_key)
            .bind(target.as_str())
            .bind(until.as_micros())
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub(super) async fn delete_copy(&self, blob_key: &str, target: CopyTarget) -> MetaResult<()> {
        sqlx::query("DELETE FROM upstream_copies WHERE blob_key = $1 AND target = $2")
            .bind(blob_key)
            .bind(target.as_str())
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl CopyRecords for SqlMeta {
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
}
