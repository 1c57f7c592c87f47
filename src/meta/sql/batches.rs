//! The `batches` table: batch jobs submitted through filegate (`services::batches`).

use sqlx::FromRow;

use super::SqlMeta;
use super::rows::int;
use super::tx::SqlTx;
use crate::domain::{FileId, ProjectId, Timestamp};
use crate::meta::{BatchCursor, BatchRecord, MetaResult, Unfinished, WriteTx as _};

const COLUMNS: &str = "id, project_id, upstream_name, model, display_name, state, input_file, output_file, error, \
     created_at, updated_at, end_time";

#[derive(FromRow)]
struct BatchRow {
    id: String,
    project_id: String,
    upstream_name: String,
    model: String,
    display_name: Option<String>,
    state: String,
    input_file: Option<String>,
    output_file: Option<String>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    end_time: Option<i64>,
}

impl From<BatchRow> for BatchRecord {
    fn from(row: BatchRow) -> Self {
        Self {
            id: row.id,
            project: ProjectId::from_stored(row.project_id),
            upstream_name: row.upstream_name,
            model: row.model,
            display_name: row.display_name,
            state: row.state,
            input_file: row.input_file.map(FileId::from_stored),
            output_file: row.output_file.map(FileId::from_stored),
            error: row.error,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            end_time: row.end_time.map(Timestamp::from_micros),
        }
    }
}

/// `… WHERE` the batch is unfinished: its state is none of `ended` (bound from `$first`), and not
/// `succeeded` (bound at `$first + ended.len()`) with its results collected.
fn unfinished_clause(unfinished: Unfinished<'_>, first: usize) -> String {
    let ended = unfinished.ended.len().max(1);
    format!(
        "state NOT IN ({}) AND NOT (state = ${} AND output_file IS NOT NULL)",
        super::tx::numbered(first, ended),
        first + ended
    )
}

/// Binds what [`unfinished_clause`] names, in its order.
fn bind_unfinished<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    unfinished: Unfinished<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    for state in unfinished.ended {
        query = query.bind(*state);
    }
    if unfinished.ended.is_empty() {
        query = query.bind("");
    }
    query.bind(unfinished.succeeded)
}

impl SqlMeta {
    pub(super) async fn count_unfinished(
        &self,
        conn: &mut sqlx::AnyConnection,
        project: &ProjectId,
        unfinished: Unfinished<'_>,
    ) -> MetaResult<u64> {
        let sql =
            format!("SELECT COUNT(*) FROM batches WHERE project_id = $1 AND {}", unfinished_clause(unfinished, 2));
        let query = sqlx::query_as::<_, (i64,)>(&sql).bind(project.as_str());
        let (count,) = bind_unfinished(query, unfinished).fetch_one(conn).await.map_err(|e| self.err(e))?;
        Ok(super::rows::uint(count))
    }

    pub(super) async fn insert_batch(
        &self,
        batch: &BatchRecord,
        unfinished: Unfinished<'_>,
        max_unfinished: u64,
    ) -> MetaResult<bool> {
        let mut tx = self.begin().await?;
        // Counted under the project's lock, so that racing creates cannot pass the limit together.
        tx.lock_project(&batch.project).await?;
        if self.count_unfinished(tx.conn(), &batch.project, unfinished).await? >= max_unfinished {
            return Ok(false);
        }
        sqlx::query(&format!(
            "INSERT INTO batches ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&batch.id)
        .bind(batch.project.as_str())
        .bind(&batch.upstream_name)
        .bind(&batch.model)
        .bind(batch.display_name.as_deref())
        .bind(&batch.state)
        .bind(batch.input_file.as_ref().map(FileId::as_str))
        .bind(batch.output_file.as_ref().map(FileId::as_str))
        .bind(batch.error.as_deref())
        .bind(batch.created_at.as_micros())
        .bind(batch.updated_at.as_micros())
        .bind(batch.end_time.map(Timestamp::as_micros))
        .execute(tx.conn())
        .await
        .map_err(|e| self.err(e))?;
        tx.end().await?;
        Ok(true)
    }

    pub(super) async fn batch_of(&self, project: &ProjectId, id: &str) -> MetaResult<Option<BatchRecord>> {
        let row: Option<BatchRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM batches WHERE project_id = $1 AND id = $2"))
                .bind(project.as_str())
                .bind(id)
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(row.map(BatchRecord::from))
    }

    pub(super) async fn list_batches(
        &self,
        project: &ProjectId,
        after: Option<&str>,
        limit: u32,
    ) -> MetaResult<Vec<BatchRecord>> {
        let rows: Vec<BatchRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM batches WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(project.as_str())
        .bind(after.unwrap_or(""))
        .bind(int(u64::from(limit)))
        .fetch_all(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(BatchRecord::from).collect())
    }

    pub(super) async fn unfinished(
        &self,
        unfinished: Unfinished<'_>,
        after: Option<&BatchCursor>,
        limit: u32,
    ) -> MetaResult<Vec<BatchRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batches WHERE (created_at, id) > ($1, $2) AND {} ORDER BY created_at, id LIMIT $3",
            unfinished_clause(unfinished, 4)
        );
        let (created, id) = after.map_or((i64::MIN, ""), |(created, id)| (created.as_micros(), id.as_str()));
        let query = sqlx::query_as::<_, BatchRow>(&sql).bind(created).bind(id).bind(int(u64::from(limit)));
        let rows = bind_unfinished(query, unfinished).fetch_all(&self.pool()).await.map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(BatchRecord::from).collect())
    }

    pub(super) async fn delete_batch_row(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
        let done = sqlx::query("DELETE FROM batches WHERE project_id = $1 AND id = $2")
            .bind(project.as_str())
            .bind(id)
            .execute(&self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqlTx {
    /// Writes what was learnt of a batch if its row is still as `expected_state` and `was_collected` say
    /// (another node may have recorded the same change first): `false` then.
    pub(super) async fn update_batch_row_from(
        &mut self,
        batch: &BatchRecord,
        expected_state: &str,
        was_collected: bool,
    ) -> MetaResult<bool> {
        let done = sqlx::query(
            "UPDATE batches SET state = $3, output_file = $4, error = $5, updated_at = $6, end_time = $7 \
             WHERE project_id = $1 AND id = $2 AND state = $8 \
               AND (CASE WHEN output_file IS NULL THEN 0 ELSE 1 END) = $9",
        )
        .bind(batch.project.as_str())
        .bind(&batch.id)
        .bind(&batch.state)
        .bind(batch.output_file.as_ref().map(FileId::as_str))
        .bind(batch.error.as_deref())
        .bind(batch.updated_at.as_micros())
        .bind(batch.end_time.map(Timestamp::as_micros))
        .bind(expected_state)
        .bind(i64::from(was_collected))
        .execute(self.conn())
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }
}
