//! The `cached_contents` table: which project owns each context cache made through filegate
//! (`services::model::caches`).

use sqlx::FromRow;

use super::SqlMeta;
use super::rows::int;
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{CachedContent, CopyTarget, MetaError, MetaResult};

const COLUMNS: &str = "id, project_id, upstream_name, model, view, copies, created_at, expires_at";

#[derive(FromRow)]
struct CacheRow {
    id: String,
    project_id: String,
    upstream_name: String,
    model: String,
    view: String,
    copies: String,
    created_at: i64,
    expires_at: i64,
}

/// The copies a cache holds, stored as JSON `[[blob_key, target], …]`.
fn copies_json(copies: &[(String, CopyTarget)]) -> String {
    let pairs: Vec<[&str; 2]> = copies.iter().map(|(key, target)| [key.as_str(), target.as_str()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

impl TryFrom<CacheRow> for CachedContent {
    type Error = MetaError;

    fn try_from(row: CacheRow) -> MetaResult<Self> {
        let pairs: Vec<(String, String)> =
            serde_json::from_str(&row.copies).map_err(|_| MetaError::corrupt("cache copies", &row.copies))?;
        let copies = pairs
            .into_iter()
            .map(|(key, target)| match CopyTarget::parse(&target) {
                Some(target) => Ok((key, target)),
                None => Err(MetaError::corrupt("copy target", &target)),
            })
            .collect::<MetaResult<_>>()?;
        Ok(Self {
            id: row.id,
            project: ProjectId::from_stored(row.project_id),
            upstream_name: row.upstream_name,
            model: row.model,
            view: row.view,
            copies,
            created_at: Timestamp::from_micros(row.created_at),
            expires_at: Timestamp::from_micros(row.expires_at),
        })
    }
}

impl SqlMeta {
    pub(super) async fn insert_cache(&self, cache: &CachedContent) -> MetaResult<()> {
        sqlx::query(&format!("INSERT INTO cached_contents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(&cache.id)
            .bind(cache.project.as_str())
            .bind(&cache.upstream_name)
            .bind(&cache.model)
            .bind(&cache.view)
            .bind(copies_json(&cache.copies))
            .bind(cache.created_at.as_micros())
            .bind(cache.expires_at.as_micros())
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) async fn cache_of(&self, project: &ProjectId, id: &str) -> MetaResult<Option<CachedContent>> {
        let row: Option<CacheRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM cached_contents WHERE project_id = $1 AND id = $2"))
                .bind(project.as_str())
                .bind(id)
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
        row.map(CachedContent::try_from).transpose()
    }

    pub(super) async fn list_caches(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> MetaResult<Vec<CachedContent>> {
        let rows: Vec<CacheRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM cached_contents WHERE project_id = $1 AND expires_at > $2 AND id > $3 \
             ORDER BY id LIMIT $4"
        ))
        .bind(project.as_str())
        .bind(now.as_micros())
        .bind(after.unwrap_or(""))
        .bind(int(u64::from(limit)))
        .fetch_all(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.into_iter().map(CachedContent::try_from).collect()
    }

    pub(super) async fn update_cache(
        &self,
        project: &ProjectId,
        id: &str,
        view: &str,
        expires_at: Timestamp,
    ) -> MetaResult<bool> {
        let done =
            sqlx::query("UPDATE cached_contents SET view = $3, expires_at = $4 WHERE project_id = $1 AND id = $2")
                .bind(project.as_str())
                .bind(id)
                .bind(view)
                .bind(expires_at.as_micros())
                .execute(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn delete_cache(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
        let done = sqlx::query("DELETE FROM cached_contents WHERE project_id = $1 AND id = $2")
            .bind(project.as_str())
            .bind(id)
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn delete_expired_caches(&self, now: Timestamp) -> MetaResult<u64> {
        let done = sqlx::query("DELETE FROM cached_contents WHERE expires_at <= $1")
            .bind(now.as_micros())
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }
}
