//! The janitor: expiry, garbage collection and start-up reconciliation.
//!
//! Rows go first and their bytes after, through the `blob_garbage` queue written in the same transaction
//! as the row's removal: a crash between the two leaves a queue entry, never a row without bytes, and
//! every step is idempotent. At start-up, bytes that no row knows (an upload that crashed between its
//! staging write and its database insert, say) are removed too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::blob::BlobStore;
use crate::domain::{FileId, ProjectId, Timestamp};
use crate::error::Result;
use crate::meta::{Garbage, GarbageKind, MetaStore};
use crate::telemetry::metric;

pub struct Janitor {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    interval: Duration,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_files: u64,
    pub expired_sessions: u64,
    pub blobs_deleted: u64,
}

/// Deletes one queued blob and takes it off the queue; on failure it stays queued for the next sweep.
async fn reclaim(meta: &dyn MetaStore, blobs: &dyn BlobStore, item: &Garbage) -> bool {
    let removed = match item.kind {
        GarbageKind::Object => blobs.delete(&item.key).await,
        GarbageKind::Staging => blobs.stage_abort(&item.key).await,
    };
    match removed {
        Ok(()) => match meta.garbage_done(&item.key).await {
            Ok(()) => {
                metrics::counter!(metric::BLOBS_RECLAIMED).increment(1);
                true
            }
            Err(e) => {
                tracing::warn!(blob.key = %item.key, error = %e, "unqueueing a deleted blob failed; the janitor retries");
                false
            }
        },
        Err(e) => {
            tracing::warn!(blob.key = %item.key, error = %e, "deleting a blob failed; the janitor retries");
            false
        }
    }
}

/// Deletes the blobs a request just queued, so their bytes go at once; whatever fails is left to the
/// janitor. Requests never drain the whole queue: that is the janitor's work, not a client's latency.
pub async fn reclaim_now(meta: &dyn MetaStore, blobs: &dyn BlobStore, garbage: &[Garbage]) {
    for item in garbage {
        reclaim(meta, blobs, item).await;
    }
}

/// Deletes queued blobs until the queue is empty or the store fails (the next sweep retries).
pub async fn collect_garbage(meta: &dyn MetaStore, blobs: &dyn BlobStore) -> u64 {
    let mut deleted = 0;
    loop {
        let batch = match meta.garbage(100).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => return deleted,
            Err(e) => {
                tracing::warn!(error = %e, "reading the blob garbage queue failed");
                return deleted;
            }
        };
        for item in &batch {
            if !reclaim(meta, blobs, item).await {
                return deleted;
            }
            deleted += 1;
        }
    }
}

/// Deletes an object that was just completed for a file whose row went away meanwhile (deleted or expired
/// while its upload or import finished). The row's removal queued the key as garbage, but possibly before
/// the object existed. Only when no row owns the key: a key is unique to one file generation, so a live
/// row with it means the object is in use (another worker finished the same import).
pub async fn drop_if_orphaned(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    project: &ProjectId,
    id: &FileId,
    blob_key: &str,
) {
    match meta.get_file(project, id).await {
        Ok(Some(file)) if file.blob_key == blob_key => {}
        Ok(_) => {
            if let Err(e) = blobs.delete(blob_key).await {
                tracing::warn!(blob.key = %blob_key, error = %e, "deleting an orphaned object failed; it goes at the next start");
            }
        }
        Err(e) => tracing::warn!(error = %e, "checking for an orphaned object failed"),
    }
}

impl Janitor {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>, interval: Duration) -> Self {
        Self { meta, blobs, interval }
    }

    /// Removes expired files and sessions, then deletes queued blobs.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let expired = self.meta.expire(Timestamp::now()).await?;
        let blobs_deleted = collect_garbage(self.meta.as_ref(), self.blobs.as_ref()).await;
        metrics::counter!(metric::FILES_EXPIRED).increment(expired.files);
        Ok(SweepReport { expired_files: expired.files, expired_sessions: expired.sessions, blobs_deleted })
    }

    /// Makes storage agree with the database; call before serving, while nothing writes. Returns how many
    /// orphaned staging areas and objects were removed.
    pub async fn reconcile(&self) -> Result<u64> {
        self.sweep().await?;
        let mut removed = 0;
        let live: HashSet<String> = self.meta.live_staging_keys().await?.into_iter().collect();
        for key in self.blobs.list_staging().await? {
            if !live.contains(&key) {
                self.blobs.stage_abort(&key).await?;
                removed += 1;
            }
        }
        let live: HashSet<String> = self.meta.live_blob_keys().await?.into_iter().collect();
        for key in self.blobs.list_objects().await? {
            if !live.contains(&key) {
                self.blobs.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Sweeps every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.sweep().await {
                Ok(report) if report != SweepReport::default() => tracing::info!(?report, "janitor sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "janitor sweep failed"),
            }
        }
    }
}
