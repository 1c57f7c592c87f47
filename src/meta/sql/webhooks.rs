//! The webhook tables (`meta::webhooks`): `webhooks`, `project_signing_secrets` and the outbox,
//! `webhook_deliveries`.

use async_trait::async_trait;
use sqlx::{AnyConnection, FromRow};

use super::rows::uint;
use super::tx::{SqlTx, numbered};
use super::{BULK_DEADLINE, OPERATION_DEADLINE, SqlMeta, queue};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::WriteTx as _;
use crate::meta::{
    Delivery, DeliveryBacklog, DeliveryOutcome, Lease, MetaError, MetaResult, NewDelivery, Queue, Settled,
    SigningSecrets, Subscriber, Webhook, WebhookRecords, WebhookState,
};

const COLUMNS: &str = "id, project_id, uri, events, state, secret, previous_secret, previous_until, older_secrets, created_at, updated_at";

#[derive(FromRow)]
struct WebhookRow {
    id: String,
    project_id: String,
    uri: String,
    events: String,
    state: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until: Option<i64>,
    older_secrets: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// Secrets as the row keeps them: the newest replaced one in `previous_secret` and `previous_until` (as the
/// previous release reads them), older ones still live in `older_secrets` as JSON `[[secret, until], …]`.
fn secrets(current: String, previous: Option<String>, until: Option<i64>, older: Option<&str>) -> SigningSecrets {
    let older: Vec<(String, i64)> = older.and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default();
    let previous = previous
        .zip(until)
        .into_iter()
        .chain(older)
        .map(|(secret, until)| (secret, Timestamp::from_micros(until)))
        .collect();
    SigningSecrets { current, previous }
}

/// `(previous_secret, previous_until, older_secrets)` of `secrets`.
fn stored(secrets: &SigningSecrets) -> (Option<&str>, Option<i64>, Option<String>) {
    let newest = secrets.previous.first();
    let older: Vec<(&str, i64)> =
        secrets.previous.iter().skip(1).map(|(secret, until)| (secret.as_str(), until.as_micros())).collect();
    // A tuple is a JSON array: `[[secret, until], …]`.
    let older = (!older.is_empty()).then(|| serde_json::to_string(&older).expect("strings and numbers serialize"));
    (newest.map(|(s, _)| s.as_str()), newest.map(|(_, until)| until.as_micros()), older)
}

fn events(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = MetaError;

    fn try_from(row: WebhookRow) -> MetaResult<Self> {
        Ok(Self {
            state: WebhookState::parse(&row.state).ok_or_else(|| MetaError::corrupt("webhook state", &row.state))?,
            id: row.id,
            project: ProjectId::from_stored(row.project_id),
            uri: row.uri,
            events: events(&row.events),
            secrets: secrets(row.secret, row.previous_secret, row.previous_until, row.older_secrets.as_deref()),
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
        })
    }
}

/// A claimed delivery joined with its webhook (if registered) and its project's secret.
#[derive(FromRow)]
struct DeliveryRow {
    id: String,
    project_id: String,
    webhook_id: Option<String>,
    uri: Option<String>,
    event_type: String,
    event: String,
    created_at: i64,
    attempts: i64,
    lease_owner: Option<String>,
    lease_fence: i64,
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_until: Option<i64>,
    older_secrets: Option<String>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        let lease = Lease {
            queue: Queue::Deliveries,
            key: row.id.clone(),
            owner: row.lease_owner.unwrap_or_default(),
            fence: row.lease_fence,
        };
        Self {
            id: row.id,
            lease,
            project: ProjectId::from_stored(row.project_id),
            webhook_id: row.webhook_id,
            uri: row.uri.unwrap_or_default(),
            event_type: row.event_type,
            event: row.event,
            created_at: Timestamp::from_micros(row.created_at),
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            secrets: row
                .secret
                .map(|current| secrets(current, row.previous_secret, row.previous_until, row.older_secrets.as_deref())),
        }
    }
}

/// Due at `$1`: its time has come and nobody holds its lease.
const DUE: &str = "d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1)";

/// A registered webhook's URI and secrets, or else the row's own URI and the project's secrets.
const DELIVERY_SELECT: &str = "SELECT d.id, d.project_id, d.webhook_id, COALESCE(w.uri, d.uri) AS uri, d.event_type, \
       d.event, d.created_at, d.attempts, d.lease_owner, d.lease_fence, COALESCE(w.secret, p.secret) AS secret, \
       CASE WHEN w.id IS NULL THEN p.previous_secret ELSE w.previous_secret END AS previous_secret, \
       CASE WHEN w.id IS NULL THEN p.previous_until ELSE w.previous_until END AS previous_until, \
       CASE WHEN w.id IS NULL THEN p.older_secrets ELSE w.older_secrets END AS older_secrets \
     FROM webhook_deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id \
       LEFT JOIN project_signing_secrets p ON p.project_id = d.project_id";

