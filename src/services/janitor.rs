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

use super::garbage::collect_garbage;
use super::imports::IDEMPOTENCY_WINDOW;
use super::lifecycle;
use crate::blob::Blobs;
use crate::domain::Staging;
use crate::domain::{ProjectId, Timestamp};
use crate::error::Result;
use crate::meta::MetaStore;
use crate::telemetry::metric;

/// Expired files removed per transaction (and per query of the expired ones).
const EXPIRY_BATCH: u32 = 500;

pub struct Janitor {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    interval: Duration,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_files: u64,
    pub expired_sessions: u64,
    pub blobs_deleted: u64,
}

impl Janitor {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>, interval: Duration) -> Self {
        Self { meta, blobs, interval }
    }

    /// Removes expired files (an open upload's session expires with its file) and ended sessions, then
    /// deletes queued blobs.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let now = Timestamp::now();
        let mut expired_files = 0;
        loop {
            let expired = self.meta.expired_files(now, EXPIRY_BATCH).await?;
            if expired.is_empty() {
                break;
            }
            let batch = expired.len();
            // One transaction per project and batch: the project's lock is taken once for all its files.
            let mut by_project: Vec<(ProjectId, Vec<String>)> = Vec::new();
            for (project, key) in expired {
                match by_project.iter_mut().find(|(p, _)| *p == project) {
                    Some((_, keys)) => keys.push(key),
                    None => by_project.push((project, vec![key])),
                }
            }
            for (project, keys) in by_project {
                let mut tx = self.meta.write().await?;
                tx.lock_project(&project).await?;
                expired_files += lifecycle::remove_many(tx.as_mut(), &keys, now).await?.len() as u64;
                tx.commit().await?;
            }
            if batch < EXPIRY_BATCH as usize {
                break;
            }
        }
        metrics::counter!(metric::FILES_EXPIRED).increment(expired_files);
        let cutoff = Timestamp::from_micros(now.as_micros() - IDEMPOTENCY_WINDOW.as_micros() as i64);
        let expired_sessions = self.meta.purge(now, cutoff).await?;
        let blobs_deleted = collect_garbage(self.meta.as_ref(), self.blobs.as_ref()).await;
        Ok(SweepReport { expired_files, expired_sessions, blobs_deleted })
    }

    /// Makes storage agree with the database; call before serving, while nothing writes. Returns how many
    /// orphaned staging areas and objects were removed. Only a store this node alone uses (the local disk)
    /// is listed: a shared bucket's cleanup is driven from the database alone (the garbage queue), since
    /// another node's open uploads would look like orphans.
    ///
    /// Expiry is not done here but by the janitor's first sweep, right after start and while serving
    /// (expired files are invisible either way): a node that was down while 100 000 files expired would
    /// otherwise not listen until they were all removed.
    pub async fn reconcile(&self) -> Result<u64> {
        let mut removed = 0;
        if let Some(staged) = self.blobs.list("staging").await? {
            let live: HashSet<String> = self.meta.live_staging_keys().await?.into_iter().collect();
            for key in staged.into_iter().filter(|key| !live.contains(key)) {
                let orphan = Staging { key, dest: String::new(), upload_id: None };
                self.blobs.abort(&orphan).await?;
                removed += 1;
            }
        }
        if let Some(objects) = self.blobs.list("files").await? {
            let live: HashSet<String> = self.meta.live_blob_keys().await?.into_iter().collect();
            for key in objects.into_iter().filter(|key| !live.contains(key)) {
                self.blobs.objects().delete(&key).await?;
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
