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

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::task::{JoinError, JoinSet};
use tracing::Instrument as _;

use super::meter::{Meter, metered};
use crate::blob::{BlobResult, Blobs, ByteStream, PartStaging, Writer};
use crate::domain::Staging;
use crate::error::{Error, Result};
use crate::hash::ResumableSha256;
use crate::meta::{Garbage, MetaStore, PartRecord};
use crate::telemetry::metric;

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

/// A part's upload, joined: its record, or why it was not stored.
fn stored(joined: Option<std::result::Result<Result<PartRecord>, JoinError>>) -> Result<PartRecord> {
    match joined {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(Error::internal(format!("storing a part: {e}"))),
        None => Err(Error::internal("a part was awaited where none was on its way")),
    }
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

    /// Creates the multipart upload of a staging area that a row already holds (an upload session, an import
    /// task) and records its id on that row. `None` when the row went meanwhile (a delete raced the start):
    /// the upload just made is aborted then, since an upload id that no row holds is one the janitor never
    /// finds. Stores without multipart uploads have nothing to record.
    ///
    /// When the database's answer is lost (an outage, a deadline), the write may still have happened: what
    /// the row holds decides, read again. Aborting an upload the row does hold would wedge the transfer on
    /// an id the bucket no longer knows; so when even that read fails, the upload is left as it is — used
    /// if the row holds it, else one for `filegate fsck` to find.
    pub async fn begin_recorded(meta: &dyn MetaStore, blobs: &Blobs, mut staging: Staging) -> Result<Option<Staging>> {
        let Some(upload_id) = blobs.begin(&staging).await? else {
            return Ok(Some(staging));
        };
        staging.upload_id = Some(upload_id.clone());
        let recorded = match meta.set_upload_id(&staging.key, &upload_id).await {
            Ok(recorded) => recorded,
            Err(e) => {
                let held = meta.owned_staging(std::slice::from_ref(&staging.key)).await.map_err(|_| e)?;
                held.iter().any(|owned| owned.staging.upload_id.as_deref() == Some(upload_id.as_str()))
            }
        };
        if !recorded {
            if let Err(e) = blobs.abort(&staging).await {
                tracing::warn!(error = %e, upload_id, "aborting an unrecorded multipart upload failed; fsck finds it");
            }
        }
        Ok(recorded.then_some(staging))
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
            Writer::Parts(store) => self.stage_parts(store.clone(), body).await?,
        };
        let meter = std::mem::take(&mut *meter.lock().expect("meter poisoned"));
        let span = tracing::Span::current();
        span.record("bytes", meter.bytes);
        span.record("parts", parts.len());
        let superseded = if meter.bytes > 0 { self.tail_of(self.received) } else { None };
        Ok(Chunk { offset: self.received, written: meter.bytes, hasher: meter.hasher, parts, superseded })
    }

    /// Re-chunks `body` into parts and stores them, up to the budget's parts in flight at once: the next
    /// part fills while the previous ones are on their way. Returns once every part is stored (in index
    /// order); on an error, the parts still on their way are abandoned (unrecorded, so the upload's abort
    /// removes them).
    async fn stage_parts(&self, store: Arc<dyn PartStaging>, mut body: ByteStream) -> Result<Vec<PartRecord>> {
        let granule = store.granule();
        let size = usize::try_from(granule).map_err(Error::internal)?;
        let upload_id = self.upload_id()?.to_owned();
        let budget = self.blobs.part_budget();
        // A part's buffer is reserved and allocated when its first byte arrives (an empty body, a bare
        // finalize, takes neither); the first one continues the committed tail.
        let mut reservation = None;
        let mut pending = BytesMut::new();
        let mut continues_tail = true;
        let mut index = self.received / granule;
        let mut on_their_way = JoinSet::new();
        let mut parts = Vec::new();
        let mut end = self.received;
        while let Some(bytes) = body.next().await {
            let mut bytes = bytes?;
            end += bytes.len() as u64;
            while !bytes.is_empty() {
                if reservation.is_none() {
                    reservation = Some(budget.reserve(granule).await);
                    pending = if std::mem::take(&mut continues_tail) {
                        self.read_tail(self.received, granule).await?
                    } else {
                        BytesMut::with_capacity(size)
                    };
                }
                let take = (size - pending.len()).min(bytes.len());
                pending.extend_from_slice(&bytes.split_to(take));
                if pending.len() == size {
                    while on_their_way.len() >= budget.in_flight() {
                        parts.push(stored(on_their_way.join_next().await)?);
                    }
                    let part = std::mem::take(&mut pending).freeze();
                    let (store, dest, upload_id) = (store.clone(), self.staging.dest.clone(), upload_id.clone());
                    // The part keeps its share of the budget until it is stored.
                    let held = reservation.take();
                    let put = async move {
                        let id = put_part_timed(store.as_ref(), &dest, &upload_id, index, part).await?;
                        drop(held);
                        Ok(PartRecord { index, id })
                    };
                    on_their_way.spawn(put.instrument(tracing::Span::current()));
                    index += 1;
                }
            }
        }
        while let Some(joined) = on_their_way.join_next().await {
            parts.push(stored(Some(joined))?);
        }
        parts.sort_by_key(|part| part.index);
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
    /// chunk. `Some(chunk)` back: the record was refused (another request committed first, a lease was
    /// lost, the transfer ended), and nothing moved. Its tail is then the caller's to [`Ingest::discard`]
    /// once it knows no one else writes this staging area: the removal that ended a transfer queued the
    /// tail of the bytes recorded before, not this one.
    pub async fn commit(
        &mut self,
        meta: &dyn MetaStore,
        chunk: Chunk,
        record: impl AsyncFnOnce(&Chunk) -> Result<bool>,
    ) -> Result<Option<Chunk>> {
        if !record(&chunk).await? {
            return Ok(Some(chunk));
        }
        super::garbage::reclaim_now(meta, self.blobs, chunk.superseded.as_slice()).await;
        self.received += chunk.written;
        self.hasher = chunk.hasher;
        Ok(None)
    }

    /// Deletes the tail `chunk` staged, when no commit will record it (its parts go with the staging
    /// area's abort): a chunk refused after it was staged leaves nothing behind.
    pub async fn discard(&self, chunk: &Chunk) {
        if chunk.written == 0 {
            return;
        }
        if let Some(Garbage::Object(key)) = self.tail_of(chunk.offset + chunk.written) {
            if let Err(e) = self.blobs.objects().delete(&key).await {
                tracing::warn!(error = %e, key, "deleting the tail of a discarded chunk failed");
            }
        }
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
                if let Err(e) = self.complete_parts(store, parts).await {
                    // A node that completed the upload and died before the database said so leaves an
                    // upload id the bucket no longer knows: the object it made is the proof. Only this
                    // staging area ever writes `dest`, so an object there of the committed size is ours.
                    match self.blobs.objects().size(&self.staging.dest).await {
                        Ok(Some(size)) if size == self.received => {
                            tracing::info!(key = self.staging.dest, "the upload was already completed");
                        }
                        _ => return Err(e),
                    }
                }
                garbage.extend(self.tail_of(self.received));
            }
        }
        Ok(garbage)
    }

    /// Puts the tail, if any, as the last part and completes the multipart upload.
    async fn complete_parts(&self, store: &Arc<dyn PartStaging>, parts: &[PartRecord]) -> Result<()> {
        let granule = store.granule();
        let whole = parts.iter().enumerate().all(|(i, part)| part.index == i as u64);
        if !whole || parts.len() as u64 != self.received / granule {
            return Err(Error::internal(format!(
                "the parts of {} are not the {} bytes committed",
                self.staging.key, self.received
            )));
        }
        let mut ids: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
        if self.received % granule != 0 {
            // The tail is a part in memory too.
            let _reservation = self.blobs.part_budget().reserve(granule).await;
            let tail = self.read_tail(self.received, granule).await?;
            let index = self.received / granule;
            ids.push(
                put_part_timed(store.as_ref(), &self.staging.dest, self.upload_id()?, index, tail.freeze()).await?,
            );
        }
        store.complete(&self.staging.dest, self.upload_id()?, ids).await?;
        Ok(())
    }

    /// Deletes garbage whose queuing was just recorded (the janitor retries what fails).
    pub async fn reclaim(&self, meta: &dyn MetaStore, garbage: &[Garbage]) {
        super::garbage::reclaim_now(meta, self.blobs, garbage).await;
    }
}

