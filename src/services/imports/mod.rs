//! URL imports: `POST /v1/files {source_url, …}` enqueues a task; workers fetch the source into the blob
//! store; clients poll (or long-poll) the task. An import is an ordinary file with a second view, so it
//! shares the file table, the blob store, quotas and expiry with uploads.

mod answer;
mod attempt;
mod fetch;
mod mime;
mod ranged;
mod source;
mod task;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::services::egress;
pub use crate::services::egress::AddressPolicy;
pub(crate) use mime::detect as detect_mime;
pub use worker::Workers;

use super::lifecycle::{self, Companion, Demand};
use super::locks::Running;
use crate::blob::Blobs;
use crate::config::{ImportConfig, Limits};
use crate::domain::MAX_DISPLAY_NAME_CHARS;
use crate::domain::{
    FieldCode, FileId, FileRecord, FileState, IMPORT_ID_PREFIX, ImportInfo, Origin, ProjectId, Timestamp, glob_matches,
    random_alphanumeric,
};
use crate::domain::{new_object_key, staging_key};
use crate::error::{Error, Result};
use crate::hash::ResumableSha256;
use crate::meta::{MetaStore, NewImport};
use crate::telemetry::metric;

/// `expires_in` bounds, in seconds: one minute to thirty days.
pub const MIN_EXPIRES_IN: i64 = 60;
pub const MAX_EXPIRES_IN: i64 = 30 * 24 * 3600;
/// An Idempotency-Key names its import for this long.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest `?wait=` a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What imports may do: their configuration, the limits every file obeys, and the SSRF policy.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub config: ImportConfig,
    pub limits: Limits,
    pub policy: Arc<AddressPolicy>,
}

impl ImportSettings {
    pub fn new(config: ImportConfig, limits: Limits) -> Self {
        let policy = Arc::new(AddressPolicy::new(config.allow_cidrs.clone()));
        Self { config, limits, policy }
    }
}

/// What the service, the workers and the file service of one node share.
pub struct ImportQueue {
    /// Poked when a task is enqueued, so an idle worker claims it at once.
    wake: Notify,
    /// Poked when a task changes state, so long-polls answer at once.
    changed: Notify,
    /// Tasks running on this node, to cancel them when their file is deleted.
    pub(crate) running: Running,
    /// Cancelled when the server shuts down: long-polls answer at once instead of holding the drain.
    pub closing: CancellationToken,
}

/// A validated `POST /v1/files` request.
#[derive(Debug, Clone, Default)]
pub struct CreateImport {
    pub source_url: Option<String>,
    pub model: Option<String>,
    pub expires_in: Option<i64>,
    pub display_name: Option<String>,
    pub sha256: Option<String>,
    pub idempotency_key: Option<String>,
    /// The import's own webhooks (`webhook_config`), checked and as stored (`services::webhooks`).
    pub webhook_config: Option<String>,
}

impl ImportQueue {
    /// `closing` is cancelled when the server shuts down.
    pub fn new(closing: CancellationToken) -> Self {
        Self { wake: Notify::new(), changed: Notify::new(), running: Running::default(), closing }
    }
}

pub struct Imports {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    settings: ImportSettings,
    queue: Arc<ImportQueue>,
}

/// The file's name from the URL: its last path segment, percent-decoded.
fn name_from_url(url: &url::Url) -> Option<String> {
    let segment = url.path_segments()?.next_back().filter(|s| !s.is_empty())?;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    (!decoded.trim().is_empty()).then(|| decoded.chars().take(MAX_DISPLAY_NAME_CHARS).collect())
}

