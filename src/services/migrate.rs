//! `filegate migrate-store`: copies every finished file of a deployment from one blob store to another
//! (the local disk to a bucket, one bucket to another), checking each copy's SHA-256 against the database.
//!
//! A copy goes through the same ingest engine as an upload and becomes visible at its key only when it is
//! complete (a hard link, a completed multipart upload), so an interrupted run leaves nothing half-written
//! at the destination: running it again skips the files whose object is already there with their size.
//! Files still arriving (open uploads, running imports) are left out and reported; the janitor's garbage
//! queue is not involved. Switch `FILEGATE_BLOB_STORE` to the destination once a run reports nothing left.

use std::sync::Arc;

use super::ingest::{Cap, Ingest};
use crate::blob::Blobs;
use crate::domain::random_alphanumeric;
use crate::domain::{Staging, staging_key};
use crate::error::{Error, Result};
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
    from: Arc<Blobs>,
    to: Arc<Blobs>,
    on_file: &OnFile<'_>,
) -> Result<MigrationReport> {
    let mut report = MigrationReport { unfinished: meta.unfinished_files().await?, ..MigrationReport::default() };
    let mut after: Option<String> = None;
    loop {
        let page = meta.stored_files(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.blob_key.to_string());
        for file in &page {
            if file.blob_key.registered_uri().is_some() {
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
async fn copy(from: &Blobs, to: &Blobs, file: &StoredFile) -> Result<()> {
    let staging = Staging {
        key: staging_key(&format!("migrate-{}", random_alphanumeric(16))),
        dest: file.blob_key.to_string(),
        upload_id: None,
    };
    let mut ingest = Ingest::begin(to, staging).await?;
    let body = from.read(&file.blob_key, 0..file.size).await?;
    let size = file.size;
    let cap = Cap { bytes: size, overflow: Box::new(move || Error::internal(format!("more than {size} bytes"))) };
    let result = async {
        let chunk = ingest.stage(body, cap).await?;
        if chunk.written != file.size || chunk.hasher.digest() != file.sha256 {
            return Err(Error::FailedPrecondition(format!(
                "{}: the bytes read do not match the recorded size and SHA-256; not copied",
                file.blob_key
            )));
        }
        let parts = chunk.parts.clone();
        // No database records a copy's progress: the session moves on by itself.
        ingest.commit_unrecorded(chunk);
        ingest.complete(&parts).await
    }
    .await;
    // What the copy leaves (the staging area, a tail), complete or not: nothing of it is kept.
    let mut leftovers = vec![crate::meta::Garbage::Staging(ingest.staging().clone())];
    leftovers.push(crate::meta::Garbage::object(&ingest.staging().tail_key(file.size)));
    for garbage in result.as_ref().map(Vec::as_slice).unwrap_or(&leftovers) {
        let _ = match garbage {
            crate::meta::Garbage::Object(key) => to.objects().delete(key).await,
            crate::meta::Garbage::Staging(staging) => to.abort(staging).await,
        };
    }
    result.map(drop)
}

/// Reads a whole small stream (tests).
#[cfg(test)]
async fn read_all(blobs: &Blobs, key: &str, size: u64) -> Vec<u8> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    let mut stream = blobs.objects().read(key, 0..size).await.unwrap();
    while let Some(bytes) = stream.next().await {
        out.extend_from_slice(&bytes.unwrap());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StorageKey;
    use crate::hash::ResumableSha256;

    #[tokio::test]
    async fn a_copy_is_verified_and_whole_or_absent() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = Blobs::local(a.path().into()).await.unwrap();
        for to in [Blobs::local(b.path().into()).await.unwrap(), Blobs::in_memory()] {
            copies_are_verified(&from, &to).await;
        }
    }

    async fn copies_are_verified(from: &Blobs, to: &Blobs) {
        let bytes: Vec<u8> = (0..(crate::blob::PART_BYTES as usize + 100_000)).map(|i| (i % 251) as u8).collect();
        from.objects().put("files/p/one.abc", bytes.clone().into()).await.unwrap();
        let mut hasher = ResumableSha256::new();
        hasher.update(&bytes);
        let size = bytes.len() as u64;
        let file =
            StoredFile { blob_key: StorageKey::from_stored("files/p/one.abc".into()), size, sha256: hasher.digest() };
        copy(from, to, &file).await.unwrap();
        assert_eq!(read_all(to, "files/p/one.abc", size).await, bytes);
        assert_eq!(to.objects().size("files/p/one.abc").await.unwrap(), Some(size));

        let wrong = StoredFile { blob_key: StorageKey::from_stored("files/p/one.abc".into()), size, sha256: [0; 32] };
        to.objects().delete("files/p/one.abc").await.unwrap();
        assert!(matches!(copy(from, to, &wrong).await, Err(Error::FailedPrecondition(_))));
        assert_eq!(to.objects().size("files/p/one.abc").await.unwrap(), None, "nothing of a bad copy is left");
        if let Some(staged) = to.list("staging").await.unwrap() {
            assert_eq!(staged, Vec::<String>::new());
        }
    }
}
