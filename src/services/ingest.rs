//! One ingest session: the bytes of one upload, import, store migration or upstream copy on their way into
//! a store. Every writer of filegate goes through it, so the sequence is written once:
//!
//! 1. [`Ingest::stage`]: append bytes after the committed offset, hashing them (continuing the running
//!    SHA-256), and make them durable: written at their offset and `fdatasync`ed on the local disk; on a
//!    bucket, re-chunked into parts of the store's granule, whatever sizes they arrive in. The bytes after
//!    the last full part (the *tail*: a chunk that is not a multiple of the granule, an import that
//!    stalled mid-part) are stored as a small object keyed by the offset they end at, and prepended to the
//!    next bytes or made the last part at completion. So an acknowledged byte is always in the store,
//!    readable by any node, and every part but the last has exactly the granule's size.
//! 2. [`Ingest::commit`]: the caller records the new offset, hasher state and parts in its own
//!    transaction (an upload's compare-and-set, an import's leased progress), queuing the tail this chunk
//!    superseded; once recorded, that tail is deleted at once and the session moves on.
//! 3. [`Ingest::complete`]: the staged bytes become the object (the tail as the last part); what it
//!    leaves (the staging area, the consumed tail) is the garbage the caller's finalize queues, and
//!    [`Ingest::reclaim`] deletes once it is recorded.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::meter::{Meter, metered};
use crate::blob::{Blobs, ByteStream, PartStaging, Writer};
use crate::domain::Staging;
use crate::error::{Error, Result};
use crate::hash::ResumableSha256;
use crate::meta::{Garbage, MetaStore, PartRecord};

/// The most bytes an append may take, and the error past them.
pub struct Cap {
    pub bytes: u64,
    pub overflow: Box<dyn Fn() -> Error + Send + Sync>,
}

/// Bytes made durable by [`Ingest::stage`], not yet committed.
#[derive(Debug)]
pub struct Chunk {
    /// Where they start: the session's committed offset.
    pub offset: u64,
    pub written: u64,
    /// The running SHA-256 after them.
    pub hasher: ResumableSha256,
    /// Parts stored, in order (buckets only).
    pub parts: Vec<PartRecord>,
    /// The tail object this chunk supersedes: to be queued as garbage in the chunk's commit.
    pub superseded: Option<Garbage>,
}

/// The session: where the bytes are staged, how many are committed, and their running SHA-256.
pub struct Ingest<'a> {
    blobs: &'a Blobs,
    staging: Staging,
    received: u64,
    hasher: ResumableSha256,
}

impl<'a> Ingest<'a> {
    /// Continues a staging area that holds `received` committed bytes hashed into `hasher`.
    pub fn resume(blobs: &'a Blobs, staging: Staging, received: u64, hasher: ResumableSha256) -> Self {
        Self { blobs, staging, received, hasher }
    }

    /// A staging area to begin now (a copy, a migration): created in the store, nothing in it yet.
    pub async fn begin(blobs: &'a Blobs, mut staging: Staging) -> Result<Self> {
        staging.upload_id = blobs.begin(&staging).await?;
        Ok(Self::resume(blobs, staging, 0, ResumableSha256::new()))
    }

    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn hasher(&self) -> &ResumableSha256 {
        &self.hasher
    }

    /// Forgets the committed bytes (an import whose source changed starts over); returns the tail they
    /// left, to be queued as garbage with the commit that records the restart.
    pub fn restart(&mut self) -> Option<Garbage> {
        let tail = self.tail_of(self.received);
        self.received = 0;
        self.hasher = ResumableSha256::new();
        tail
    }

    /// The tail object `received` committed bytes leave, if the store keeps tails and they end mid-part.
    fn tail_of(&self, received: u64) -> Option<Garbage> {
        match self.blobs.writer() {
            Writer::Parts(store) if received % store.granule() != 0 => {
                Some(Garbage::object(&self.staging.tail_key(received)))
            }
            _ => None,
        }
    }

    /// Appends `body` after the committed bytes, hashing it and failing past `cap`, and makes it durable.
    #[tracing::instrument(name = "ingest", skip_all, fields(offset = self.received, bytes = tracing::field::Empty, parts = tracing::field::Empty))]
    pub async fn stage(&self, body: ByteStream, cap: Cap) -> Result<Chunk> {
        let meter = Arc::new(Mutex::new(Meter { bytes: 0, hasher: self.hasher.clone() }));
        let body = metered(body, meter.clone(), cap.bytes, cap.overflow);
        let parts = match self.blobs.writer() {
            Writer::Positional(store) => {
                store.write_at(&self.staging, self.received, body).await?;
                Vec::new()
            }
            Writer::Parts(store) => self.stage_parts(store.as_ref(), body).await?,
        };
        let meter = std::mem::take(&mut *meter.lock().expect("meter poisoned"));
        let span = tracing::Span::current();
        span.record("bytes", meter.bytes);
        span.record("parts", parts.len());
        let superseded = if meter.bytes > 0 { self.tail_of(self.received) } else { None };
        Ok(Chunk { offset: self.received, written: meter.bytes, hasher: meter.hasher, parts, superseded })
    }

