//! Resumable upload sessions: their chunks, the claim of the request writing, the parts stored.

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::meta::{ChunkRecord, Garbage, MetaResult, PartRecord, UploadSession};

/// Resumable upload sessions: their chunks, the claim of the request writing, the parts stored.
#[async_trait]
pub trait UploadRecords: Send + Sync {
    async fn get_upload(&self, token_hash: &str) -> MetaResult<Option<UploadSession>>;
    /// The committed chunk that starts at `offset`, and the hasher state before it (the state after the
    /// chunk that ends at `offset`; `None` for offset 0, meaning the empty state).
    async fn chunk_at(&self, token_hash: &str, offset: u64) -> MetaResult<Option<(Option<Vec<u8>>, ChunkRecord)>>;
    /// Records a chunk (with the parts it stored and the garbage it made: a superseded tail) and advances
    /// the session to `chunk.offset + chunk.length`, if the session is active and still at `chunk.offset`;
    /// `false` when it is not (another request committed first, it ended, or `writer` no longer holds the
    /// claim). The claim stays with `writer`, which may go on to finalize: it ends with
    /// [`UploadRecords::release_writer`].
    async fn commit_chunk(
        &self,
        token_hash: &str,
        chunk: &ChunkRecord,
        parts: &[PartRecord],
        garbage: &[Garbage],
        writer: Option<&str>,
        now: Timestamp,
    ) -> MetaResult<bool>;
    /// Claims the active session for one writing request until `until`, unless another live claim holds it;
    /// `false` then. Racing claimers: one wins.
    async fn claim_writer(&self, token_hash: &str, writer: &str, until: Timestamp, now: Timestamp) -> MetaResult<bool>;
    /// Gives a claim up (a request that ended, whatever its outcome).
    async fn release_writer(&self, token_hash: &str, writer: &str) -> MetaResult<()>;
    /// Records the multipart upload created for a staging area the database already knows; `false` when no
    /// row holds that staging area any more (its upload or import was removed meanwhile).
    async fn set_upload_id(&self, staging_key: &str, upload_id: &str) -> MetaResult<bool>;
    /// The parts stored for a staging area, by index.
    async fn parts(&self, staging_key: &str) -> MetaResult<Vec<PartRecord>>;
}
