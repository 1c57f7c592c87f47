//! Writing to an upload session: `upload`, `upload, finalize` and a bare `finalize`, with resends proven
//! identical, replays after the finalize, and the finalize itself.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;

use super::{Progress, Uploads};
use crate::blob::ByteStream;
use crate::domain::{FileRecord, FileState, SecretToken, Timestamp};
use crate::error::{Error, Result, UploadError};
use crate::hash::ResumableSha256;
use crate::meta::{ChunkRecord, FileUpdate, Garbage, SessionStatus, UploadSession, UsageDelta};
use crate::services::ingest::{Cap, Ingest};
use crate::services::lifecycle;
use crate::services::meter::{Meter, metered};
use crate::services::outbox::{self, EventType};
use crate::telemetry::metric;

impl Uploads {
    /// `upload`, `upload, finalize` and a bare `finalize`. `offset` is `X-Goog-Upload-Offset`; a bare
    /// finalize may omit it.
    pub async fn write(
        &self,
        token: &SecretToken,
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
            // The request's own outcome first, when both are ready at once.
            biased;
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
        let refused = ingest
            .commit(self.meta.as_ref(), chunk, async |chunk| {
                let record =
                    ChunkRecord { offset: chunk.offset, length: written, hasher_state: chunk.hasher.to_bytes() };
                let garbage = chunk.superseded.as_slice();
                Ok(self.meta.commit_chunk(token_hash, &record, &chunk.parts, garbage, writer, Timestamp::now()).await?)
            })
            .await?;
        if let Some(chunk) = refused {
            // Cancelled meanwhile (on another node), or another request committed this offset first.
            let status = self.meta.get_upload(token_hash).await?.map(|s| s.status);
            return Err(match status {
                Some(SessionStatus::Cancelled) | None => {
                    // Nobody writes here any more, and the cancel's garbage predates this chunk's tail.
                    ingest.discard(&chunk).await;
                    UploadError::Cancelled.into()
                }
                _ => UploadError::ResendMismatch { offset: received, len: written }.into(),
            });
        }
        metrics::counter!(metric::UPLOAD_BYTES).increment(written);
        Ok((ingest.received(), ingest.hasher().to_bytes()))
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
            crate::services::garbage::drop_if_orphaned(meta, blobs, &session.project, &session.file_id, blob_key).await;
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
        if let Some(file) = &file {
            outbox::queue_file_events(tx.as_mut(), &[(EventType::FileActive, file)], now).await?;
        }
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

    pub(super) async fn final_file(&self, session: &UploadSession) -> Result<Option<FileRecord>> {
        let file = self.meta.get_file(&session.project, &session.file_id).await?;
        Ok(file.filter(|f| session.blob_key.as_deref() == Some(f.blob_key.as_str()) && !f.is_expired(Timestamp::now())))
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
