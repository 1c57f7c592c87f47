//! Copies of files made so that an upstream can read them by reference: an object in the Vertex staging
//! bucket (`FILEGATE_VERTEX_STAGING_BUCKET`), or a file in the Gemini API's Files API. Each is made once per
//! file generation, recorded in the metadata store (so every node reuses it), and deleted upstream once its
//! file is gone or it expires.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::upstream::UpstreamClient;
use crate::blob::Blobs;
use crate::domain::{FileRecord, Timestamp};
use crate::error::{Error, Result, UpstreamError};
use crate::meta::{CopyTarget, MetaStore, UpstreamCopy};
use crate::services::ingest::write_object;
use crate::services::locks::KeyedLocks;
use crate::telemetry::metric;

/// A Google file's copy is trusted until this long before Google's own expiry, so that no call is made
/// with a file about to vanish.
const GOOGLE_EXPIRY_MARGIN_SECONDS: i64 = 3600;

pub struct Copies {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    upstream: Arc<UpstreamClient>,
    staging: Option<Arc<Blobs>>,
    /// One copy of a file at a time on this node; racing nodes settle on one row (`put_upstream_copy`).
    locks: KeyedLocks,
    /// How long to wait for the Gemini API to process an uploaded file.
    processing_timeout: Duration,
}

