//! The resumable upload engine: start, write (upload / finalize), query and cancel.
//!
//! A session accepts new bytes only at its committed offset. A chunk is streamed to the staging area,
//! counted and hashed on the way, made durable, and only then committed in the metadata store with the
//! new offset and the hasher state — so the reply a client gets is a promise that survives a crash. A
//! chunk that ends at or before the committed offset is a resend: it is accepted when its bytes are
//! proven identical (hashed from the state before it and compared with the state recorded after it),
//! and refused otherwise. Multipart and raw uploads are one-chunk sessions.

mod claim;
mod parted;
#[cfg(test)]
mod tests;
mod write;

pub use parted::PartReceipt;

use std::sync::Arc;

use super::ingest::Ingest;
use super::lifecycle::{self, Companion, Demand};
use super::locks::{KeyedLocks, Running};
use crate::blob::{Blobs, ByteStream};
use crate::config::Limits;
use crate::domain::mime::DEFAULT_MIME_TYPE;
use crate::domain::{
    FileId, FileRecord, FileState, Origin, ProjectId, SecretToken, Staging, Timestamp, new_object_key, staging_key,
};
use crate::error::{Error, Result, UploadError};
use crate::hash::ResumableSha256;
use crate::meta::{Garbage, MetaStore, NewSession, SessionStatus, StagedBytes, UploadSession};
use crate::telemetry::metric;

/// The chunk size clients are told to use (`x-goog-upload-chunk-granularity`), as Google's service does.
pub const CHUNK_GRANULARITY: u64 = crate::blob::PART_BYTES;

pub struct Uploads {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    limits: Limits,
    /// Requests on one session run one at a time on this node.
    locks: KeyedLocks,
    /// The chunk being written per session, so that a cancel stops it at once.
    running: Running,
}

/// How much a new upload will hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredSize {
    /// Exactly this many bytes (resumable and raw uploads): finalize checks it.
    Exact(u64),
    /// At most this many (a multipart body, whose media is smaller than the whole body).
    AtMost(u64),
}

/// What a client asks for when it starts an upload.
#[derive(Debug, Clone)]
pub struct StartUpload {
    pub project: ProjectId,
    /// A user-chosen name (`files/x` or `x`); generated when absent.
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: DeclaredSize,
    /// `Upload`, or `Generated` for a file filegate makes itself (a batch's results).
    pub origin: Origin,
    /// How long the file is kept; `FILEGATE_DEFAULT_TTL_SECONDS` when `None`.
    pub ttl: Option<std::time::Duration>,
}

#[derive(Debug)]
pub struct Started {
    pub token: SecretToken,
    pub file: FileRecord,
}

/// Where a session stands after a request.
#[derive(Debug)]
pub enum Progress {
    Active { received: u64 },
    Final(Box<FileRecord>),
}

