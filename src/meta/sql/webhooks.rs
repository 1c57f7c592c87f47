//! The webhook tables (`meta::webhooks`): `webhooks`, `project_signing_secrets` and the outbox,
//! `webhook_deliveries`.

use async_trait::async_trait;
use sqlx::{AnyConnection, FromRow};

use super::SqlMeta;
use super::rows::uint;
use super::tx::{SqlTx, numbered};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{
    Delivery, DeliveryBacklog, DeliveryOutcome, MetaError, MetaResult, NewDelivery, Settled, SigningSecrets,
    Subscriber, Webhook, WebhookRecords, WebhookState,
};

const COLUMNS: &str =
    "id, project_id, uri, events, state, secret, previous_secret, previous_until, created_at, updated_at";

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
    created_at: i64,
    updated_at: i64,
}

fn secrets(current: String, previous: Option<String>, until: Option<i64>) -> SigningSecrets {
    SigningSecrets { current, previous: previous.zip(until.map(Timestamp::from_micros)) }
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
            secrets: secrets(row.secret, row.previous_secret, row.previous_until),
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
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_until: Option<i64>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        Self {
            id: row.id,
            project: ProjectId::from_stored(row.project_id),
            webhook_id: row.webhook_id,
            uri: row.uri.unwrap_or_default(),
            event_type: row.event_type,
            event: row.event,
            created_at: Timestamp::from_micros(row.created_at),
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            secrets: row.secret.map(|current| secrets(current, row.previous_secret, row.previous_until)),
        }
    }
}

