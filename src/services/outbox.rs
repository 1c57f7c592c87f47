//! The outbox: what is told, and how it is queued — inside the write transaction of the change it
//! reports. Every service that changes a file or a batch queues its events here; the webhook service only
//! manages receivers and delivers what the outbox holds, so no service that changes files imports it.
//!
//! An event is recorded with a snapshot of its file as the transaction left it, and rendered into the
//! body only at delivery (`webhooks/deliver.rs`): the views belong to the HTTP layer, and the body then is the same
//! on every retry. Queuing costs a project without webhooks one indexed read per transaction.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    FailureCode, FileError, FileId, FileRecord, FileState, ImportInfo, Origin, ProjectId, StorageKey, Timestamp,
};
use crate::error::{Error, Result};
use crate::meta::{NewDelivery, Subscriber, WriteTx};

/// The events filegate tells of, by their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// An upload finished or an import became ready: the file can be used.
    FileActive,
    /// An import failed.
    FileFailed,
    FileDeleted,
    FileExpired,
    /// A batch job's results became a file of its project.
    BatchSucceeded,
    BatchFailed,
    BatchCancelled,
    BatchExpired,
    /// Sent by `:ping` only, to the webhook pinged.
    Ping,
}

impl EventType {
    /// The types a webhook may subscribe to.
    pub const SUBSCRIBABLE: [Self; 8] = [
        Self::FileActive,
        Self::FileFailed,
        Self::FileDeleted,
        Self::FileExpired,
        Self::BatchSucceeded,
        Self::BatchFailed,
        Self::BatchCancelled,
        Self::BatchExpired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FileActive => "file.active",
            Self::FileFailed => "file.failed",
            Self::FileDeleted => "file.deleted",
            Self::FileExpired => "file.expired",
            Self::BatchSucceeded => "batch.succeeded",
            Self::BatchFailed => "batch.failed",
            Self::BatchCancelled => "batch.cancelled",
            Self::BatchExpired => "batch.expired",
            Self::Ping => "webhook.ping",
        }
    }

    pub fn parse_subscribable(s: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened (RFC 3339).
    pub timestamp: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSnapshot>,
    /// A batch event's batch, as the API shows it (rendered by the service that changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Value>,
    /// A per-request webhook's `user_metadata`, handed back with each of its deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<Value>,
}

/// A file as the transaction that changed it left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSnapshot {
    id: String,
    display_name: Option<String>,
    mime_type: String,
    size_bytes: Option<u64>,
    sha256: Option<String>,
    state: String,
    origin: String,
    blob_key: String,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    error: Option<(String, String)>,
    import: Option<(String, String, u64, Option<u64>)>,
}

impl From<&FileRecord> for FileSnapshot {
    fn from(file: &FileRecord) -> Self {
        Self {
            id: file.id.as_str().to_owned(),
            display_name: file.display_name.clone(),
            mime_type: file.mime_type.clone(),
            size_bytes: file.size_bytes,
            sha256: file.sha256.map(hex::encode),
            state: file.state.as_str().to_owned(),
            origin: file.origin.as_str().to_owned(),
            blob_key: file.blob_key.to_string(),
            created_at: file.created_at.as_micros(),
            updated_at: file.updated_at.as_micros(),
            expires_at: file.expires_at.as_micros(),
            error: file.error.as_ref().map(|e| (e.code.as_str().to_owned(), e.message.clone())),
            import: file
                .import
                .as_ref()
                .map(|i| (i.source_url.clone(), i.model.clone(), i.received_bytes, i.total_bytes)),
        }
    }
}

impl FileSnapshot {
    /// The record again, for the views; `project` is the event's.
    pub fn record(&self, project: &str) -> FileRecord {
        FileRecord {
            project: ProjectId::from_stored(project.to_owned()),
            id: FileId::from_stored(self.id.clone()),
            display_name: self.display_name.clone(),
            mime_type: self.mime_type.clone(),
            size_bytes: self.size_bytes,
            sha256: self.sha256.as_deref().and_then(|h| hex::decode(h).ok()).and_then(|d| d.try_into().ok()),
            state: FileState::parse(&self.state).unwrap_or(FileState::Failed),
            origin: Origin::parse(&self.origin).unwrap_or(Origin::Upload),
            blob_key: StorageKey::from_stored(self.blob_key.clone()),
            charged_bytes: 0,
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            expires_at: Timestamp::from_micros(self.expires_at),
            error: self
                .error
                .as_ref()
                .map(|(code, message)| FileError { code: FailureCode::from_stored(code), message: message.clone() }),
            import: self.import.as_ref().map(|(source_url, model, received_bytes, total_bytes)| ImportInfo {
                source_url: source_url.clone(),
                model: model.clone(),
                received_bytes: *received_bytes,
                // An event tells a file at rest: what was received was stored.
                stored_bytes: *received_bytes,
                total_bytes: *total_bytes,
            }),
        }
    }
}

/// An import's `webhook_config`: receivers told of that file's events alone, signed with the project's
/// signing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestWebhooks {
    pub uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<Value>,
}

/// A new `webhook-id`: unguessable, and unique across nodes without coordination.
pub fn message_id() -> String {
    format!("msg_{}", crate::domain::random_alphanumeric(26))
}

impl Recorded {
    /// An event of `project` at `now`, about nothing yet (a ping); callers add the file or the batch.
    pub fn new(event_type: EventType, project: &ProjectId, now: Timestamp) -> Self {
        Self {
            event_type: event_type.as_str().to_owned(),
            timestamp: now.to_rfc3339(),
            project: project.as_str().to_owned(),
            file: None,
            batch: None,
            user_metadata: None,
        }
    }

