//! The blob port: where file bytes live while they arrive (a staging area) and once they are complete (one
//! object per file, holding exactly its bytes).
//!
//! Two kinds of store sit behind it, told apart by their [`Layout`]:
//!
//! - **positional** (the local disk): a staging file takes bytes at any offset, durably (`fdatasync`) when
//!   the write returns, and completing it links it in place as the object;
//! - **parts** (S3, Google Cloud Storage, Azure Blob through `object_store`): a staging area is one
//!   multipart upload on the object's key; bytes go up in parts of a fixed size (the granule), and
//!   completing the upload turns its parts into the object. A part is durable once stored. Bytes that do not
//!   fill a part yet (a chunk that is not a multiple of the granule, an import that stalled mid-part) are
//!   kept as a small *tail* object next to the upload until the next bytes or the finalize make a part of
//!   them: acknowledged means stored in the bucket, readable by any node.
//!
//! Everything a node needs to continue an upload (its staging key, multipart id and part ids) is in the
//! database, so any node can take the next chunk or complete it; cleanup is driven from the database too,
//! never by listing a shared bucket. Hashing, offsets and sessions are the services' business
//! (`services/ingest.rs`); a store only keeps bytes.

mod gcs;
mod local;
mod object;
mod registered;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use gcs::GcsObject;
pub use local::LocalBlobStore;
pub use object::{BucketUrl, ObjectBlobStore, PART_BYTES, Provider};
pub use registered::{WithRegistered, registered_key, registered_uri};

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

/// How a store takes bytes while they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Any bytes at any offset, durable when written (the local disk).
    Positional,
    /// Parts of exactly `granule` bytes (the last may be shorter), durable once stored (a bucket).
    Parts { granule: u64 },
}

/// An upload's staging area, as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    /// `staging/{name}`: the local staging file, or the prefix of a bucket upload's tail objects.
    pub key: String,
    /// The object the finished bytes become.
    pub dest: String,
    /// The multipart upload (buckets), once created.
    pub upload_id: Option<String>,
}

impl Staging {
    /// The tail object that holds the bytes after the last full part, while `received` bytes are committed.
    pub fn tail_key(&self, received: u64) -> String {
        format!("{}/tail-{received}", self.key)
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// One line for the start-up log: backend, location and what it can do.
    fn describe(&self) -> String;
    fn layout(&self) -> Layout;

    /// Creates a staging area (idempotent for the local disk); returns the multipart upload's id, if the
    /// store has one.
    async fn begin(&self, staging: &Staging) -> Result<Option<String>>;
    /// Positional stores: writes `data` at `offset` and returns how many bytes it wrote, once they are
    /// durable. Bytes past what the caller commits may be overwritten by the next write.
    async fn write_at(&self, staging: &Staging, offset: u64, data: ByteStream) -> Result<u64>;
    /// Parts stores: stores part `index` (0-based) and returns its id.
    async fn put_part(&self, staging: &Staging, index: u64, data: Bytes) -> Result<String>;
    /// Makes the staged bytes (the first `size` bytes; for parts stores, the given parts in order) the
    /// object `staging.dest`, durably. A positional staging area stays until [`BlobStore::abort`], so a
    /// crash before the caller records completion loses nothing.
    async fn complete(&self, staging: &Staging, size: u64, parts: Vec<String>) -> Result<()>;
    /// Removes a staging area and whatever it holds (idempotent).
    async fn abort(&self, staging: &Staging) -> Result<()>;

    /// Stores a small object whole (a tail).
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;
    /// Streams `range` of an object.
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream>;
    /// Removes an object (idempotent).
    async fn delete(&self, key: &str) -> Result<()>;
    /// An object's size, `None` when there is no such object.
    async fn size(&self, key: &str) -> Result<Option<u64>>;

    /// Every staging area and object present, for the start-up reconciliation of a store only this node
    /// uses (the local disk). A shared bucket is never listed: `None`.
    async fn list_staging(&self) -> Result<Option<Vec<String>>>;
    async fn list_objects(&self) -> Result<Option<Vec<String>>>;

    /// The object's URI for services that read buckets directly (`gs://…`, `s3://…`, `az://…`); `None` on
    /// local disk.
    fn storage_uri(&self, key: &str) -> Option<String>;

    /// A small durable write and its removal, for the health check: fails while writes fail.
    async fn probe(&self) -> Result<()>;
}
