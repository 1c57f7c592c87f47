//! Finished objects and small ones (tails), in any store, through `object_store`: read a range, learn a
//! size, delete, put, list. The local disk is `object_store`'s `LocalFileSystem` like any bucket; only its
//! reads take another road, because `object_store` streams a local file in 8 KiB pieces, each on the
//! blocking pool (a 1 GiB download would be 131 072 hops): filegate streams the same opened file in 256 KiB
//! reads instead.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt as _, PutPayload};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

use super::{BlobError, BlobResult, ByteStream};
use crate::domain::{Timestamp, random_alphanumeric};
use crate::error::Error;
use crate::outage::Guard;

const READ_BUFFER: usize = 256 * 1024;

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The key under the store's prefix (`files/…`, `staging/…`).
    pub key: String,
    pub size: u64,
    pub modified: Timestamp,
}

/// The objects of one store, under its prefix.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Whether the store answers, as the reachability prober finds (`Blobs::watch_reachability`); a store
    /// nobody probes is never down.
    guard: Arc<Guard>,
    /// Without leading or trailing slash; empty for the store's root.
    prefix: String,
    /// `gs://bucket`, `s3://bucket`, `az://container`: what a key's URI starts with (none on local disk).
    uri_base: Option<String>,
}

impl Objects {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, uri_base: Option<String>) -> Self {
        Self { store, guard: Arc::default(), prefix: prefix.trim_matches('/').to_owned(), uri_base }
    }

    pub(super) fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Runs an operation of the store unless it is known not to answer, and ends it if it stops answering
    /// meanwhile (a 503 within seconds, where a vanished bucket would hold it for its client's timeouts).
    pub(super) async fn guarded<T>(&self, operation: impl Future<Output = BlobResult<T>>) -> BlobResult<T> {
        self.guard.bounded(None, operation).await
    }

    pub(super) fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    /// Streams `range` of an object.
    pub async fn read(&self, key: &str, range: Range<u64>) -> BlobResult<ByteStream> {
        if range.is_empty() {
            return Ok(stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range.clone())), ..GetOptions::default() };
        let result = self.guarded(async { Ok(self.store.get_opts(&self.path(key), options).await?) }).await?;
        match result.payload {
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start)).await.map_err(BlobError::from)?;
                let reader = file.take(range.end - range.start);
                let chunks = ReaderStream::with_capacity(reader, READ_BUFFER);
                Ok(chunks.map_err(|e| Error::from(BlobError::from(e))).boxed())
            }
            GetResultPayload::Stream(chunks) => Ok(chunks.map_err(|e| Error::from(BlobError::from(e))).boxed()),
        }
    }

    /// An object's size, `None` when there is no such object.
    pub async fn size(&self, key: &str) -> BlobResult<Option<u64>> {
        self.guarded(self.size_unguarded(key)).await
    }

    async fn size_unguarded(&self, key: &str) -> BlobResult<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store answers a small request within `timeout` (the prober's question; not guarded).
    pub(super) async fn answers(&self, timeout: std::time::Duration) -> bool {
        let asked = tokio::time::timeout(timeout, self.size_unguarded(".health-probe/reachable")).await;
        asked.is_ok_and(|answer| answer.is_ok())
    }

    /// Stores a small object whole (a tail; an empty file's object).
    pub async fn put(&self, key: &str, data: Bytes) -> BlobResult<()> {
        self.guarded(async { Ok(self.store.put(&self.path(key), PutPayload::from(data)).await.map(|_| ())?) }).await
    }

    /// Removes an object; one that is not there counts as removed.
    pub async fn delete(&self, key: &str) -> BlobResult<()> {
        self.guarded(async {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Removes many objects with the store's bulk delete where it has one (S3: 1 000 per request; Azure:
    /// batches of 256; elsewhere several deletes at once). Returns the keys that are gone (those not there
    /// included); a key missing from the answer was not confirmed deleted and should be tried again.
    pub async fn delete_many(&self, keys: &[String]) -> Vec<String> {
        let by_path: std::collections::HashMap<String, &String> =
            keys.iter().map(|key| (self.path(key).to_string(), key)).collect();
        let paths: Vec<object_store::Result<Path>> = keys.iter().map(|key| Ok(self.path(key))).collect();
        let deleting = async { Ok(self.store.delete_stream(stream::iter(paths).boxed()).collect().await) };
        // Nothing is confirmed deleted while the store does not answer: all of it is tried again.
        let Ok(outcomes): BlobResult<Vec<object_store::Result<Path>>> = self.guarded(deleting).await else {
            return Vec::new();
        };
        let mut gone = Vec::with_capacity(keys.len());
        for outcome in outcomes {
            let path = match outcome {
                Ok(path) => path.to_string(),
                Err(object_store::Error::NotFound { path, .. }) => path,
                Err(e) => {
                    tracing::warn!(error = %e, "a bulk delete left an object; it is tried again");
                    continue;
                }
            };
            // NotFound may name the path with or without the store's own prefix: match either.
            let key =
                by_path.get(&path).or_else(|| by_path.iter().find(|(p, _)| path.ends_with(p.as_str())).map(|(_, k)| k));
            gone.extend(key.map(|k| (*k).clone()));
        }
        gone
    }

    /// The keys under `dir` (for the start-up reconciliation of a store only this node uses).
    pub async fn list(&self, dir: &str) -> BlobResult<Vec<String>> {
        self.entries(dir).map_ok(|entry| entry.key).try_collect().await
    }

    /// The objects under `dir` as the store lists them, page by page: a million keys in constant memory.
    pub fn entries(&self, dir: &str) -> futures_util::stream::BoxStream<'static, BlobResult<ObjectEntry>> {
        let root = self.path("").to_string();
        self.store
            .list(Some(&self.path(dir)))
            .map(move |listed| {
                let meta = listed?;
                let key = meta.location.to_string();
                let key = match root.as_str() {
                    "" => key,
                    root => key.strip_prefix(root).map(|k| k.trim_start_matches('/').to_owned()).unwrap_or(key),
                };
                let modified = Timestamp::from_micros(meta.last_modified.timestamp_micros());
                Ok(ObjectEntry { key, size: meta.size, modified })
            })
            .boxed()
    }

    /// The object's URI for services that read the store directly (`gs://…`); `None` on local disk.
    pub fn storage_uri(&self, key: &str) -> Option<String> {
        self.uri_base.as_ref().map(|base| format!("{base}/{}", self.path(key)))
    }

    /// A small write and its removal: fails while writes fail, and at once while the store is known not to
    /// answer.
    pub async fn probe(&self) -> BlobResult<()> {
        let key = format!(".health-probe/{}", random_alphanumeric(16));
        self.put(&key, Bytes::from_static(b"ok")).await?;
        self.delete(&key).await
    }
}