/// Writes `body`, `size` bytes exactly, as the object `dest` of `store` in one session that no database
/// records (an upstream's copy of a file, a batch's requests): it completes, or nothing is left behind.
/// Returns the bytes' SHA-256.
pub async fn write_object(store: &Blobs, dest: String, body: ByteStream, size: u64) -> Result<[u8; 32]> {
    let staging = Staging {
        key: crate::domain::staging_key(&format!("object-{}", crate::domain::random_alphanumeric(16))),
        dest,
        upload_id: None,
    };
    let mut ingest = Ingest::begin(store, staging).await?;
    let written = async {
        let cap = Cap { bytes: size, overflow: Box::new(move || Error::internal(format!("more than {size} bytes"))) };
        let chunk = ingest.stage(body, cap).await?;
        if chunk.written != size {
            return Err(Error::internal(format!("{} bytes written of {size}", chunk.written)));
        }
        let (parts, digest) = (chunk.parts.clone(), chunk.hasher.digest());
        ingest.commit_unrecorded(chunk);
        Ok((ingest.complete(&parts).await?, digest))
    }
    .await;
    let leftovers = match &written {
        Ok((garbage, _)) => garbage.clone(),
        Err(_) => vec![Garbage::Staging(ingest.staging().clone()), Garbage::object(&ingest.staging().tail_key(size))],
    };
    for garbage in &leftovers {
        let _ = match garbage {
            Garbage::Object(key) => store.objects().delete(key).await,
            Garbage::Staging(staging) => store.abort(staging).await,
        };
    }
    written.map(|(_, digest)| digest)
}