impl Uploads {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>, limits: Limits) -> Self {
        Self { meta, blobs, limits, locks: KeyedLocks::default(), running: Running::default() }
    }

    /// Opens a session: validates the metadata, reserves the declared size against the project's quota,
    /// and creates the staging area.
    pub async fn start(&self, request: StartUpload) -> Result<Started> {
        let id = match request.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => FileId::parse_user_name(name)?,
            None => FileId::generate(),
        };
        if let Some(name) = &request.display_name {
            if name.chars().count() > crate::domain::MAX_DISPLAY_NAME_CHARS {
                return Err(Error::invalid(format!(
                    "displayName is longer than {} characters.",
                    crate::domain::MAX_DISPLAY_NAME_CHARS
                )));
            }
        }
        let mime_type = request.mime_type.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MIME_TYPE.into());
        let mime_type = crate::domain::mime::resolve_alias(mime_type);
        self.limits.media_types.check(&mime_type)?;
        let (declared_size, reserve) = match request.size {
            DeclaredSize::Exact(size) if size > self.limits.max_file_bytes => {
                return Err(Error::FileTooLarge { size, limit: self.limits.max_file_bytes });
            }
            DeclaredSize::Exact(size) => (Some(size), size),
            DeclaredSize::AtMost(size) => (None, size.min(self.limits.max_file_bytes)),
        };

        let now = Timestamp::now();
        let expires_at = now.plus_seconds(request.ttl.unwrap_or(self.limits.default_ttl).as_secs());
        let token = SecretToken::generate();
        let token_hash = token.hash();
        let file = FileRecord {
            blob_key: new_object_key(&request.project, &id),
            project: request.project,
            id,
            display_name: request.display_name,
            mime_type,
            size_bytes: declared_size,
            sha256: None,
            state: FileState::Uploading,
            origin: request.origin,
            charged_bytes: reserve,
            created_at: now,
            updated_at: now,
            expires_at,
            error: None,
            import: None,
        };
        let session = NewSession {
            staging_key: staging_key(&token_hash),
            token_hash,
            project: file.project.clone(),
            file_id: file.id.clone(),
            blob_key: file.blob_key.to_string(),
            declared_size,
            hasher_state: ResumableSha256::new().to_bytes(),
            created_at: now,
            expires_at,
        };
        // The database knows the staging area before it exists: whatever a crash leaves, the janitor finds
        // from the rows (a bucket is never listed).
        self.open_session(&file, &session, now).await?;
        let staging = Staging { key: session.staging_key.clone(), dest: file.blob_key.to_string(), upload_id: None };
        let created = match Ingest::begin_recorded(self.meta.as_ref(), &self.blobs, staging).await {
            Ok(Some(_)) => Ok(()),
            // Removed before the start could answer (its file deleted by name): nothing was left behind.
            Ok(None) => Err(Error::Upload(UploadError::Cancelled)),
            Err(e) => Err(e),
        };
        if let Err(e) = created {
            if let Ok(Some(session)) = self.meta.get_upload(&session.token_hash).await {
                let _ = self.end_session(&session, Timestamp::now()).await;
            }
            return Err(e);
        }
        metrics::counter!(metric::UPLOADS_STARTED).increment(1);
        Ok(Started { token, file })
    }

    /// Inserts the file (state `uploading`) and its session, if the name is free (a user-chosen name held
    /// only by an expired file is free: that file goes now) and the project's limits admit them.
    async fn open_session(&self, file: &FileRecord, session: &NewSession, now: Timestamp) -> Result<()> {
        let mut tx = self.meta.write().await?;
        tx.lock_project(&file.project).await?;
        if let Some(existing) = tx.file(&file.project, &file.id).await? {
            if !existing.is_expired(now) {
                return Err(Error::AlreadyExists(file.id.to_string()));
            }
            lifecycle::remove(tx.as_mut(), &existing.blob_key, now).await?;
        }
        let demand = Demand { bytes: file.charged_bytes, file: true, upload: true, import: false };
        lifecycle::admit(tx.as_mut(), &file.project, &self.limits, &demand, now).await?;
        lifecycle::add(tx.as_mut(), file, Companion::Session(session)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, token: &SecretToken) -> Result<UploadSession> {
        match self.meta.get_upload(&token.hash()).await? {
            Some(session) if session.expires_at > Timestamp::now() => Ok(session),
            _ => Err(UploadError::SessionNotFound.into()),
        }
    }

    /// `query`: the committed offset, and the file once the session is final.
    pub async fn query(&self, token: &SecretToken) -> Result<Progress> {
        let session = self.session(token).await?;
        match session.status {
            SessionStatus::Active => Ok(Progress::Active { received: session.received_bytes }),
            SessionStatus::Final => {
                let file = self.final_file(&session).await?.ok_or(UploadError::SessionNotFound)?;
                Ok(Progress::Final(Box::new(file)))
            }
            SessionStatus::Cancelled => Err(UploadError::Cancelled.into()),
        }
    }

    /// `cancel`: ends the session, releases its quota and deletes its staged bytes. It does not wait for a
    /// chunk being written: the session is cancelled in the database first (so no later commit succeeds,
    /// on any node), then a chunk streaming on this node is stopped at once.
    pub async fn cancel(&self, token: &SecretToken) -> Result<()> {
        let session = self.session(token).await?;
        match session.status {
            SessionStatus::Active => {}
            SessionStatus::Final => return Err(UploadError::AlreadyFinalized.into()),
            SessionStatus::Cancelled => return Err(UploadError::Cancelled.into()),
        }
        let Some(garbage) = self.end_session(&session, Timestamp::now()).await? else {
            // A finalize or another cancel got there first.
            return Err(match self.session(token).await?.status {
                SessionStatus::Final => UploadError::AlreadyFinalized.into(),
                _ => UploadError::Cancelled.into(),
            });
        };
        self.running.cancel(&session.token_hash);
        crate::services::garbage::reclaim_now(self.meta.as_ref(), self.blobs.as_ref(), &garbage).await;
        Ok(())
    }

    /// Cancels an active session: its file row goes (releasing its reservation at once) and its staged
    /// bytes are queued for deletion; returns what was queued. `None` when the session was not active.
    async fn end_session(&self, session: &UploadSession, now: Timestamp) -> Result<Option<Vec<Garbage>>> {
        let mut tx = self.meta.write().await?;
        tx.lock_project(&session.project).await?;
        let Some(current) = tx.session(&session.token_hash).await?.filter(|s| s.status == SessionStatus::Active) else {
            return Ok(None);
        };
        // Removing the file cancels its session too.
        let garbage = match lifecycle::remove(tx.as_mut(), &current.session_blob_key, now).await? {
            Some((_, garbage)) => garbage,
            None => {
                tx.set_session_status(&current.token_hash, SessionStatus::Cancelled, now).await?;
                let staged = StagedBytes { staging: current.staging(), received: current.received_bytes };
                let garbage = lifecycle::staged_garbage(&staged);
                tx.queue_garbage(&garbage, now).await?;
                garbage
            }
        };
        tx.commit().await?;
        Ok(Some(garbage))
    }

    /// A whole upload in one request (multipart and raw): start, write everything, finalize. On failure
    /// the session is cancelled, so nothing stays reserved.
    pub async fn upload_whole(&self, request: StartUpload, body: ByteStream) -> Result<FileRecord> {
        let started = self.start(request).await?;
        match self.write(&started.token, Some(0), true, body).await {
            Ok(Progress::Final(file)) => Ok(*file),
            Ok(Progress::Active { .. }) => Err(Error::internal("a one-shot upload did not finalize")),
            Err(e) => {
                if let Err(cancel_error) = self.cancel(&started.token).await {
                    tracing::warn!(error = %cancel_error, "cancelling a failed one-shot upload failed");
                }
                Err(e)
            }
        }
    }
}
