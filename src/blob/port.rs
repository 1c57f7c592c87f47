//! The ports by which bytes enter a store: positional staging (the local disk) or parts (a bucket's
//! multipart upload), and the stream both take.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::BlobResult;
use crate::domain::Staging;

/// A stream of bytes between the HTTP layer, the services and a store. Its errors are domain errors, so
/// a body that stalls or overflows surfaces with its own meaning through a store's write.
pub type ByteStream = BoxStream<'static, crate::error::Result<Bytes>>;

/// Taking bytes at any offset, durable when written (the local disk).
#[async_trait]
pub trait PositionalStaging: Send + Sync {
    /// Creates the staging file (idempotent).
    async fn begin(&self, staging: &Staging) -> BlobResult<()>;
    /// Writes `data` at `offset`; returns how many bytes it wrote, once they are durable. Bytes past what
    /// the caller commits may be overwritten by the next write. The body's own errors come back as they
    /// are (a client that stalled).
    async fn write_at(&self, staging: &Staging, offset: u64, data: ByteStream) -> crate::error::Result<u64>;
    /// Makes the first `size` staged bytes the object `staging.dest`, durably. The staging file stays
    /// until [`PositionalStaging::abort`], so a crash before the caller records completion loses nothing.
    async fn complete(&self, staging: &Staging, size: u64) -> BlobResult<()>;
    /// Removes the staging file (idempotent).
    async fn abort(&self, staging: &Staging) -> BlobResult<()>;
}

/// Taking parts of a fixed size, durable once stored (a bucket's multipart upload on `dest`).
#[async_trait]
pub trait PartStaging: Send + Sync {
    /// The size of every part but the last.
    fn granule(&self) -> u64;
    /// What traces and metrics call the store (`s3`, `gs`, `az`).
    fn provider(&self) -> &'static str;
    /// Creates the multipart upload; returns its id.
    async fn begin(&self, dest: &str) -> BlobResult<String>;
    /// Stores part `index` (0-based) and returns its id.
    async fn put_part(&self, dest: &str, upload_id: &str, index: u64, data: Bytes) -> BlobResult<String>;
    /// Makes the given parts, in order, the object `dest` (no parts: an empty object).
    async fn complete(&self, dest: &str, upload_id: &str, parts: Vec<String>) -> BlobResult<()>;
    /// Abandons the upload and its parts (idempotent).
    async fn abort(&self, dest: &str, upload_id: &str) -> BlobResult<()>;
}

/// How a store takes an upload's bytes.
#[derive(Clone)]
pub enum Writer {
    Positional(Arc<dyn PositionalStaging>),
    Parts(Arc<dyn PartStaging>),
}
