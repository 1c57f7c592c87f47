//! The blob garbage queue: bytes whose rows are gone, deleted right after the transaction that queued them
//! (by the request that made them garbage) or later by the janitor, whichever gets there first.

use crate::blob::Blobs;
use crate::domain::{FileId, ProjectId};
use crate::meta::{Garbage, MetaStore};
use crate::telemetry::metric;

/// Deletes queued blobs, then takes those that went off the queue in one transaction; returns how many
/// went, and whether all did (what failed stays queued for the next sweep). Objects go in the store's bulk
/// deletes; staging areas (multipart uploads) one by one, as no store aborts them in bulk.
async fn reclaim(meta: &dyn MetaStore, blobs: &Blobs, items: &[Garbage]) -> (u64, bool) {
    let objects: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            Garbage::Object(key) => Some(key.clone()),
            Garbage::Staging(_) => None,
        })
        .collect();
    let mut done = blobs.delete_many(&objects).await;
    let mut all = done.len() == objects.len();
    for item in items {
        let Garbage::Staging(staging) = item else { continue };
        match blobs.abort(staging).await {
            Ok(()) => done.push(item.key().to_owned()),
            Err(e) => {
                tracing::warn!(blob.key = %item.key(), error = %e, "deleting a staging area failed; the janitor retries");
                all = false;
                break;
            }
        }
    }
    let done: Vec<&str> = done.iter().map(String::as_str).collect();
    if let Err(e) = meta.garbage_done(&done).await {
        tracing::warn!(error = %e, blobs = done.len(), "unqueueing deleted blobs failed; the janitor retries");
        return (0, false);
    }
    metrics::counter!(metric::BLOBS_RECLAIMED).increment(done.len() as u64);
    (done.len() as u64, all)
}

/// Deletes the blobs a request just queued, so their bytes go at once; whatever fails is left to the
/// janitor. Requests never drain the whole queue: that is the janitor's work, not a client's latency.
pub async fn reclaim_now(meta: &dyn MetaStore, blobs: &Blobs, garbage: &[Garbage]) {
    reclaim(meta, blobs, garbage).await;
}

/// Deletes queued blobs until the queue is empty or the store fails (the next sweep retries).
pub async fn collect_garbage(meta: &dyn MetaStore, blobs: &Blobs) -> u64 {
    let mut deleted = 0;
    loop {
        let batch = match meta.garbage(GARBAGE_BATCH).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => return deleted,
            Err(e) => {
                tracing::warn!(error = %e, "reading the blob garbage queue failed");
                return deleted;
            }
        };
        let (went, all) = reclaim(meta, blobs, &batch).await;
        deleted += went;
        if !all {
            return deleted;
        }
    }
}

/// Queued blobs read, deleted and unqueued per round.
const GARBAGE_BATCH: u32 = 500;

/// Deletes an object that was just completed for a file whose row went away meanwhile (deleted or expired
/// while its upload or import finished). The row's removal queued the key as garbage, but possibly before
/// the object existed. Only when no row owns the key: a key is unique to one file generation, so a live
/// row with it means the object is in use (another worker finished the same import).
pub async fn drop_if_orphaned(meta: &dyn MetaStore, blobs: &Blobs, project: &ProjectId, id: &FileId, blob_key: &str) {
    match meta.get_file(project, id).await {
        Ok(Some(file)) if file.blob_key.as_str() == blob_key => {}
        Ok(_) => {
            if let Err(e) = blobs.objects().delete(blob_key).await {
                tracing::warn!(blob.key = %blob_key, error = %e, "deleting an orphaned object failed; it goes at the next start");
            }
        }
        Err(e) => tracing::warn!(error = %e, "checking for an orphaned object failed"),
    }
}
