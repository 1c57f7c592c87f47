//! The resumable upload engine: start, write (upload / finalize), query and cancel.
//!
//! A session accepts new bytes only at its committed offset. A chunk is streamed to the staging area,
//! counted and hashed on the way, made durable, and only then committed in the metadata store with the
//! new offset and the hasher state — so the reply a client gets is a promise that survives a crash. A
//! chunk that ends at or before the committed offset is a resend: it is accepted when its bytes are
//! proven identical (hashed from the state before it and compared with the state recorded after it),
//! and refused otherwise. Multipart and raw uploads are one-chunk sessions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;

use super::ingest::{Cap, Ingest};
use super::lease;
use super::lifecycle::{self, Companion, Demand};
use super::locks::{KeyedLocks, Running};
use super::meter::{Meter, metered};
use crate::blob::{Blobs, ByteStream, Writer};
use crate::config::Limits;
use crate::domain::mime::DEFAULT_MIME_TYPE;
use crate::domain::{FileId, FileRecord, FileState, Origin, ProjectId, Timestamp, UploadToken, random_alphanumeric};
use crate::domain::{Staging, new_object_key, staging_key};
use crate::error::{Error, Result, UploadError};
use crate::hash::ResumableSha256;
use crate::meta::{
    ChunkRecord, FileUpdate, Garbage, MetaStore, NewSession, SessionStatus, StagedBytes, UploadSession, UsageDelta,
};
use crate::telemetry::metric;

/// The chunk size clients are told to use (`x-goog-upload-chunk-granularity`), as Google's service does.
pub const CHUNK_GRANULARITY: u64 = 8 * 1024 * 1024;

const MAX_DISPLAY_NAME_CHARS: usize = 512;

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
}

