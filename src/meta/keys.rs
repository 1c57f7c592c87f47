//! Projects and their API keys (only hashes are stored).

use async_trait::async_trait;

use crate::domain::{ProjectId, Timestamp};
use crate::meta::{ApiKeyInfo, MetaResult};

/// Projects and their API keys (only hashes are stored).
#[async_trait]
pub trait KeyRecords: Send + Sync {
    async fn ensure_project(&self, project: &ProjectId) -> MetaResult<()>;
    async fn insert_api_key(&self, project: &ProjectId, key_hash: &str, label: &str) -> MetaResult<()>;
    async fn project_for_key(&self, key_hash: &str) -> MetaResult<Option<ProjectId>>;
    async fn count_api_keys(&self) -> MetaResult<u64>;
    /// Keys, revoked ones included, oldest first; those of `project` only when given.
    async fn list_api_keys(&self, project: Option<&ProjectId>) -> MetaResult<Vec<ApiKeyInfo>>;
    /// Revokes the key whose id is `id`; `None` when no key has that id, else the key as it is now (a key
    /// revoked before keeps its first revocation time).
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> MetaResult<Option<ApiKeyInfo>>;
    /// Records that the key was accepted at `now`.
    async fn key_used(&self, key_hash: &str, now: Timestamp) -> MetaResult<()>;
}
