//! The work queue (`meta::queue`) on SQLite and PostgreSQL: one lease, written once, over each kind's table.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::{OPERATION_DEADLINE, SqlMeta};
use crate::domain::Timestamp;
use crate::meta::{Lease, MetaResult, Queue, WorkQueue};

/// Where a kind of work keeps its lease.
struct Table {
    name: &'static str,
    key: &'static str,
    /// Until when the lease holds.
    until: &'static str,
    /// What `until` holds when nobody does (a column declared `NOT NULL` holds 0).
    free: &'static str,
    /// When the work is next due, where the kind schedules retries.
    due: Option<&'static str>,
    /// Why the last holder gave the work up, where the kind records it.
    error: Option<&'static str>,
    /// When the row last changed, where the kind records it.
    touched: Option<&'static str>,
    /// Which rows are still work: a done row that stays (a finished import, a collected batch) is not.
    open: &'static str,
}

const fn table(queue: Queue) -> Table {
    match queue {
        Queue::Imports => Table {
            name: "import_tasks",
            key: "blob_key",
            until: "lease_until",
            free: "NULL",
            due: Some("next_attempt_at"),
            error: Some("last_error"),
            touched: Some("updated_at"),
            open: "finished_at IS NULL",
        },
        Queue::Deliveries => Table {
            name: "webhook_deliveries",
            key: "id",
            until: "lease_until",
            free: "NULL",
            due: Some("next_attempt_at"),
            error: Some("last_error"),
            touched: None,
            open: "1 = 1",
        },
        Queue::BatchCollections => Table {
            name: "batches",
            key: "id",
            until: "collecting_until",
            free: "0",
            due: None,
            error: None,
            touched: None,
            open: "output_file IS NULL",
        },
    }
}

/// Which rows a claim takes: the keys a subquery selects.
pub(super) enum Candidates<'a> {
    /// A subquery of at most one row. It is compared with `=`, which PostgreSQL evaluates once: with
    /// `IN`, a racing claim's recheck of the row would run its `SKIP LOCKED` again and match nothing.
    One(&'a str),
    /// A subquery of many rows.
    Many(&'a str),
}

/// The statement that claims the open, unleased rows of `queue` that `candidates` selects, raising each
/// one's fence and setting `also` (a kind's own bookkeeping, such as counting an attempt). Its
/// parameters: `$1` now, `$2` the owner, `$3` the lease's end; `candidates` may use `$1` and its own from
/// `$4`. It returns each claimed row's key and fence.
pub(super) fn claim_statement(queue: Queue, candidates: Candidates<'_>, also: &str) -> String {
    let t = table(queue);
    let (name, key, until, open) = (t.name, t.key, t.until, t.open);
    let chosen = match candidates {
        Candidates::One(query) => format!("= ({query})"),
        Candidates::Many(query) => format!("IN ({query})"),
    };
    format!(
        "UPDATE {name} SET lease_owner = $2, {until} = $3, lease_fence = lease_fence + 1{also} \
         WHERE {key} {chosen} AND ({until} IS NULL OR {until} <= $1) AND {open} \
         RETURNING {key}, lease_fence"
    )
}

/// The leases a [`claim_statement`] returned.
fn leases(queue: Queue, owner: &str, rows: Vec<(String, i64)>) -> Vec<Lease> {
    rows.into_iter().map(|(key, fence)| Lease { queue, key, owner: owner.to_owned(), fence }).collect()
}

/// `WHERE` for the rows a lease holds, with the key, owner and fence bound as `$n`, `$n+1`, `$n+2`.
pub(super) fn held(queue: Queue, n: usize) -> String {
    let t = table(queue);
    format!("{} = ${n} AND lease_owner = ${} AND lease_fence = ${} AND {}", t.key, n + 1, n + 2, t.open)
}

/// Whether `lease` holds, on a connection inside a transaction; with `lock`, the row stays locked.
pub(super) async fn holds_on(conn: &mut AnyConnection, lease: &Lease, lock: &str) -> Result<bool, sqlx::Error> {
    let sql = format!("SELECT 1 FROM {} WHERE {}{lock}", table(lease.queue).name, held(lease.queue, 1));
    let found: Option<i32> =
        sqlx::query_scalar(&sql).bind(&lease.key).bind(&lease.owner).bind(lease.fence).fetch_optional(conn).await?;
    Ok(found.is_some())
}

impl SqlMeta {
    /// Sets one column of the item `lease` holds, if it still holds it; `false` when it does not.
    pub(super) async fn set_while_held(&self, lease: &Lease, column: &str, value: i64) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql =
                    format!("UPDATE {} SET {column} = $1 WHERE {}", table(lease.queue).name, held(lease.queue, 2));
                let done = sqlx::query(&sql)
                    .bind(value)
                    .bind(&lease.key)
                    .bind(&lease.owner)
                    .bind(lease.fence)
                    .execute(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }
}

#[async_trait]
impl WorkQueue for SqlMeta {
    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn claim_item(
        &self,
        queue: Queue,
        key: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> MetaResult<Option<Lease>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let sql = claim_statement(queue, Candidates::One("SELECT $4"), "");
                let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
                    .bind(now.as_micros())
                    .bind(owner)
                    .bind(until.as_micros())
                    .bind(key)
                    .fetch_all(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(leases(queue, owner, rows).pop())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn renew(&self, lease: &Lease, until: Timestamp) -> MetaResult<bool> {
        self.set_while_held(lease, table(lease.queue).until, until.as_micros()).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn release(&self, lease: &Lease, due: Timestamp, why: &str, now: Timestamp) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let t = table(lease.queue);
                // The columns a kind has, each with the next parameter after the lease's three.
                let mut set = format!("lease_owner = NULL, {} = {}", t.until, t.free);
                let (due_column, error_column, touched) = (t.due, t.error, t.touched);
                for (n, column) in [due_column, error_column, touched].into_iter().flatten().enumerate() {
                    set += &format!(", {column} = ${}", 4 + n);
                }
                let sql = format!("UPDATE {} SET {set} WHERE {}", t.name, held(lease.queue, 1));
                let mut update = sqlx::query(&sql).bind(&lease.key).bind(&lease.owner).bind(lease.fence);
                if due_column.is_some() {
                    update = update.bind(due.as_micros());
                }
                if error_column.is_some() {
                    update = update.bind(why);
                }
                if touched.is_some() {
                    update = update.bind(now.as_micros());
                }
                let done = update.execute(&self.pool()).await.map_err(|e| self.err(e))?;
                Ok(done.rows_affected() == 1)
            })
            .await
    }
}