impl Imports {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>, settings: ImportSettings, queue: Arc<ImportQueue>) -> Self {
        Self { meta, blobs, settings, queue }
    }

    /// The workers that fetch this service's tasks.
    pub fn workers(&self) -> Workers {
        Workers::new(self.meta.clone(), self.blobs.clone(), self.settings.clone(), self.queue.clone())
    }

    /// Validates and enqueues an import; answers at once, before any byte is fetched.
    pub async fn create(&self, project: ProjectId, request: CreateImport) -> Result<FileRecord> {
        let raw_url = request
            .source_url
            .ok_or_else(|| Error::invalid_field(FieldCode::MissingSourceUrl, "source_url is required"))?;
        let url = egress::check_url(&raw_url, &self.settings.policy).map_err(|problem| match problem {
            egress::UrlProblem::Invalid(why) => Error::invalid_field(FieldCode::InvalidSourceUrl, why),
            egress::UrlProblem::Forbidden(ip) => Error::invalid_field(
                FieldCode::ForbiddenAddress,
                format!("source_url points at {ip}, an address imports may not reach"),
            ),
        })?;
        let model = request.model.ok_or_else(|| Error::invalid_field(FieldCode::MissingModel, "model is required"))?;
        if model.is_empty() || model.chars().count() > 128 {
            return Err(Error::invalid_field(FieldCode::InvalidModel, "model must be 1 to 128 characters"));
        }
        if !self.settings.config.models.iter().any(|pattern| glob_matches(pattern, &model)) {
            return Err(Error::invalid_field(
                FieldCode::ModelNotAllowed,
                format!("model \"{model}\" is not allowed here (allowed: {})", self.settings.config.models.join(", ")),
            ));
        }
        let expires_in = request.expires_in.unwrap_or(self.settings.limits.default_ttl.as_secs() as i64);
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&expires_in) {
            return Err(Error::invalid_field(
                FieldCode::InvalidExpiresIn,
                format!("expires_in must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds, got {expires_in}"),
            ));
        }
        if request.display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_CHARS) {
            let message = format!("display_name is longer than {MAX_DISPLAY_NAME_CHARS} characters");
            return Err(Error::invalid_field(FieldCode::InvalidDisplayName, message));
        }
        let sha256 = match request.sha256 {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hex.to_ascii_lowercase())
            }
            Some(_) => {
                return Err(Error::invalid_field(FieldCode::InvalidSha256, "sha256 must be 64 hexadecimal characters"));
            }
            None => None,
        };
        if let Some(key) = &request.idempotency_key {
            if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(Error::invalid_field(
                    FieldCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be 1 to 255 printable ASCII characters",
                ));
            }
        }

        let fingerprint = {
            let canonical = serde_json::json!([
                url.as_str(),
                model,
                expires_in,
                request.display_name,
                sha256,
                request.webhook_config
            ]);
            hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
        };
        let now = Timestamp::now();
        let id = FileId::generate();
        let file = FileRecord {
            blob_key: new_object_key(&project, &id),
            display_name: request.display_name.or_else(|| name_from_url(&url)),
            mime_type: mime_guess::from_path(url.path()).first_or_octet_stream().essence_str().to_owned(),
            project,
            id,
            size_bytes: None,
            sha256: None,
            state: FileState::Pending,
            origin: Origin::Import,
            charged_bytes: 0,
            created_at: now,
            updated_at: now,
            expires_at: now.plus_seconds(expires_in as u64),
            error: None,
            import: None,
        };
        let task = NewImport {
            blob_key: file.blob_key.to_string(),
            project: file.project.clone(),
            file_id: file.id.clone(),
            source_url: url.to_string(),
            model,
            expected_sha256: sha256,
            staging_key: staging_key(&format!("import-{}", random_alphanumeric(24))),
            hasher_state: ResumableSha256::new().to_bytes(),
            created_at: now,
            traceparent: crate::telemetry::traces::current_traceparent(),
        };
        let idempotency = request.idempotency_key.map(|key| (key, fingerprint));
        match self.enqueue(&file, &task, idempotency.as_ref(), request.webhook_config.as_deref()).await? {
            // The answer is the task as created (`pending`), even if a worker has claimed it meanwhile.
            None => {
                metrics::counter!(metric::IMPORTS_CREATED).increment(1);
                self.queue.wake.notify_one();
                let import = ImportInfo {
                    source_url: task.source_url,
                    model: task.model,
                    received_bytes: 0,
                    stored_bytes: 0,
                    total_bytes: None,
                };
                Ok(FileRecord { import: Some(import), ..file })
            }
            Some(existing) => self.get(&file.project, &existing.import_id(), None).await,
        }
    }

    /// Inserts the file (state `pending`) and its task, unless the Idempotency-Key names a live import
    /// created in the last 24 hours: the same request gets that import back (`Some`), a different one a
    /// conflict. A key whose import is gone (deleted, expired) is free again.
    async fn enqueue(
        &self,
        file: &FileRecord,
        task: &NewImport,
        idempotency: Option<&(String, String)>,
        webhook_config: Option<&str>,
    ) -> Result<Option<FileId>> {
        let now = file.created_at;
        let mut tx = self.meta.write().await?;
        tx.lock_project(&file.project).await?;
        if let Some((key, request_hash)) = idempotency {
            let window_start = Timestamp::from_micros(now.as_micros() - IDEMPOTENCY_WINDOW.as_micros() as i64);
            let previous = tx.idempotency(&file.project, key).await?.filter(|r| r.created_at > window_start);
            if let Some((id, expires_at)) = previous.as_ref().and_then(|r| r.file.clone()) {
                if expires_at > now {
                    if previous.is_some_and(|r| r.request_hash == *request_hash) {
                        return Ok(Some(id));
                    }
                    return Err(Error::IdempotencyConflict(key.clone()));
                }
            }
        }
        let demand = Demand { bytes: 0, file: true, upload: false, import: true };
        lifecycle::admit(tx.as_mut(), &file.project, &self.settings.limits, &demand, now).await?;
        lifecycle::add(tx.as_mut(), file, Companion::Import(task)).await?;
        if let Some(config) = webhook_config {
            tx.set_request_webhooks(&file.blob_key, config).await?;
        }
        if let Some((key, request_hash)) = idempotency {
            tx.put_idempotency(&file.project, key, request_hash, &file.blob_key, now).await?;
        }
        tx.commit().await?;
        Ok(None)
    }

    /// The import `qfile-{id}` of `project`; with `wait`, answers once it is final or `wait` has passed.
    pub async fn get(&self, project: &ProjectId, import_id: &str, wait: Option<Duration>) -> Result<FileRecord> {
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default().min(MAX_WAIT);
        loop {
            let changed = self.queue.changed.notified();
            let file = self.visible(project, import_id).await?;
            let settled = matches!(file.state, FileState::Ready | FileState::Failed);
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(file);
            }
            // Woken by this node's workers; polling covers tasks that run on another node.
            let poll = deadline.min(tokio::time::Instant::now() + Duration::from_millis(500));
            tokio::select! {
                () = self.queue.closing.cancelled() => return Ok(file),
                _ = tokio::time::timeout_at(poll, changed) => {}
            }
        }
    }

    async fn visible(&self, project: &ProjectId, import_id: &str) -> Result<FileRecord> {
        let not_found = || Error::FileNotFound(import_id.to_owned());
        let id = import_id.strip_prefix(IMPORT_ID_PREFIX).ok_or_else(not_found)?;
        match self.meta.get_file(project, &FileId::from_path(id)).await? {
            Some(file) if file.import.is_some() && !file.is_expired(Timestamp::now()) => Ok(file),
            _ => Err(not_found()),
        }
    }

    /// Deletes an import: a running fetch stops, the bytes go, the quota is released.
    pub async fn delete(&self, project: &ProjectId, import_id: &str) -> Result<FileRecord> {
        let file = self.visible(project, import_id).await?;
        let (meta, blobs, running) = (self.meta.as_ref(), self.blobs.as_ref(), &self.queue.running);
        lifecycle::delete(meta, blobs, running, project, &file.id).await.map_err(|e| match e {
            Error::FileNotFound(_) => Error::FileNotFound(import_id.to_owned()),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_name_defaults_to_the_decoded_last_path_segment() {
        let name = |u: &str| name_from_url(&url::Url::parse(u).unwrap());
        assert_eq!(name("https://example.com/videos/running%20man.mp4?x=1").as_deref(), Some("running man.mp4"));
        assert_eq!(name("https://example.com/a+b.pdf").as_deref(), Some("a+b.pdf"));
        assert_eq!(name("https://example.com/"), None);
    }
}