/// A registered webhook's URI and secrets, or else the row's own URI and the project's secrets.
const DELIVERY_SELECT: &str = "SELECT d.id, d.project_id, d.webhook_id, COALESCE(w.uri, d.uri) AS uri, d.event_type, \
       d.event, d.created_at, d.attempts, COALESCE(w.secret, p.secret) AS secret, \
       CASE WHEN w.id IS NULL THEN p.previous_secret ELSE w.previous_secret END AS previous_secret, \
       CASE WHEN w.id IS NULL THEN p.previous_until ELSE w.previous_until END AS previous_until \
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
    async fn insert_webhook(&self, webhook: &Webhook) -> MetaResult<()> {
        sqlx::query(&format!("INSERT INTO webhooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&webhook.id)
            .bind(webhook.project.as_str())
            .bind(&webhook.uri)
            .bind(webhook.events.join(" "))
            .bind(webhook.state.as_str())
            .bind(&webhook.secrets.current)
            .bind(webhook.secrets.previous.as_ref().map(|(s, _)| s.as_str()))
            .bind(webhook.secrets.previous.as_ref().map(|(_, until)| until.as_micros()))
            .bind(webhook.created_at.as_micros())
            .bind(webhook.updated_at.as_micros())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn webhook(&self, project: &ProjectId, id: &str) -> MetaResult<Option<Webhook>> {
        let row: Option<WebhookRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2"))
                .bind(project.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        row.map(Webhook::try_from).transpose()
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn webhooks(&self, project: &ProjectId, after: Option<&str>, limit: u32) -> MetaResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(project.as_str())
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn update_webhook(&self, webhook: &Webhook) -> MetaResult<bool> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhooks SET uri = $1, events = $2, state = $3, secret = $4, previous_secret = $5, \
               previous_until = $6, updated_at = $7 WHERE project_id = $8 AND id = $9",
        )
        .bind(&webhook.uri)
        .bind(webhook.events.join(" "))
        .bind(webhook.state.as_str())
        .bind(&webhook.secrets.current)
        .bind(webhook.secrets.previous.as_ref().map(|(s, _)| s.as_str()))
        .bind(webhook.secrets.previous.as_ref().map(|(_, until)| until.as_micros()))
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
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_webhook(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
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
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn project_signing_secrets(&self, project: &ProjectId) -> MetaResult<Option<SigningSecrets>> {
        let row: Option<(String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT secret, previous_secret, previous_until FROM project_signing_secrets WHERE project_id = $1",
        )
        .bind(project.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(row.map(|(current, previous, until)| secrets(current, previous, until)))
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_project_signing_secrets(
        &self,
        project: &ProjectId,
        secrets: &SigningSecrets,
        now: Timestamp,
    ) -> MetaResult<()> {
        sqlx::query(
            "INSERT INTO project_signing_secrets (project_id, secret, previous_secret, previous_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id) DO UPDATE SET secret = excluded.secret, \
               previous_secret = excluded.previous_secret, previous_until = excluded.previous_until, \
               updated_at = excluded.updated_at",
        )
        .bind(project.as_str())
        .bind(&secrets.current)
        .bind(secrets.previous.as_ref().map(|(s, _)| s.as_str()))
        .bind(secrets.previous.as_ref().map(|(_, until)| until.as_micros()))
        .bind(now.as_micros())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> MetaResult<Vec<Delivery>> {
        const DUE: &str = "next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)";
        // A read first: an idle queue costs no write transaction (on SQLite, the database's write lock).
        let due: Option<i64> = sqlx::query_scalar(&format!("SELECT 1 FROM webhook_deliveries WHERE {DUE} LIMIT 1"))
            .bind(now.as_micros())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $2, lease_until = $3 WHERE id IN \
               (SELECT id FROM webhook_deliveries d WHERE {DUE} ORDER BY next_attempt_at LIMIT $4{}) \
             RETURNING id",
            self.engine.skip_locked("d")
        );
        let claimed: Vec<String> = sqlx::query_scalar(&sql)
            .bind(now.as_micros())
            .bind(owner)
            .bind(lease_until.as_micros())
            .bind(i64::from(limit))
            .fetch_all(tx.conn())
            .await
            .map_err(|e| self.err(e))?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for ids in claimed.chunks(500) {
            let sql = format!("{DELIVERY_SELECT} WHERE d.id IN ({})", numbered(1, ids.len()));
            let mut select = sqlx::query_as::<_, DeliveryRow>(&sql);
            for id in ids {
                select = select.bind(id);
            }
            deliveries
                .extend(select.fetch_all(tx.conn()).await.map_err(|e| self.err(e))?.into_iter().map(Delivery::from));
        }
        tx.end().await?;
        deliveries.sort_by_key(|d| d.created_at);
        Ok(deliveries)
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn settle_deliveries(&self, owner: &str, settled: &[Settled], now: Timestamp) -> MetaResult<usize> {
        let mut tx = self.begin().await?;
        // Done (delivered or given up): deleted, many per statement.
        let ended: Vec<&str> = settled
            .iter()
            .filter(|s| matches!(s.outcome, DeliveryOutcome::Delivered | DeliveryOutcome::Abandoned))
            .map(|s| s.id.as_str())
            .collect();
        let mut held: Vec<String> = Vec::new();
        for ids in ended.chunks(500) {
            let sql = format!(
                "DELETE FROM webhook_deliveries WHERE lease_owner = $1 AND id IN ({}) RETURNING id",
                numbered(2, ids.len())
            );
            let mut delete = sqlx::query_scalar::<_, String>(&sql).bind(owner);
            for id in ids {
                delete = delete.bind(*id);
            }
            held.extend(delete.fetch_all(tx.conn()).await.map_err(|e| self.err(e))?);
        }
        let mut recorded = held.len();
        for s in settled {
            match &s.outcome {
                DeliveryOutcome::Retry { next_attempt_at, error, failed } => {
                    let updated = sqlx::query(
                        "UPDATE webhook_deliveries SET attempts = attempts + $1, next_attempt_at = $2, \
                           last_error = $3, lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5",
                    )
                    .bind(i64::from(*failed))
                    .bind(next_attempt_at.as_micros())
                    .bind(error)
                    .bind(&s.id)
                    .bind(owner)
                    .execute(tx.conn())
                    .await
                    .map_err(|e| self.err(e))?;
                    recorded += usize::try_from(updated.rows_affected()).unwrap_or(0);
                }
                DeliveryOutcome::Abandoned if held.contains(&s.id) => {
                    let Some(webhook) = &s.webhook_id else { continue };
                    sqlx::query("UPDATE webhooks SET state = $1, updated_at = $2 WHERE id = $3 AND state = 'enabled'")
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
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delivery_backlog(&self) -> MetaResult<DeliveryBacklog> {
        let (pending, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(DeliveryBacklog { pending: uint(pending), oldest: oldest.map(Timestamp::from_micros) })
    }
}