impl Copies {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<Blobs>,
        upstream: Arc<UpstreamClient>,
        staging: Option<Arc<Blobs>>,
        processing_timeout: Duration,
    ) -> Self {
        Self { meta, blobs, upstream, staging, locks: KeyedLocks::default(), processing_timeout }
    }

    /// The Vertex staging bucket, if one is set.
    pub fn staging(&self) -> Option<Arc<Blobs>> {
        self.staging.clone()
    }

    /// Where a copy of a file that cannot go inline or by its own URI would be made, if anywhere.
    pub fn target(&self) -> Option<CopyTarget> {
        if !self.upstream.is_vertex() {
            Some(CopyTarget::GeminiFiles)
        } else if self.staging.is_some() {
            Some(CopyTarget::VertexStaging)
        } else {
            None
        }
    }

    /// The URI of `file`'s copy at `target`, made now unless a usable one is recorded. The flag says whether
    /// it was recorded before (and may therefore have vanished upstream since).
    pub async fn uri(&self, file: &FileRecord, target: CopyTarget) -> Result<(String, bool)> {
        let now = Timestamp::now();
        if let Some(copy) = self.meta.upstream_copy(&file.blob_key, target).await? {
            if copy.expires_at > now {
                return Ok((copy.uri, true));
            }
        }
        let _one_at_a_time = self.locks.lock(&format!("{}|{}", file.blob_key, target.as_str())).await;
        if let Some(copy) = self.meta.upstream_copy(&file.blob_key, target).await? {
            if copy.expires_at > now {
                return Ok((copy.uri, true));
            }
            // Expired: deleted upstream (best effort: Google deletes its files by itself anyway) to make
            // way for the new copy.
            self.delete_remote(&copy).await;
            self.meta.delete_upstream_copy(&file.blob_key, target).await?;
        }
        let made = match target {
            CopyTarget::VertexStaging => self.stage(file).await?,
            CopyTarget::GeminiFiles => self.upload(file).await?,
        };
        let kept = self.meta.put_upstream_copy(&made).await?;
        if kept.uri != made.uri {
            // Another node recorded its copy first: ours is not needed.
            self.delete_remote(&made).await;
        }
        metrics::counter!(metric::MODEL_FILE_COPIES, "target" => target.as_str()).increment(1);
        metrics::counter!(metric::MODEL_BYTES, "how" => "copy").increment(file.size_bytes.unwrap_or(0));
        Ok((kept.uri, false))
    }

    /// Whether the recorded copy of `file` at `target` is gone upstream (asked of the upstream itself).
    pub async fn vanished(&self, file: &FileRecord, target: CopyTarget) -> Result<bool> {
        let Some(copy) = self.meta.upstream_copy(&file.blob_key, target).await? else { return Ok(true) };
        let Some(name) = &copy.remote_name else { return Ok(false) };
        match (target, &self.staging) {
            (CopyTarget::VertexStaging, Some(store)) => Ok(store.objects().size(name).await?.is_none()),
            (CopyTarget::GeminiFiles, _) => match self.upstream.get_file(name).await {
                Ok(google) => Ok(google.state == "FAILED"),
                Err(UpstreamError::Status { status: 403 | 404, .. }) => Ok(true),
                Err(e) => Err(e.into()),
            },
            (CopyTarget::VertexStaging, None) => Ok(false),
        }
    }

    /// Drops the record of a copy the upstream no longer knows; the next call makes a new one.
    pub async fn forget(&self, file: &FileRecord, target: CopyTarget) -> Result<()> {
        Ok(self.meta.delete_upstream_copy(&file.blob_key, target).await?)
    }

    /// Copies the file into the staging bucket through an ingest session (one part in memory at a time),
    /// its SHA-256 checked against the file's on the way.
    async fn stage(&self, file: &FileRecord) -> Result<UpstreamCopy> {
        let staging_store = self.staging.as_ref().ok_or_else(|| Error::internal("no staging bucket"))?;
        let size = file.size_bytes.unwrap_or(0);
        let body = self.blobs.read(&file.blob_key, 0..size).await?;
        let digest = write_object(staging_store, file.blob_key.to_string(), body, size).await?;
        if file.sha256.is_some_and(|sha256| sha256 != digest) {
            let _ = staging_store.objects().delete(&file.blob_key).await;
            return Err(Error::internal(format!("{}: the bytes read are not the file's", file.blob_key)));
        }
        let uri = staging_store.storage_uri(&file.blob_key).ok_or_else(|| Error::internal("no gs:// URI"))?;
        Ok(UpstreamCopy {
            blob_key: file.blob_key.to_string(),
            target: CopyTarget::VertexStaging,
            project: file.project.clone(),
            uri,
            remote_name: Some(file.blob_key.to_string()),
            created_at: Timestamp::now(),
            expires_at: file.expires_at,
        })
    }

    /// Uploads the file to the Gemini API's Files API, streamed, and waits until Google has processed it.
    async fn upload(&self, file: &FileRecord) -> Result<UpstreamCopy> {
        let size = file.size_bytes.unwrap_or(0);
        let bytes = self.blobs.read(&file.blob_key, 0..size).await?;
        let body = reqwest::Body::wrap_stream(bytes.map(|chunk| chunk.map_err(std::io::Error::other)));
        let display_name = format!("filegate {}", file.id);
        let mut google = self.upstream.upload_file(&display_name, &file.mime_type, size, body).await?;
        let deadline = tokio::time::Instant::now() + self.processing_timeout;
        let mut pause = Duration::from_millis(200);
        while google.state != "ACTIVE" {
            if google.state == "FAILED" {
                let _ = self.upstream.delete_file(&google.name).await;
                return Err(Error::FailedPrecondition(format!(
                    "The Gemini API could not process the file {} ({}).",
                    file.id, file.mime_type
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.upstream.delete_file(&google.name).await;
                return Err(
                    UpstreamError::Stalled { upstream: self.upstream.name(), after: self.processing_timeout }.into()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            google = self.upstream.get_file(&google.name).await?;
        }
        let google_expiry = google
            .expiration_time
            .as_deref()
            .and_then(Timestamp::parse_rfc3339)
            .map(|t| Timestamp::from_micros(t.as_micros() - GOOGLE_EXPIRY_MARGIN_SECONDS * 1_000_000));
        let expires_at = google_expiry.map_or(file.expires_at, |g| g.min(file.expires_at));
        Ok(UpstreamCopy {
            blob_key: file.blob_key.to_string(),
            target: CopyTarget::GeminiFiles,
            project: file.project.clone(),
            uri: google.uri,
            remote_name: Some(google.name),
            created_at: Timestamp::now(),
            expires_at,
        })
    }

    /// Deletes a copy upstream; `true` when its record may go (deleted, or not this configuration's to
    /// delete: made for another upstream or staging bucket, where it expires by itself or by the bucket's
    /// lifecycle rule).
    async fn delete_remote(&self, copy: &UpstreamCopy) -> bool {
        let Some(name) = &copy.remote_name else { return true };
        let deleted = match (copy.target, &self.staging) {
            (CopyTarget::VertexStaging, Some(store)) => store.objects().delete(name).await.map_err(Error::from),
            (CopyTarget::GeminiFiles, _) if !self.upstream.is_vertex() => {
                self.upstream.delete_file(name).await.map_err(Error::from)
            }
            _ => {
                tracing::info!(copy = %copy.uri, "forgetting a copy made under another configuration");
                return true;
            }
        };
        match deleted {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, copy = %copy.uri, "could not delete an upstream copy; will retry");
                false
            }
        }
    }

    /// Deletes the copies of files that are gone and copies that expired, unless a live cache holds them;
    /// returns how many went. Expired caches are forgotten on the way (the upstream drops them itself).
    pub async fn sweep(&self) -> Result<u64> {
        self.meta.delete_expired_cached_contents(Timestamp::now()).await?;
        let mut removed = 0;
        for copy in self.meta.stale_upstream_copies(Timestamp::now(), 100).await? {
            if self.delete_remote(&copy).await {
                self.meta.delete_upstream_copy(&copy.blob_key, copy.target).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(copies = n, "upstream copies deleted"),
                Err(e) => tracing::warn!(error = %e, "sweeping upstream copies failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
