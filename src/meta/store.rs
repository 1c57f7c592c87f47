//! The metadata store whole: each capability's records, and what a store is beside them.

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::{
    AuditRecords, CopyRecords, FileRecords, ImportRecords, KeyRecords, MetaResult, ModelRecords, UpkeepRecords,
    UploadRecords, WebhookRecords, WorkQueue, WriteTx,
};

/// Everything the services need of the metadata store: the records of each capability (their own traits, in
/// their own files), write transactions, and the store's health. A service names the capabilities it uses.
#[async_trait]
pub trait MetaStore:
    KeyRecords
    + FileRecords
    + UploadRecords
    + ImportRecords
    + UpkeepRecords
    + CopyRecords
    + ModelRecords
    + WebhookRecords
    + AuditRecords
    + WorkQueue
    + Send
    + Sync
    + 'static
{
    /// One line for the start-up log.
    fn describe(&self) -> String;
    /// The connection pool now: `(open, idle)` connections (for `/metrics`).
    fn connections(&self) -> (u32, usize);
    /// Begins a write transaction.
    async fn write(&self) -> MetaResult<Box<dyn WriteTx>>;
    /// A cheap read, for the health check.
    async fn ping(&self) -> MetaResult<()>;
    /// A small durable write, for the health check: fails while writes fail (disk full, read-only).
    async fn probe_write(&self, now: Timestamp) -> MetaResult<()>;
    /// Closes connections; called once at shutdown.
    async fn close(&self);
}