impl SqlTx {
    pub(super) async fn subscribers(&mut self, project: &ProjectId) -> MetaResult<Vec<Subscriber>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, events FROM webhooks WHERE project_id = $1 AND state = 'enabled' ORDER BY id")
                .bind(project.as_str())
                .fetch_all(self.conn())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(|(webhook_id, stored)| Subscriber { webhook_id, events: events(&stored) }).collect())
    }

    pub(super) async fn webhook_configs(&mut self, blob_keys: &[String]) -> MetaResult<Vec<(String, String)>> {
        let mut found = Vec::new();
        for keys in blob_keys.chunks(500) {
            let sql = format!(
                "SELECT blob_key, webhook_config FROM files WHERE blob_key IN ({}) AND webhook_config IS NOT NULL",
                numbered(1, keys.len())
            );
            let mut select = sqlx::query_as::<_, (String, String)>(&sql);
            for key in keys {
                select = select.bind(key);
            }
            found.extend(select.fetch_all(self.conn()).await.map_err(|e| self.err(e))?);
        }
        Ok(found)
    }

    pub(super) async fn set_webhook_config(&mut self, blob_key: &str, config: &str) -> MetaResult<()> {
        sqlx::query("UPDATE files SET webhook_config = $1 WHERE blob_key = $2")
            .bind(config)
            .bind(blob_key)
            .execute(self.conn())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) async fn insert_deliveries(&mut self, deliveries: &[NewDelivery]) -> MetaResult<()> {
        insert_deliveries(self.conn(), deliveries).await.map_err(|e| self.err(e))
    }
}

