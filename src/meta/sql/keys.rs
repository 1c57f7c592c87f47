//! The `api_keys` table as operators see it: list, revoke, last use. Keys are found by their hash; the id
//! operators type is the hash's first [`KEY_ID_LEN`] hex digits.

use sqlx::FromRow;

use super::SqlMeta;
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{ApiKeyInfo, KEY_ID_LEN, MetaResult, key_id};

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
