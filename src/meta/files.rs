//! Reading files, and the console's download links to them.

use async_trait::async_trait;

use crate::domain::{FileId, FileRecord, ProjectId, Timestamp};
use crate::meta::{ListCursor, MetaResult};

/// Reading files, and the console's download links to them.
#[async_trait]
pub trait FileRecords: Send + Sync {
    /// The row as stored, whatever its state or expiry; callers decide what is visible.
    async fn get_file(&self, project: &ProjectId, id: &FileId) -> MetaResult<Option<FileRecord>>;
    /// Visible (not `uploading`), unexpired files, newest first, strictly after `after`.
    async fn list_files(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> MetaResult<Vec<FileRecord>>;
    /// Records a download link (the console's): the SHA-256 of its token → a file, until `expires_at`.
    async fn put_download_link(
        &self,
        token_hash: &str,
        project: &ProjectId,
        file: &FileId,
        expires_at: Timestamp,
    ) -> MetaResult<()>;
    /// The file a live download link names.
    async fn download_link(&self, token_hash: &str, now: Timestamp) -> MetaResult<Option<(ProjectId, FileId)>>;
}
