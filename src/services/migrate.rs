//! `filegate migrate-store`: copies every finished file of a deployment from one blob store to another
//! (the local disk to a bucket, one bucket to another), checking each copy's SHA-256 against the database.
//!
//! A copy goes through the same ingest engine as an upload and becomes visible at its key only when it is
//! complete (a hard link, a completed multipart upload), so an interrupted run leaves nothing half-written
//! at the destination: running it again skips the files whose object is already there with their size.
//! Files still arriving (open uploads, running imports) are left out and reported; the janitor's garbage
//! queue is not involved. Switch `FILEGATE_BLOB_STORE` to the destination once a run reports nothing left.

use std::sync::Arc;

use super::ingest::{self, Cap};
use crate::blob::{BlobStore, Staging, registered_uri, staging_key};
use crate::domain::random_alphanumeric;
use crate::error::{Error, Result};
use crate::hash::ResumableSha256;
use crate::meta::{MetaStore, StoredFile};

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub copied: u64,
    pub copied_bytes: u64,
    /// Already at the destination (an earlier, interrupted run).
    pub skipped: u64,
    /// Files whose bytes did not match their recorded SHA-256 (nothing was left at the destination).
    pub corrupt: Vec<String>,
    /// Files still arriving when the run listed them.
    pub unfinished: u64,
    /// Files registered from their owners' buckets (`files:register`): they stay where they are.
    pub registered: u64,
}

/// Progress, as the run goes: `(files done, bytes done)` after each file.
pub type OnFile<'a> = dyn Fn(&StoredFile, u64) + Send + Sync + 'a;

pub async fn migrate(
    meta: &dyn MetaStore,
    from: Arc<dyn BlobStore>,
    to: Arc<dyn BlobStore>,
    on_file: &OnFile<'_>,
) -> Result<MigrationReport> {
    let mut report = MigrationReport { unfinished: meta.unfinished_files().await?, ..MigrationReport::default() };
    let mut after: Option<String> = None;
    loop {
        let page = meta.stored_files(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.blob_key.clone());
        for file in &page {
            if registered_uri(&file.blob_key).is_some() {
                report.registered += 1;
                continue;
            }
            match to.size(&file.blob_key).await? {
                Some(size) if size == file.size => report.skipped += 1,
                _ => match copy(from.as_ref(), to.as_ref(), file).await {
                    Ok(()) => {
                        report.copied += 1;
                        report.copied_bytes += file.size;
                    }
                    Err(Error::FailedPrecondition(why)) => report.corrupt.push(why),
                    Err(e) => return Err(e),
                },
            }
            on_file(file, file.size);
        }
    }
    Ok(report)
}

/// Copies one file through a staging area of the destination, verifying it before completing it.
async fn copy(from: &dyn BlobStore, to: &dyn BlobStore, file: &StoredFile) -> Result<()> {
    let mut staging = Staging {
        key: staging_key(&format!("migrate-{}", random_alphanumeric(16))),
        dest: file.blob_key.clone(),
        upload_id: None,
    };
    staging.upload_id = to.begin(&staging).await?;
    let body = from.read(&file.blob_key, 0..file.size).await?;
    let size = file.size;
    let cap = Cap { bytes: size, overflow: Box::new(move || Error::internal(format!("more than {size} bytes"))) };
    let result = async {
        let appended = ingest::append(to, &staging, 0, ResumableSha256::new(), body, cap).await?;
        if appended.written != file.size || appended.hasher.digest() != file.sha256 {
            return Err(Error::FailedPrecondition(format!(
                "{}: the bytes read do not match the recorded size and SHA-256; not copied",
                file.blob_key
            )));
        }
        let tail = ingest::complete(to, &staging, appended.written, &appended.parts).await?;
        if let Some(tail) = tail {
            to.delete(tail.key()).await?;
        }
        Ok(())
    }
    .await;
    // The local disk keeps a staging file until it is aborted; a bucket's completed upload is gone already.
    let _ = to.abort(&staging).await;
    if result.is_err() {
        let _ = to.delete(&staging.tail_key(file.size)).await;
    }
    result
}

/// Reads a whole small stream (tests).
#[cfg(test)]
async fn read_all(blobs: &dyn BlobStore, key: &str, size: u64) -> Vec<u8> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    let mut stream = blobs.read(key, 0..size).await.unwrap();
    while let Some(bytes) = stream.next().await {
        out.extend_from_slice(&bytes.unwrap());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::LocalBlobStore;

    #[tokio::test]
    async fn a_copy_is_verified_and_whole_or_absent() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = LocalBlobStore::open(a.path().into()).await.unwrap();
        let to = LocalBlobStore::open(b.path().into()).await.unwrap();
        let bytes = vec![7u8; 100_000];
        from.put("files/p/one.abc", bytes.clone().into()).await.unwrap();
        let mut hasher = ResumableSha256::new();
        hasher.update(&bytes);
        let file = StoredFile { blob_key: "files/p/one.abc".into(), size: 100_000, sha256: hasher.digest() };
        copy(&from, &to, &file).await.unwrap();
        assert_eq!(read_all(&to, "files/p/one.abc", 100_000).await, bytes);
        assert_eq!(to.size("files/p/one.abc").await.unwrap(), Some(100_000));

        let wrong = StoredFile { blob_key: "files/p/one.abc".into(), size: 100_000, sha256: [0; 32] };
        to.delete("files/p/one.abc").await.unwrap();
        assert!(matches!(copy(&from, &to, &wrong).await, Err(Error::FailedPrecondition(_))));
        assert_eq!(to.size("files/p/one.abc").await.unwrap(), None, "nothing of a bad copy is left");
        assert_eq!(to.list_staging().await.unwrap(), Some(vec![]));
    }
}
