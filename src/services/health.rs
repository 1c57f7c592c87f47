//! Whether the node can serve: a small durable write to the metadata store and to the blob store (the
//! same writes requests make), each answered within [`CHECK_DEADLINE`], and the metadata pool's use, for
//! `/readyz` and `/metrics`.

use std::sync::Arc;

use crate::blob::Blobs;
use crate::domain::Timestamp;
use crate::meta::MetaStore;

/// How long a readiness check may take: a load balancer's probe must get its answer within a second.
pub const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_millis(900);

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

    /// Both checks at once, each within [`CHECK_DEADLINE`]: a dependency slower than that is not ready.
    pub async fn check(&self) -> HealthReport {
        let late = || format!("no answer within {CHECK_DEADLINE:?}");
        let database = tokio::time::timeout(CHECK_DEADLINE, self.meta.probe_write(Timestamp::now()));
        let blob_store = tokio::time::timeout(CHECK_DEADLINE, self.blobs.probe());
        let (database, blob_store) = tokio::join!(database, blob_store);
        HealthReport {
            database: database.map_err(|_| late()).and_then(|done| done.map_err(|e| e.to_string())),
            blob_store: blob_store.map_err(|_| late()).and_then(|done| done.map_err(|e| e.to_string())),
        }
    }

    /// The metadata pool: `(open, idle)` connections.
    pub fn connections(&self) -> (u32, usize) {
        self.meta.connections()
    }
}