    async fn stage_parts(&self, store: &dyn PartStaging, mut body: ByteStream) -> Result<Vec<PartRecord>> {
        let granule = store.granule();
        let size = usize::try_from(granule).map_err(Error::internal)?;
        let upload_id = self.upload_id()?;
        let mut pending = self.read_tail(self.received, granule).await?;
        let mut index = self.received / granule;
        let mut parts = Vec::new();
        let mut end = self.received;
        while let Some(bytes) = body.next().await {
            let mut bytes = bytes?;
            end += bytes.len() as u64;
            while !bytes.is_empty() {
                let take = (size - pending.len()).min(bytes.len());
                pending.extend_from_slice(&bytes.split_to(take));
                if pending.len() == size {
                    let part = std::mem::replace(&mut pending, BytesMut::with_capacity(size)).freeze();
                    let id = store.put_part(&self.staging.dest, upload_id, index, part).await?;
                    parts.push(PartRecord { index, id });
                    index += 1;
                }
            }
        }
        if end > self.received && !pending.is_empty() {
            self.blobs.objects().put(&self.staging.tail_key(end), pending.freeze()).await?;
        }
        Ok(parts)
    }

    fn upload_id(&self) -> Result<&str> {
        self.staging
            .upload_id
            .as_deref()
            .ok_or_else(|| Error::internal(format!("{} has no multipart upload", self.staging.key)))
    }

    /// The bytes after the last full part of `received` committed bytes (empty when there are none).
    async fn read_tail(&self, received: u64, granule: u64) -> Result<BytesMut> {
        let len = received % granule;
        let mut tail = BytesMut::with_capacity(usize::try_from(granule).map_err(Error::internal)?);
        if len > 0 {
            let mut stream = self.blobs.objects().read(&self.staging.tail_key(received), 0..len).await?;
            while let Some(bytes) = stream.try_next().await? {
                tail.extend_from_slice(&bytes);
            }
            if tail.len() as u64 != len {
                return Err(Error::internal(format!(
                    "the tail of {} has {} bytes, not {len}",
                    self.staging.key,
                    tail.len()
                )));
            }
        }
        Ok(tail)
    }

    /// Records `chunk` with `record` (the caller's transaction, which must queue `chunk.superseded` as
    /// garbage); once recorded, the superseded tail is deleted at once and the session moves past the
    /// chunk. `false`: the record was refused (another request committed first, a lease was lost), and
    /// nothing moved.
    pub async fn commit(
        &mut self,
        meta: &dyn MetaStore,
        chunk: Chunk,
        record: impl AsyncFnOnce(&Chunk) -> Result<bool>,
    ) -> Result<bool> {
        if !record(&chunk).await? {
            return Ok(false);
        }
        super::garbage::reclaim_now(meta, self.blobs, chunk.superseded.as_slice()).await;
        self.received += chunk.written;
        self.hasher = chunk.hasher;
        Ok(true)
    }

    /// Moves past `chunk` where no database records progress (a store migration, an upstream copy: they
    /// complete in one go or start over).
    pub fn commit_unrecorded(&mut self, chunk: Chunk) {
        self.received += chunk.written;
        self.hasher = chunk.hasher;
    }

    /// Completes the staged bytes (`parts`: every full part, as recorded) into the object
    /// `staging.dest`; the tail, if any, becomes the last part. Returns what is garbage once the caller
    /// has recorded the completion: the staging area and the consumed tail.
    pub async fn complete(&self, parts: &[PartRecord]) -> Result<Vec<Garbage>> {
        let mut garbage = vec![Garbage::Staging(self.staging.clone())];
        match self.blobs.writer() {
            Writer::Positional(store) => store.complete(&self.staging, self.received).await?,
            Writer::Parts(store) => {
                let granule = store.granule();
                let whole = parts.iter().enumerate().all(|(i, part)| part.index == i as u64);
                if !whole || parts.len() as u64 != self.received / granule {
                    return Err(Error::internal(format!(
                        "the parts of {} are not the {} bytes committed",
                        self.staging.key, self.received
                    )));
                }
                let mut ids: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
                let tail = self.read_tail(self.received, granule).await?;
                if !tail.is_empty() {
                    let index = self.received / granule;
                    ids.push(store.put_part(&self.staging.dest, self.upload_id()?, index, tail.freeze()).await?);
                    garbage.extend(self.tail_of(self.received));
                }
                store.complete(&self.staging.dest, self.upload_id()?, ids).await?;
            }
        }
        Ok(garbage)
    }

    /// Deletes garbage whose queuing was just recorded (the janitor retries what fails).
    pub async fn reclaim(&self, meta: &dyn MetaStore, garbage: &[Garbage]) {
        super::garbage::reclaim_now(meta, self.blobs, garbage).await;
    }
}
