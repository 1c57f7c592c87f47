//! The blob port: where file bytes live while they arrive (staging) and once they are complete (objects).
//!
//! The trait follows the shape every backend can honour, local disk and object stores alike (whose
//! multipart uploads are the staging area): bytes are written to a staging area in order, each write is
//! durable when it returns, and completing turns a staging area into one object holding exactly the
//! file's bytes. Hashing, offsets and sessions are the services' business; a store only keeps bytes.

mod local;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use local::LocalBlobStore;

use crate::domain::{FileId, ProjectId, random_alphanumeric};
use crate::error::Result;

/// A stream of bytes between the HTTP layer, the services and a store. Its errors are domain errors, so
/// a body that stalls or overflows surfaces with its own meaning through a store's write.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The key of a new file's object: `files/{project}/{id}.{generation}`. The random generation makes
/// every key unique for good, so a name deleted and reused never meets its predecessor's bytes.
pub fn new_object_key(project: &ProjectId, id: &FileId) -> String {
    format!("files/{project}/{id}.{}", random_alphanumeric(8))
}

/// The key of the staging area of an upload or import: `staging/{name}`.
pub fn staging_key(name: &str) -> String {
    format!("staging/{name}")
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// One line for the start-up log: backend, location and what it can do.
    fn describe(&self) -> String;

    /// Creates an empty staging area (idempotent).
    async fn stage_begin(&self, key: &str) -> Result<()>;
    /// Writes `data` at `offset` of a staging area and returns how many bytes it wrote, once they are
    /// durable. Bytes past what the caller commits may be overwritten by the next write.
    async fn stage_write(&self, key: &str, offset: u64, data: ByteStream) -> Result<u64>;
    /// Makes the first `size` staged bytes the object `dest` (durably). The staging area stays until
    /// [`BlobStore::stage_abort`], so a crash before the caller records completion loses nothing.
    async fn stage_complete(&self, key: &str, size: u64, dest: &str) -> Result<()>;
    /// Removes a staging area and whatever it holds (idempotent).
    async fn stage_abort(&self, key: &str) -> Result<()>;

    /// Streams `range` of an object.
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream>;
    /// Removes an object (idempotent).
    async fn delete(&self, key: &str) -> Result<()>;

    /// Every staging area and every object present, for reconciliation with the metadata store.
    async fn list_staging(&self) -> Result<Vec<String>>;
    async fn list_objects(&self) -> Result<Vec<String>>;

    /// The object's URI for services that read buckets directly (`gs://…`); `None` on local disk.
    fn storage_uri(&self, key: &str) -> Option<String>;

    /// A small durable write and its removal, for the health check: fails while writes fail.
    async fn probe(&self) -> Result<()>;
}
