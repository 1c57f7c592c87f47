//! The model surfaces' records (`meta::model`): caches (`caches.rs`) and batches (`batches.rs`).

use async_trait::async_trait;

use super::{BULK_DEADLINE, OPERATION_DEADLINE, SqlMeta};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{BatchCursor, BatchRecord, CachedContent, CopyTarget, MetaResult, ModelRecords, Unfinished};

#[async_trait]
impl ModelRecords for SqlMeta {
    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn hold_upstream_copies(&self, copies: &[(String, CopyTarget)], until: Timestamp) -> MetaResult<()> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.hold_copies(copies, until).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_cached_content(&self, cache: &CachedContent) -> MetaResult<()> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.insert_cache(cache).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn cached_content(&self, project: &ProjectId, id: &str) -> MetaResult<Option<CachedContent>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.cache_of(project, id).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn cached_contents(
        &self,
        project: &ProjectId,
        now: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> MetaResult<Vec<CachedContent>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.list_caches(project, now, after, limit).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn update_cached_content(
        &self,
        project: &ProjectId,
        id: &str,
        view: &str,
        expires_at: Timestamp,
    ) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async { self.update_cache(project, id, view, expires_at).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_cached_content(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.delete_cache(project, id).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_expired_cached_contents(&self, now: Timestamp) -> MetaResult<u64> {
        self.guard.bounded(Some(BULK_DEADLINE), async { self.delete_expired_caches(now).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn unfinished_batches(
        &self,
        unfinished: Unfinished<'_>,
        after: Option<&BatchCursor>,
        limit: u32,
    ) -> MetaResult<Vec<BatchRecord>> {
        self.guard.bounded(Some(BULK_DEADLINE), async { self.unfinished(unfinished, after, limit).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn put_batch(
        &self,
        batch: &BatchRecord,
        unfinished: Unfinished<'_>,
        max_unfinished: u64,
    ) -> MetaResult<bool> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async { self.insert_batch(batch, unfinished, max_unfinished).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn unfinished_batch_count(&self, project: &ProjectId, unfinished: Unfinished<'_>) -> MetaResult<u64> {
        self.guard
            .bounded(Some(OPERATION_DEADLINE), async {
                let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
                self.count_unfinished(&mut conn, project, unfinished).await
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn batch(&self, project: &ProjectId, id: &str) -> MetaResult<Option<BatchRecord>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.batch_of(project, id).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn batches(&self, project: &ProjectId, after: Option<&str>, limit: u32) -> MetaResult<Vec<BatchRecord>> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.list_batches(project, after, limit).await }).await
    }

    #[tracing::instrument(skip_all, fields(db.system.name = self.engine.system()))]
    async fn delete_batch(&self, project: &ProjectId, id: &str) -> MetaResult<bool> {
        self.guard.bounded(Some(OPERATION_DEADLINE), async { self.delete_batch_row(project, id).await }).await
    }
}
