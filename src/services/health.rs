//! Whether the node can serve: a small durable write to the metadata store and to the blob store (the
//! same writes requests make), and the metadata pool's use, for `/healthz` and `/metrics`.

use std::sync::Arc;

use crate::blob::Blobs;
use crate::domain::Timestamp;
use crate::meta::MetaStore;

pub struct Health {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
}

/// Each dependency's state: `Err` says why it fails (for the log, never for callers).
pub struct HealthReport {
    pub database: Result<(), String>,
    pub blob_store: Result<(), String>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.database.is_ok() && self.blob_store.is_ok()
    }
}

impl Health {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>) -> Self {
        Self { meta, blobs }
    }

    pub async fn check(&self) -> HealthReport {
        let (database, blob_store) = tokio::join!(self.meta.probe_write(Timestamp::now()), self.blobs.probe());
        HealthReport {
            database: database.map_err(|e| e.to_string()),
            blob_store: blob_store.map_err(|e| e.to_string()),
        }
    }

    /// The metadata pool: `(open, idle)` connections.
    pub fn connections(&self) -> (u32, usize) {
        self.meta.connections()
    }
}
