//! The `api_keys` table as operators see it: list, revoke, last use. Keys are found by their hash; the id
//! operators type is the hash's first [`KEY_ID_LEN`] hex digits.

use sqlx::FromRow;

use async_trait::async_trait;

use super::rows::uint;
use super::{OPERATION_DEADLINE, SqlMeta};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{ApiKeyInfo, KEY_ID_LEN, KeyRecords, MetaResult, key_id};

const COLUMNS: &str = "key_hash, project_id, label, created_at, last_used_at, revoked_at";

#[derive(FromRow)]
struct KeyRow {
    key_hash: String,
    project_id: String,
    label: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<KeyRow> for ApiKeyInfo {
    fn from(row: KeyRow) -> Self {
        Self {
            id: key_id(&row.key_hash),
            project: ProjectId::from_stored(row.project_id),
            label: row.label,
            created_at: Timestamp::from_micros(row.created_at),
            last_used_at: row.last_used_at.map(Timestamp::from_micros),
            revoked_at: row.revoked_at.map(Timestamp::from_micros),
        }
    }
}

/// `substr` is the same function on both engines; an id of the wrong length or alphabet matches nothing.
fn id_pattern(id: &str) -> Option<String> {
    (id.len() == KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

impl SqlMeta {
    pub(super) async fn keys(&self, project: Option<&ProjectId>) -> MetaResult<Vec<ApiKeyInfo>> {
        let sql =
            format!("SELECT {COLUMNS} FROM api_keys WHERE $1 IS NULL OR project_id = $1 ORDER BY created_at, key_hash");
        let rows: Vec<KeyRow> = sqlx::query_as(&sql)
            .bind(project.map(ProjectId::as_str))
            .fetch_all(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(ApiKeyInfo::from).collect())
    }

    pub(super) async fn revoke_key(&self, id: &str, now: Timestamp) -> MetaResult<Option<ApiKeyInfo>> {
        let Some(id) = id_pattern(id) else { return Ok(None) };
        sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE substr(key_hash, 1, {KEY_ID_LEN}) = $1"
        ))
        .bind(&id)
        .bind(now.as_micros())
        .execute(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let row: Option<KeyRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_keys WHERE substr(key_hash, 1, {KEY_ID_LEN}) = $1"))
                .bind(&id)
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(row.map(ApiKeyInfo::from))
    }

    pub(super) async fn touch_key(&self, key_hash: &str, now: Timestamp) -> MetaResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1")
            .bind(key_hash)
            .bind(now.as_micros())
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl KeyRecords for SqlMeta {
    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn ensure_project(&self, project: &ProjectId) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("INSERT INTO projects (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(project.as_str())
                    .bind(Timestamp::now().as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                sqlx::query("INSERT INTO api_keys (key_hash, project_id, label, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(key_hash)
                    .bind(project.as_str())
                    .bind(label)
                    .bind(Timestamp::now().as_micros())
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn project_for_key(&self, key_hash: &str) -> MetaResult<Option<ProjectId>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let project: Option<String> =
                    sqlx::query_scalar("SELECT project_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                        .bind(key_hash)
                        .fetch_optional(&self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                Ok(project.map(ProjectId::from_stored))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn count_api_keys(&self) -> MetaResult<u64> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
                    .fetch_one(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(uint(count))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn list_api_keys(&self, project: Option<&ProjectId>) -> MetaResult<Vec<ApiKeyInfo>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.keys(project).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> MetaResult<Option<ApiKeyInfo>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.revoke_key(id, now).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn key_used(&self, key_hash: &str, now: Timestamp) -> MetaResult<()> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.touch_key(key_hash, now).await }).await
    }
}