#[derive(Debug)]
pub struct Started {
    pub token: UploadToken,
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
            if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
                return Err(Error::invalid(format!("displayName is longer than {MAX_DISPLAY_NAME_CHARS} characters.")));
            }
        }
        let mime_type = request.mime_type.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MIME_TYPE.into());
        self.limits.media_types.check(&mime_type)?;
        let (declared_size, reserve) = match request.size {
            DeclaredSize::Exact(size) if size > self.limits.max_file_bytes => {
                return Err(Error::FileTooLarge { size, limit: self.limits.max_file_bytes });
            }
            DeclaredSize::Exact(size) => (Some(size), size),
            DeclaredSize::AtMost(size) => (None, size.min(self.limits.max_file_bytes)),
        };

        let now = Timestamp::now();
        let expires_at = now.plus_seconds(self.limits.default_ttl.as_secs());
        let token = UploadToken::generate();
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
            origin: Origin::Upload,
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
            blob_key: file.blob_key.clone(),
            declared_size,
            hasher_state: ResumableSha256::new().to_bytes(),
            created_at: now,
            expires_at,
        };
        // The database knows the staging area before it exists: whatever a crash leaves, the janitor finds
        // from the rows (a bucket is never listed).
        self.open_session(&file, &session, now).await?;
        let staging = Staging { key: session.staging_key.clone(), dest: file.blob_key.clone(), upload_id: None };
        let created = match self.blobs.begin(&staging).await {
            Ok(Some(upload_id)) => self.meta.set_upload_id(&staging.key, &upload_id).await.map_err(Error::from),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::from(e)),
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

    async fn session(&self, token: &UploadToken) -> Result<UploadSession> {
        match self.meta.get_upload(&token.hash()).await? {
            Some(session) if session.expires_at > Timestamp::now() => Ok(session),
            _ => Err(UploadError::SessionNotFound.into()),
        }
    }

    /// `upload`, `upload, finalize` and a bare `finalize`. `offset` is `X-Goog-Upload-Offset`; a bare
    /// finalize may omit it.
    pub async fn write(
        &self,
        token: &UploadToken,
        offset: Option<u64>,
        finalize: bool,
        body: ByteStream,
    ) -> Result<Progress> {
        let _guard = self.locks.lock(&token.hash()).await;
        let writer = self.claim_writer(&token.hash()).await?;
        let session = self.session(token).await?;
        // The claim is kept from the first byte to the finalize, so that no other request stores a part
        // between this one's commit and its completion.
        let result = tokio::select! {
            result = self.write_claimed(&session, offset, finalize, body, writer.as_deref()) => result,
            // The claim could not be kept (the database unreachable for most of a lease): stop before
            // another request may take it over.
            () = self.keep_writing(&session, writer.as_deref()) => Err(self.claim_lost(&session).await),
        };
        if let Some(writer) = &writer {
            if let Err(e) = self.meta.release_writer(&token.hash(), writer).await {
                tracing::warn!(error = %e, "releasing a claim on an upload failed; it lapses by itself");
            }
        }
        result
    }

    async fn write_claimed(
        &self,
        session: &UploadSession,
        offset: Option<u64>,
        finalize: bool,
        body: ByteStream,
        writer: Option<&str>,
    ) -> Result<Progress> {
        match session.status {
            SessionStatus::Cancelled => return Err(UploadError::Cancelled.into()),
            SessionStatus::Final => return self.replay_after_final(session, offset, body).await,
            SessionStatus::Active => {}
        }
        let received = session.received_bytes;
        let offset = offset.unwrap_or(received);
        if offset < received {
            // A resend of a committed chunk (its reply was lost). Possibly its finalize never happened.
            let end = self.verify_resend(session, offset, body).await?;
            return if finalize && end == received {
                self.finalize(session, received, &session.hasher_state).await
            } else {
                Ok(Progress::Active { received })
            };
        }
        if offset > received {
            return Err(UploadError::OffsetMismatch { expected: received, got: offset }.into());
        }

        let (received, hasher_state) = self.append(session, body, writer).await?;
        if finalize { self.finalize(session, received, &hasher_state).await } else { Ok(Progress::Active { received }) }
    }

    /// Appends a chunk at the session's committed offset through the ingest engine and commits it (as
    /// `writer`, if the request holds a claim); returns the new offset and hasher state.
    async fn append(&self, session: &UploadSession, body: ByteStream, writer: Option<&str>) -> Result<(u64, Vec<u8>)> {
        let received = session.received_bytes;
        let hasher = ResumableSha256::from_bytes(&session.hasher_state)
            .ok_or_else(|| Error::internal("the session's hasher state is unreadable"))?;
        let (limit, overflow): (u64, Box<dyn Fn() -> Error + Send + Sync>) = match session.declared_size {
            Some(declared) => {
                (declared - received, Box::new(move || UploadError::TooManyBytes { declared, offset: received }.into()))
            }
            None => {
                let max = self.limits.max_file_bytes;
                (max - received, Box::new(move || Error::FileTooLarge { size: max + 1, limit: max }))
            }
        };
        let mut ingest = Ingest::resume(self.blobs.as_ref(), session.staging(), received, hasher);
        let running = self.running.register(&session.token_hash, None);
        let cap = Cap { bytes: limit, overflow };
        let staged = tokio::select! {
            staged = ingest.stage(body, cap) => staged,
            // A cancel took effect meanwhile: stop reading the chunk now, not when the client is done.
            () = running.token.cancelled() => Err(UploadError::Cancelled.into()),
        };
        drop(running);
        let chunk = staged?;
        let written = chunk.written;
        if written == 0 {
            return Ok((received, chunk.hasher.to_bytes()));
        }
        let token_hash = &session.token_hash;
        let committed = ingest
            .commit(self.meta.as_ref(), chunk, async |chunk| {
                let record =
                    ChunkRecord { offset: chunk.offset, length: written, hasher_state: chunk.hasher.to_bytes() };
                let garbage = chunk.superseded.as_slice();
                Ok(self.meta.commit_chunk(token_hash, &record, &chunk.parts, garbage, writer, Timestamp::now()).await?)
            })
            .await?;
        if !committed {
            // Cancelled meanwhile (on another node), or another request committed this offset first.
            let status = self.meta.get_upload(token_hash).await?.map(|s| s.status);
            return Err(match status {
                Some(SessionStatus::Cancelled) => UploadError::Cancelled.into(),
                _ => UploadError::ResendMismatch { offset: received, len: written }.into(),
            });
        }
        metrics::counter!(metric::UPLOAD_BYTES).increment(written);
        Ok((ingest.received(), ingest.hasher().to_bytes()))
    }

    /// How long a request waits for another that keeps its claim alive before answering 503.
    const WRITER_WAIT: Duration = Duration::from_secs(300);

    /// On a bucket, whose sessions any node may serve, a request first claims its session in the
    /// database, so that two requests racing on one upload (on two nodes) never store parts over each
    /// other. A request that finds the session claimed waits for the claim (the other request ends, or its
    /// node died and the claim lapses), then sees the session as the other left it: a resend, a new
    /// offset — what it would see on one node, where requests on one session run one after the other.
    /// `None` on the local disk: one node, whose requests on one session already run one at a time.
    async fn claim_writer(&self, token_hash: &str) -> Result<Option<String>> {
        if matches!(self.blobs.writer(), Writer::Positional(_)) {
            return Ok(None);
        }
        let writer = random_alphanumeric(16);
        let waited = std::time::Instant::now();
        loop {
            let now = Timestamp::now();
            let until = now.plus_seconds(self.limits.upload_claim.as_secs());
            if self.meta.claim_writer(token_hash, &writer, until, now).await? {
                return Ok(Some(writer));
            }
            // Only an active session is claimed: any other answers with what it is, at once.
            let active = self.meta.get_upload(token_hash).await?.is_some_and(|s| s.status == SessionStatus::Active);
            if !active {
                return Ok(None);
            }
            if waited.elapsed() > Self::WRITER_WAIT {
                return Err(Error::retry("Another request has been writing to this upload for 5 minutes."));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keeps this request's claim on the session alive; returns only if it could not (never without one).
    async fn keep_writing(&self, session: &UploadSession, writer: Option<&str>) {
        let Some(writer) = writer else { return std::future::pending().await };
        let (meta, token_hash, writer) = (self.meta.clone(), session.token_hash.clone(), writer.to_owned());
        // Renewed every third of it, while the request runs, however slowly its client sends: a waiting
        // request waits this long at most after the node holding the claim died.
        let lease = self.limits.upload_claim;
        lease::keep_alive(lease, move || {
            let (meta, token_hash, writer) = (meta.clone(), token_hash.clone(), writer.clone());
            Box::pin(async move {
                let now = Timestamp::now();
                let until = now.plus_seconds(lease.as_secs());
                Ok(meta.claim_writer(&token_hash, &writer, until, now).await?)
            })
        })
        .await;
    }

    /// What a request that lost its claim answers: as on one node, the offset is taken if another
    /// request committed there (409, final); only a database that cannot be reached is worth a retry.
    async fn claim_lost(&self, session: &UploadSession) -> Error {
        match self.meta.get_upload(&session.token_hash).await {
            Ok(Some(now)) if now.status == SessionStatus::Cancelled => UploadError::Cancelled.into(),
            Ok(Some(now)) if now.received_bytes > session.received_bytes || now.status == SessionStatus::Final => {
                UploadError::ResendMismatch {
                    offset: session.received_bytes,
                    len: now.received_bytes - session.received_bytes,
                }
                .into()
            }
            Ok(None) => UploadError::SessionNotFound.into(),
            Ok(Some(_)) | Err(_) => {
                Error::retry("This request could not keep its claim on the upload; send the chunk again.")
            }
        }
    }

    async fn finalize(&self, session: &UploadSession, received: u64, hasher_state: &[u8]) -> Result<Progress> {
        if let Some(declared) = session.declared_size {
            if received != declared {
                return Err(UploadError::SizeMismatch { declared, received }.into());
            }
        }
        let digest = ResumableSha256::from_bytes(hasher_state)
            .ok_or_else(|| Error::internal("the session's hasher state is unreadable"))?
            .digest();
        let blob_key = session.blob_key.as_deref().ok_or(UploadError::SessionNotFound)?;
        // A session read before the chunk just committed: the parts and offset are the database's now.
        let ingest = Ingest::resume(self.blobs.as_ref(), session.staging(), received, ResumableSha256::new());
        let parts = self.meta.parts(&ingest.staging().key).await?;
        let garbage = ingest.complete(&parts).await?;
        let Some(file) = self.mark_final(session, received, digest, &garbage, Timestamp::now()).await? else {
            let (meta, blobs) = (self.meta.as_ref(), self.blobs.as_ref());
            super::garbage::drop_if_orphaned(meta, blobs, &session.project, &session.file_id, blob_key).await;
            return Err(UploadError::SessionNotFound.into());
        };
        // The finalize queued the staging area as garbage; remove it now rather than at the sweep.
        ingest.reclaim(self.meta.as_ref(), &garbage).await;
        metrics::counter!(metric::UPLOADS_FINALIZED).increment(1);
        Ok(Progress::Final(Box::new(file)))
    }

    /// Marks the session final and its file ready with its exact size and digest, charging exactly that
    /// size; `None` when the session is no longer active (cancelled, or its file deleted meanwhile).
    async fn mark_final(
        &self,
        session: &UploadSession,
        size: u64,
        sha256: [u8; 32],
        garbage: &[Garbage],
        now: Timestamp,
    ) -> Result<Option<FileRecord>> {
        let mut tx = self.meta.write().await?;
        tx.lock_project(&session.project).await?;
        let active = tx.session(&session.token_hash).await?.filter(|s| s.status == SessionStatus::Active);
        let Some(file) = active.and_then(|s| s.blob_key) else { return Ok(None) };
        let Some(file) = tx.file_by_blob(&file).await?.filter(|f| f.state == FileState::Uploading) else {
            return Ok(None);
        };
        let update = FileUpdate {
            state: Some(FileState::Ready),
            size_bytes: Some(size),
            sha256: Some(sha256),
            charged_bytes: Some(size),
            ..FileUpdate::default()
        };
        tx.update_file(&file.blob_key, &update, now).await?;
        tx.set_session_status(&session.token_hash, SessionStatus::Final, now).await?;
        let ended = UsageDelta { open_uploads: -1, ..UsageDelta::default() };
        lifecycle::recharge(tx.as_mut(), &file.project, file.charged_bytes, size, ended).await?;
        tx.queue_garbage(garbage, now).await?;
        let file = tx.file_by_blob(&file.blob_key).await?;
        tx.commit().await?;
        Ok(file)
    }

    /// A request on a finalized session succeeds only as a replay: the last chunk resent identically, or
    /// a bare finalize. Both answer with the file, so a client that lost the finalize reply recovers.
    async fn replay_after_final(
        &self,
        session: &UploadSession,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<Progress> {
        let replay = match offset {
            Some(offset) if offset < session.received_bytes => {
                self.verify_resend(session, offset, body).await? == session.received_bytes
            }
            _ => drain_is_empty(body).await?,
        };
        if !replay {
            return Err(UploadError::AlreadyFinalized.into());
        }
        let file = self.final_file(session).await?.ok_or(UploadError::SessionNotFound)?;
        Ok(Progress::Final(Box::new(file)))
    }

    /// Proves that `body` repeats the committed chunk at `offset`; returns where that chunk ends.
    async fn verify_resend(&self, session: &UploadSession, offset: u64, body: ByteStream) -> Result<u64> {
        let mismatch = || UploadError::OffsetMismatch { expected: session.received_bytes, got: offset };
        let (before, chunk) = self.meta.chunk_at(&session.token_hash, offset).await?.ok_or_else(mismatch)?;
        let hasher = match before {
            None => ResumableSha256::new(),
            Some(state) => {
                ResumableSha256::from_bytes(&state).ok_or_else(|| Error::internal("unreadable chunk hasher state"))?
            }
        };
        let meter = Arc::new(Mutex::new(Meter { bytes: 0, hasher }));
        let len = chunk.length;
        let conflict = move || Error::from(UploadError::ResendMismatch { offset, len });
        let mut body = metered(body, meter.clone(), chunk.length, conflict);
        while let Some(part) = body.next().await {
            part?;
        }
        let meter = meter.lock().expect("meter poisoned");
        if meter.bytes != chunk.length || meter.hasher.to_bytes() != chunk.hasher_state {
            return Err(UploadError::ResendMismatch { offset, len: chunk.length }.into());
        }
        Ok(offset + chunk.length)
    }

    async fn final_file(&self, session: &UploadSession) -> Result<Option<FileRecord>> {
        let file = self.meta.get_file(&session.project, &session.file_id).await?;
        Ok(file.filter(|f| Some(&f.blob_key) == session.blob_key.as_ref() && !f.is_expired(Timestamp::now())))
    }

    /// `query`: the committed offset, and the file once the session is final.
    pub async fn query(&self, token: &UploadToken) -> Result<Progress> {
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
    pub async fn cancel(&self, token: &UploadToken) -> Result<()> {
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
        super::garbage::reclaim_now(self.meta.as_ref(), self.blobs.as_ref(), &garbage).await;
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

/// Reads a body that should be empty; `false` if it carried any byte.
async fn drain_is_empty(mut body: ByteStream) -> Result<bool> {
    let mut empty = true;
    while let Some(part) = body.next().await {
        empty &= part?.is_empty();
    }
    Ok(empty)
}
