//! The blob garbage queue: bytes whose rows are gone, deleted right after the transaction that queued them
//! (by the request that made them garbage) or later by the janitor, whichever gets there first.

use crate::blob::BlobStore;
use crate::domain::{FileId, ProjectId};
use crate::meta::{Garbage, MetaStore};
use crate::telemetry::metric;

/// Deletes one queued blob and takes it off the queue; on failure it stays queued for the next sweep.
async fn reclaim(meta: &dyn MetaStore, blobs: &dyn BlobStore, item: &Garbage) -> bool {
    let removed = match item {
        Garbage::Object(key) => blobs.delete(key).await,
        Garbage::Staging(staging) => blobs.abort(staging).await,
    };
    match removed {
        Ok(()) => match meta.garbage_done(item.key()).await {
            Ok(()) => {
                metrics::counter!(metric::BLOBS_RECLAIMED).increment(1);
                true
            }
            Err(e) => {
                tracing::warn!(blob.key = %item.key(), error = %e, "unqueueing a deleted blob failed; the janitor retries");
                false
            }
        },
        Err(e) => {
            tracing::warn!(blob.key = %item.key(), error = %e, "deleting a blob failed; the janitor retries");
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