/// Many rows per statement: the janitor's expiry of a thousand files queues a thousand events at once.
async fn insert_deliveries(conn: &mut AnyConnection, deliveries: &[NewDelivery]) -> sqlx::Result<()> {
    const COLUMNS_PER_ROW: usize = 8;
    for rows in deliveries.chunks(100) {
        let values = (0..rows.len())
            .map(|i| format!("({})", numbered(COLUMNS_PER_ROW * i + 1, COLUMNS_PER_ROW)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, project_id, webhook_id, uri, event_type, event, created_at, \
               next_attempt_at) VALUES {values}"
        );
        let mut insert = sqlx::query(&sql);
        for d in rows {
            insert = insert
                .bind(&d.id)
                .bind(d.project.as_str())
                .bind(d.webhook_id.as_deref())
                .bind(d.uri.as_deref())
                .bind(&d.event_type)
                .bind(&d.event)
                .bind(d.created_at.as_micros())
                .bind(d.created_at.as_micros());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

#[async_trait]
impl WebhookRecords for SqlMeta {
    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn insert_webhook(&self, webhook: &Webhook, max_per_project: u64) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut tx = self.begin().await?;
                // Counted under the project's lock, so that racing creates cannot pass the limit together.
                tx.lock_project(&webhook.project).await?;
                let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE project_id = $1")
                    .bind(webhook.project.as_str())
                    .fetch_one(tx.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                if uint(held) >= max_per_project {
                    return Ok(false);
                }
                let (previous, until, older) = stored(&webhook.secrets);
                sqlx::query(&format!(
                    "INSERT INTO webhooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(&webhook.id)
                .bind(webhook.project.as_str())
                .bind(&webhook.uri)
                .bind(webhook.events.join(" "))
                .bind(webhook.state.as_str())
                .bind(&webhook.secrets.current)
                .bind(previous)
                .bind(until)
                .bind(older)
                .bind(webhook.created_at.as_micros())
                .bind(webhook.updated_at.as_micros())
                .execute(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
                tx.end().await?;
                Ok(true)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn webhook(&self, project: &ProjectId, id: &str) -> MetaResult<Option<Webhook>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let row: Option<WebhookRow> =
                    sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2"))
                        .bind(project.as_str())
                        .bind(id)
                        .fetch_optional(&self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                row.map(Webhook::try_from).transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn webhooks(&self, project: &ProjectId, after: Option<&str>, limit: u32) -> MetaResult<Vec<Webhook>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ))
                .bind(project.as_str())
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                rows.into_iter().map(Webhook::try_from).collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn update_webhook(&self, webhook: &Webhook) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut tx = self.begin().await?;
                let (previous, until, older) = stored(&webhook.secrets);
                let updated = sqlx::query(
                    "UPDATE webhooks SET uri = $1, events = $2, state = $3, secret = $4, previous_secret = $5, \
               previous_until = $6, older_secrets = $7, updated_at = $8 WHERE project_id = $9 AND id = $10",
                )
                .bind(&webhook.uri)
                .bind(webhook.events.join(" "))
                .bind(webhook.state.as_str())
                .bind(&webhook.secrets.current)
                .bind(previous)
                .bind(until)
                .bind(older)
                .bind(webhook.updated_at.as_micros())
                .bind(webhook.project.as_str())
                .bind(&webhook.id)
                .execute(tx.conn())
                .await
                .map_err(|e| self.err(e))?;
                if webhook.state != WebhookState::Enabled {
                    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                        .bind(&webhook.id)
                        .execute(tx.conn())
                        .await
                        .map_err(|e| self.err(e))?;
                }
                tx.end().await?;
                Ok(updated.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_webhook(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut tx = self.begin().await?;
                // Explicitly, not only by the foreign key: SQLite enforces it only where `foreign_keys` is on.
                sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND project_id = $2")
                    .bind(id)
                    .bind(project.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                let deleted = sqlx::query("DELETE FROM webhooks WHERE project_id = $1 AND id = $2")
                    .bind(project.as_str())
                    .bind(id)
                    .execute(tx.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                tx.end().await?;
                Ok(deleted.rows_affected() == 1)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn project_signing_secrets(&self, project: &ProjectId) -> MetaResult<Option<SigningSecrets>> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let row: Option<(String, Option<String>, Option<i64>, Option<String>)> = sqlx::query_as(
                    "SELECT secret, previous_secret, previous_until, older_secrets FROM project_signing_secrets \
             WHERE project_id = $1",
                )
                .bind(project.as_str())
                .fetch_optional(&self.pool())
                .await
                .map_err(|e| self.err(e))?;
                Ok(row.map(|(current, previous, until, older)| secrets(current, previous, until, older.as_deref())))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_project_signing_secrets(
        &self,
        project: &ProjectId,
        secrets: &SigningSecrets,
        now: Timestamp,
    ) -> MetaResult<()> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let (previous, until, older) = stored(secrets);
                sqlx::query(
            "INSERT INTO project_signing_secrets (project_id, secret, previous_secret, previous_until, older_secrets, \
               updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id) DO UPDATE SET \
               secret = excluded.secret, previous_secret = excluded.previous_secret, \
               previous_until = excluded.previous_until, older_secrets = excluded.older_secrets, \
               updated_at = excluded.updated_at",
        )
        .bind(project.as_str())
        .bind(&secrets.current)
        .bind(previous)
        .bind(until)
        .bind(older)
        .bind(now.as_micros())
        .execute(&self.pool())
        .await
        .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn projects_with_due_deliveries(
        &self,
        now: Timestamp,
        after: Option<&ProjectId>,
        limit: u32,
    ) -> MetaResult<Vec<ProjectId>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                // A skip scan: from one project to the next in the (project, due time) index, each step a seek, and
                // for each an existence check of a due row; never a scan of the backlog.
                let by_project = self.engine.indexed_by("webhook_deliveries_by_project");
                let sql = format!(
                    "WITH RECURSIVE projects(id) AS ( \
               SELECT (SELECT project_id FROM webhook_deliveries{by_project} WHERE project_id > $2 \
                       ORDER BY project_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT d.project_id FROM webhook_deliveries d{by_project} WHERE d.project_id > projects.id \
                       ORDER BY d.project_id LIMIT 1) FROM projects WHERE projects.id IS NOT NULL) \
             SELECT id FROM projects WHERE id IS NOT NULL AND EXISTS (SELECT 1 FROM webhook_deliveries d{by_project} \
               WHERE d.project_id = projects.id AND {DUE}) LIMIT $3"
                );
                let ids: Vec<String> = sqlx::query_scalar(&sql)
                    .bind(now.as_micros())
                    .bind(after.map_or("", ProjectId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool())
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(ids.into_iter().map(ProjectId::from_stored).collect())
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        wanted: &[(ProjectId, u32)],
    ) -> MetaResult<Vec<Delivery>> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let wanted: Vec<&(ProjectId, u32)> = wanted.iter().filter(|(_, count)| *count > 0).collect();
                if wanted.is_empty() {
                    return Ok(Vec::new());
                }
                // Each project's oldest due deliveries, from its own stretch of the index: one branch per project.
                let by_project = self.engine.indexed_by("webhook_deliveries_by_project");
                let branches: Vec<String> = (0..wanted.len())
            .map(|i| {
                format!(
                    "SELECT id FROM (SELECT d.id FROM webhook_deliveries d{by_project} WHERE d.project_id = ${} \
                       AND {DUE} ORDER BY d.next_attempt_at LIMIT ${}{}) AS p{i}",
                    4 + 2 * i,
                    5 + 2 * i,
                    self.engine.skip_locked("d")
                )
            })
            .collect();
                let mut tx = self.begin().await?;
                let sql = queue::claim_statement(
                    Queue::Deliveries,
                    queue::Candidates::Many(&branches.join(" UNION ALL ")),
                    "",
                );
                let mut claim = sqlx::query_as(&sql).bind(now.as_micros()).bind(owner).bind(lease_until.as_micros());
                for (project, count) in &wanted {
                    claim = claim.bind(project.as_str()).bind(i64::from(*count));
                }
                let claimed: Vec<(String, i64)> = claim.fetch_all(tx.conn()).await.map_err(|e| self.err(e))?;
                let claimed: Vec<String> = claimed.into_iter().map(|(id, _)| id).collect();
                let mut deliveries = Vec::with_capacity(claimed.len());
                for ids in claimed.chunks(500) {
                    let sql = format!("{DELIVERY_SELECT} WHERE d.id IN ({})", numbered(1, ids.len()));
                    let mut select = sqlx::query_as::<_, DeliveryRow>(&sql);
                    for id in ids {
                        select = select.bind(id);
                    }
                    deliveries.extend(
                        select.fetch_all(tx.conn()).await.map_err(|e| self.err(e))?.into_iter().map(Delivery::from),
                    );
                }
                tx.end().await?;
                deliveries.sort_by_key(|d| d.created_at);
                Ok(deliveries)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn settle_deliveries(&self, settled: &[Settled], now: Timestamp) -> MetaResult<usize> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let mut tx = self.begin().await?;
                // Done (delivered or given up): deleted, many per statement, each only under its lease.
                let ended: Vec<&Lease> = settled
                    .iter()
                    .filter(|s| matches!(s.outcome, DeliveryOutcome::Delivered | DeliveryOutcome::Abandoned))
                    .map(|s| &s.lease)
                    .collect();
                let mut held: Vec<String> = Vec::new();
                for leases in ended.chunks(300) {
                    let each: Vec<String> =
                        (0..leases.len()).map(|i| format!("({})", queue::held(Queue::Deliveries, 1 + 3 * i))).collect();
                    let sql = format!("DELETE FROM webhook_deliveries WHERE {} RETURNING id", each.join(" OR "));
                    let mut delete = sqlx::query_scalar::<_, String>(&sql);
                    for lease in leases {
                        delete = delete.bind(&lease.key).bind(&lease.owner).bind(lease.fence);
                    }
                    held.extend(delete.fetch_all(tx.conn()).await.map_err(|e| self.err(e))?);
                }
                let mut recorded = held.len();
                for s in settled {
                    match &s.outcome {
                        DeliveryOutcome::Retry { next_attempt_at, error, failed } => {
                            let sql = format!(
                                "UPDATE webhook_deliveries SET attempts = attempts + $1, next_attempt_at = $2, \
                                   last_error = $3, lease_owner = NULL, lease_until = NULL WHERE {}",
                                queue::held(Queue::Deliveries, 4)
                            );
                            let updated = sqlx::query(&sql)
                                .bind(i64::from(*failed))
                                .bind(next_attempt_at.as_micros())
                                .bind(error)
                                .bind(&s.lease.key)
                                .bind(&s.lease.owner)
                                .bind(s.lease.fence)
                                .execute(tx.conn())
                                .await
                                .map_err(|e| self.err(e))?;
                            recorded += usize::try_from(updated.rows_affected()).unwrap_or(0);
                        }
                        DeliveryOutcome::Abandoned if held.contains(&s.lease.key) => {
                            let Some(webhook) = &s.webhook_id else { continue };
                            sqlx::query(
                                "UPDATE webhooks SET state = $1, updated_at = $2 WHERE id = $3 AND state = 'enabled'",
                            )
                            .bind(WebhookState::DisabledDueToFailedDeliveries.as_str())
                            .bind(now.as_micros())
                            .bind(webhook)
                            .execute(tx.conn())
                            .await
                            .map_err(|e| self.err(e))?;
                            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                                .bind(webhook)
                                .execute(tx.conn())
                                .await
                                .map_err(|e| self.err(e))?;
                        }
                        _ => {}
                    }
                }
                tx.end().await?;
                Ok(recorded)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delivery_backlog(&self) -> MetaResult<DeliveryBacklog> {
        self.guard
            .bounded(Some(BULK_DEADLINE), async {
                let (pending, oldest): (i64, Option<i64>) =
                    sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries")
                        .fetch_one(&self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                Ok(DeliveryBacklog { pending: uint(pending), oldest: oldest.map(Timestamp::from_micros) })
            })
            .await
    }
}