    /// As the outbox keeps it.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(Error::internal)
    }
}

/// Where a delivery goes: a registered webhook (its URI and secret as they are when it is sent), or a
/// per-request receiver's URI (signed with the project's secret).
pub enum Receiver {
    Webhook(String),
    Uri(String),
}

/// One delivery of the event `event` (as [`Recorded::to_json`] wrote it) to `receiver`.
pub fn delivery(
    project: &ProjectId,
    event_type: EventType,
    receiver: Receiver,
    event: String,
    now: Timestamp,
) -> NewDelivery {
    let (webhook_id, uri) = match receiver {
        Receiver::Webhook(id) => (Some(id), None),
        Receiver::Uri(uri) => (None, Some(uri)),
    };
    NewDelivery {
        id: message_id(),
        project: project.clone(),
        webhook_id,
        uri,
        event_type: event_type.as_str().to_owned(),
        event,
        created_at: now,
    }
}

/// The webhooks among `subscribers` that asked for `event_type`.
fn subscribed(subscribers: &[Subscriber], event_type: EventType) -> impl Iterator<Item = &Subscriber> {
    subscribers.iter().filter(move |w| w.events.iter().any(|e| e == event_type.as_str()))
}

/// Queues `event_type` of each file for every receiver that wants it: the project's enabled webhooks
/// subscribed to it, and the file's own per-request webhooks. Call it in the transaction that made the
/// change, after the change (a snapshot of each file as it is now goes with the event).
pub async fn queue_file_events(
    tx: &mut dyn WriteTx,
    events: &[(EventType, &FileRecord)],
    now: Timestamp,
) -> Result<()> {
    // Only imports carry per-request webhooks.
    let imported: Vec<String> =
        events.iter().filter(|(_, f)| f.origin == Origin::Import).map(|(_, f)| f.blob_key.to_string()).collect();
    let configs = if imported.is_empty() { Vec::new() } else { tx.request_webhooks(&imported).await? };
    queue_with(tx, events, &configs, now).await
}

/// [`queue_file_events`] with the files' per-request webhooks read before (`(blob key, config)`): a
/// removal reads them while the rows still exist.
pub async fn queue_with(
    tx: &mut dyn WriteTx,
    events: &[(EventType, &FileRecord)],
    configs: &[(String, String)],
    now: Timestamp,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // Each project's webhooks, read once however many of its files changed (the janitor removes 500).
    let mut webhooks: std::collections::HashMap<ProjectId, Vec<Subscriber>> = std::collections::HashMap::new();
    let mut deliveries = Vec::new();
    for &(event_type, file) in events {
        if !webhooks.contains_key(&file.project) {
            webhooks.insert(file.project.clone(), tx.webhook_subscribers(&file.project).await?);
        }
        let to_webhooks: Vec<&Subscriber> = subscribed(&webhooks[&file.project], event_type).collect();
        let own: Vec<&(String, String)> = configs.iter().filter(|(key, _)| *key == file.blob_key).collect();
        if to_webhooks.is_empty() && own.is_empty() {
            continue; // nobody listens: no snapshot is made (the common case, on every finalize)
        }
        let mut event = Recorded::new(event_type, &file.project, now);
        event.file = Some(FileSnapshot::from(file));
        let plain = event.to_json()?;
        for webhook in to_webhooks {
            let receiver = Receiver::Webhook(webhook.webhook_id.clone());
            deliveries.push(delivery(&file.project, event_type, receiver, plain.clone(), now));
        }
        for (_, config) in own {
            let Ok(config) = serde_json::from_str::<RequestWebhooks>(config) else { continue };
            event.user_metadata = config.user_metadata;
            let own = event.to_json()?;
            let to_uris = config
                .uris
                .into_iter()
                .map(|uri| delivery(&file.project, event_type, Receiver::Uri(uri), own.clone(), now));
            deliveries.extend(to_uris);
        }
    }
    tx.queue_deliveries(&deliveries).await?;
    Ok(())
}

/// Queues `event_type` of a batch job (`view`: the batch as the API shows it) for the project's webhooks
/// subscribed to it. Call it in the transaction that recorded the change.
pub async fn queue_batch_event(
    tx: &mut dyn WriteTx,
    event_type: EventType,
    project: &ProjectId,
    view: Value,
    now: Timestamp,
) -> Result<()> {
    let webhooks = tx.webhook_subscribers(project).await?;
    if subscribed(&webhooks, event_type).next().is_none() {
        return Ok(());
    }
    let mut event = Recorded::new(event_type, project, now);
    event.batch = Some(view);
    let event = event.to_json()?;
    let deliveries: Vec<NewDelivery> = subscribed(&webhooks, event_type)
        .map(|webhook| delivery(project, event_type, Receiver::Webhook(webhook.webhook_id.clone()), event.clone(), now))
        .collect();
    tx.queue_deliveries(&deliveries).await?;
    Ok(())
}

/// What a removed file tells: `file.expired` if it had expired, else `file.deleted`; nothing for an
/// upload that never finished (no one ever saw it).
pub fn removal(file: &FileRecord, now: Timestamp) -> Option<EventType> {
    if !file.state.is_visible() {
        None
    } else if file.is_expired(now) {
        Some(EventType::FileExpired)
    } else {
        Some(EventType::FileDeleted)
    }
}
