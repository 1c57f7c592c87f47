//! One write transaction, by what it writes: see the module documentation of `meta` for what it guarantees.

use async_trait::async_trait;

use crate::domain::{FileId, FileRecord, ProjectId, Timestamp};
use crate::meta::{
    BatchRecord, FileUpdate, Garbage, IdempotencyRecord, ImportProgress, ImportTask, Lease, MetaResult, NewDelivery,
    NewImport, NewSession, PartRecord, ProjectUsage, QueueWrites, RemovedFile, SessionStatus, Subscriber,
    UploadSession, UsageDelta,
};

/// Files and the bytes they leave behind, inside a write transaction.
#[async_trait]
pub trait FileWrites: Send {
    async fn file(&mut self, project: &ProjectId, id: &FileId) -> MetaResult<Option<FileRecord>>;
    async fn file_by_blob(&mut self, blob_key: &str) -> MetaResult<Option<FileRecord>>;
    /// Blob keys of the project's files that expired at or before `now`, soonest expired first.
    async fn expired_files(&mut self, project: &ProjectId, now: Timestamp, limit: u32) -> MetaResult<Vec<String>>;
    /// Inserts a file row; `Conflict` when the project already has a file of that id.
    async fn insert_file(&mut self, file: &FileRecord) -> MetaResult<()>;
    async fn update_file(&mut self, blob_key: &str, update: &FileUpdate, now: Timestamp) -> MetaResult<()>;
    /// Deletes these file rows with their import tasks, and marks their active upload sessions cancelled;
    /// returns the rows that existed (keys without a row are skipped). A few statements for the whole set,
    /// whatever its size (the janitor removes 500 at a time; one round trip per file made 100 000
    /// expirations take 70 s on PostgreSQL). Counters and garbage are the caller's (`services::lifecycle`).
    async fn remove_files(&mut self, blob_keys: &[String], now: Timestamp) -> MetaResult<Vec<RemovedFile>>;
    /// Queues bytes for deletion (idempotent).
    async fn queue_garbage(&mut self, garbage: &[Garbage], now: Timestamp) -> MetaResult<()>;
}

/// Upload sessions, inside a write transaction.
#[async_trait]
pub trait SessionWrites: Send {
    async fn insert_session(&mut self, session: &NewSession) -> MetaResult<()>;
    /// The session, locked until the transaction ends.
    async fn session(&mut self, token_hash: &str) -> MetaResult<Option<UploadSession>>;
    async fn set_session_status(&mut self, token_hash: &str, status: SessionStatus, now: Timestamp) -> MetaResult<()>;
}

/// Import tasks and their Idempotency-Keys, inside a write transaction.
#[async_trait]
pub trait ImportWrites: Send {
    async fn insert_import(&mut self, task: &NewImport) -> MetaResult<()>;
    /// The unfinished task if `lease` still holds it, locked until the transaction ends.
    async fn leased_import(&mut self, lease: &Lease) -> MetaResult<Option<ImportTask>>;
    /// Records an import's progress and the parts it stored; `restart` first forgets its earlier parts (the
    /// source changed: the import starts over).
    async fn save_import_progress(
        &mut self,
        task: &ImportTask,
        progress: &ImportProgress,
        parts: &[PartRecord],
        restart: bool,
        now: Timestamp,
    ) -> MetaResult<()>;
    /// Marks a task finished (its lease released), with the code of its failure if it failed.
    async fn finish_import_task(&mut self, blob_key: &str, error_code: Option<&str>, now: Timestamp) -> MetaResult<()>;
    async fn idempotency(&mut self, project: &ProjectId, key: &str) -> MetaResult<Option<IdempotencyRecord>>;
    /// Records (or replaces) what an Idempotency-Key names.
    async fn put_idempotency(
        &mut self,
        project: &ProjectId,
        key: &str,
        request_hash: &str,
        blob_key: &str,
        now: Timestamp,
    ) -> MetaResult<()>;
}

/// Webhook subscribers and the outbox, written in the transaction of the change they report.
#[async_trait]
pub trait WebhookWrites: Send {
    /// The project's enabled webhooks, to queue its events for.
    async fn webhook_subscribers(&mut self, project: &ProjectId) -> MetaResult<Vec<Subscriber>>;
    /// The per-request webhooks (an import's `webhook_config`, JSON) of these files that have one.
    async fn request_webhooks(&mut self, blob_keys: &[String]) -> MetaResult<Vec<(String, String)>>;
    /// Records a file's per-request webhooks (`config` is JSON).
    async fn set_request_webhooks(&mut self, blob_key: &str, config: &str) -> MetaResult<()>;
    /// Queues deliveries; they become visible to the delivery workers when the transaction commits.
    async fn queue_deliveries(&mut self, deliveries: &[NewDelivery]) -> MetaResult<()>;
}

/// One write transaction: the project's lock and counters, a batch's compare-and-set, the commit, and what
/// each capability writes (the traits above).
#[async_trait]
pub trait WriteTx: FileWrites + SessionWrites + ImportWrites + WebhookWrites + QueueWrites + Send {
    /// Locks the project's row until the transaction ends (creating the project, with nothing used, if it
    /// is new) and returns its counters.
    async fn lock_project(&mut self, project: &ProjectId) -> MetaResult<ProjectUsage>;
    /// Adds `delta` to the counters of a project this transaction has locked.
    async fn add_usage(&mut self, project: &ProjectId, delta: UsageDelta) -> MetaResult<()>;
    /// Records what was learnt of a batch if its row still has `expected_state` and was (or was not yet)
    /// collected as `was_collected` says; `false` when another request or node changed it first.
    async fn update_batch_from(
        &mut self,
        batch: &BatchRecord,
        expected_state: &str,
        was_collected: bool,
    ) -> MetaResult<bool>;
    async fn commit(self: Box<Self>) -> MetaResult<()>;
}