/// Stores one part, timed for `/metrics`: the time a bucket takes per part is the first sign of a slow
/// store. Measured here rather than in the store, so that the blob layer knows nothing of telemetry.
async fn put_part_timed(
    store: &dyn PartStaging,
    dest: &str,
    upload_id: &str,
    index: u64,
    part: Bytes,
) -> BlobResult<String> {
    let started = std::time::Instant::now();
    let id = store.put_part(dest, upload_id, index, part).await?;
    metrics::histogram!(metric::STORE_PART_SECONDS, "provider" => store.provider())
        .record(started.elapsed().as_secs_f64());
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use futures_util::stream;
    use object_store::memory::InMemory;
    use object_store::multipart::{MultipartStore, PartId};
    use object_store::path::Path;
    use object_store::{MultipartId, PutPayload};

    use super::*;
    use crate::blob::PartBudget;
    use crate::domain::staging_key;

    const GRANULE: u64 = 1024;

    /// `InMemory`'s multipart uploads, each part taking a while, counting how many are stored at once.
    #[derive(Debug, Default)]
    struct SlowParts {
        store: Arc<InMemory>,
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl std::fmt::Display for SlowParts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SlowParts")
        }
    }

    #[async_trait]
    impl MultipartStore for SlowParts {
        async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
            self.store.create_multipart(path).await
        }
        async fn put_part(
            &self,
            path: &Path,
            id: &MultipartId,
            part_idx: usize,
            data: PutPayload,
        ) -> object_store::Result<PartId> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            self.store.put_part(path, id, part_idx, data).await
        }
        async fn complete_multipart(
            &self,
            path: &Path,
            id: &MultipartId,
            parts: Vec<PartId>,
        ) -> object_store::Result<object_store::PutResult> {
            self.store.complete_multipart(path, id, parts).await
        }
        async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
            self.store.abort_multipart(path, id).await
        }
    }

    fn slow_bucket(budget: PartBudget) -> (Blobs, Arc<SlowParts>) {
        let parts = Arc::new(SlowParts::default());
        let blobs = Blobs::in_memory_over(parts.store.clone(), parts.clone(), GRANULE).with_part_budget(budget);
        (blobs, parts)
    }

    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
    }

    /// Stages `bytes` (in uneven frames) as one chunk into a new object and completes it; the object's key.
    async fn transfer(blobs: &Blobs, bytes: Vec<u8>) -> String {
        let name = crate::domain::random_alphanumeric(12);
        let staging = Staging { key: staging_key(&name), dest: format!("files/t/{name}"), upload_id: None };
        let mut ingest = Ingest::begin(blobs, staging).await.unwrap();
        let frames: Vec<Result<Bytes>> = bytes.chunks(700).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let cap = Cap { bytes: u64::MAX, overflow: Box::new(|| Error::internal("overflow")) };
        let chunk = ingest.stage(stream::iter(frames).boxed(), cap).await.unwrap();
        assert_eq!(
            chunk.parts.iter().map(|p| p.index).collect::<Vec<_>>(),
            (0..chunk.parts.len() as u64).collect::<Vec<_>>()
        );
        let parts = chunk.parts.clone();
        ingest.commit_unrecorded(chunk);
        ingest.complete(&parts).await.unwrap();
        ingest.staging().dest.clone()
    }

    async fn stored(blobs: &Blobs, key: &str, size: usize) -> Vec<u8> {
        let bytes: Vec<Bytes> = blobs.objects().read(key, 0..size as u64).await.unwrap().try_collect().await.unwrap();
        bytes.concat()
    }

    #[tokio::test]
    async fn completing_again_after_a_completion_nobody_recorded_finds_the_object_made() {
        // A node completes the upload and dies before its database commit; the node that takes over
        // completes the same staging area again, against an upload id the bucket no longer knows.
        let (blobs, _) = slow_bucket(PartBudget::new(2, 10 * GRANULE));
        let bytes = content(3 * GRANULE as usize + 5, 7);
        let name = crate::domain::random_alphanumeric(12);
        let staging = Staging { key: staging_key(&name), dest: format!("files/t/{name}"), upload_id: None };
        let mut ingest = Ingest::begin(&blobs, staging).await.unwrap();
        let cap = Cap { bytes: u64::MAX, overflow: Box::new(|| Error::internal("overflow")) };
        let chunk = ingest.stage(stream::iter([Ok(Bytes::from(bytes.clone()))]).boxed(), cap).await.unwrap();
        let parts = chunk.parts.clone();
        ingest.commit_unrecorded(chunk);
        let first = ingest.complete(&parts).await.unwrap();
        let again = ingest.complete(&parts).await.expect("the object already made is the completion");
        assert_eq!(first.len(), again.len(), "the same garbage: staging area and tail");
        assert_eq!(stored(&blobs, &ingest.staging().dest, bytes.len()).await, bytes);

        // An object of another size at the destination is not taken for ours.
        blobs.objects().put(&ingest.staging().dest, Bytes::from_static(b"short")).await.unwrap();
        assert!(ingest.complete(&parts).await.is_err(), "a different object is no completion");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_are_stored_several_at_once_and_never_more_than_the_budget_allows() {
        let (blobs, parts) = slow_bucket(PartBudget::new(3, 100 * GRANULE));
        let bytes = content(10 * GRANULE as usize + 300, 1);
        let key = transfer(&blobs, bytes.clone()).await;
        assert_eq!(stored(&blobs, &key, bytes.len()).await, bytes, "whole, in order");
        assert_eq!(parts.most.load(Ordering::SeqCst), 3, "three parts in flight, not more, not fewer");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_sharing_a_small_memory_budget_wait_for_it_and_all_finish_whole() {
        // Room for two parts in the whole node: four transfers take turns.
        let (blobs, parts) = slow_bucket(PartBudget::new(4, 2 * GRANULE));
        let blobs = Arc::new(blobs);
        let transfers: Vec<_> = (0..4u8)
            .map(|seed| {
                let blobs = blobs.clone();
                tokio::spawn(async move {
                    let bytes = content(5 * GRANULE as usize + 100 * seed as usize, seed);
                    let key = transfer(&blobs, bytes.clone()).await;
                    assert_eq!(stored(&blobs, &key, bytes.len()).await, bytes, "transfer {seed}");
                })
            })
            .collect();
        for transfer in transfers {
            tokio::time::timeout(Duration::from_secs(30), transfer).await.expect("no transfer waits forever").unwrap();
        }
        assert!(parts.most.load(Ordering::SeqCst) <= 2, "the parts in memory fit the budget");
    }
}
