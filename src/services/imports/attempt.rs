//! One attempt at a claimed import task, in three steps: [`open`] the source (resuming with `Range` and
//! `If-Range` where the bytes already staged allow), [`Attempt::ingest`] it part by part through the
//! ingest session (each part committed with the task's lease, the first one [`sniff`]ed for its type),
//! and [`Attempt::complete`] (digest checked, staging completed), after which the worker, with the lease's
//! heartbeat stopped, makes the file ready with [`Completed::commit`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::ImportSettings;
use super::answer::Failure;
use super::fetch::{Fetcher, SourceResponse};
use super::ranged::SourceBody;
use super::source::PartSource;
use super::{mime, task};
use crate::blob::Blobs;
use crate::domain::{FailureCode, FileRecord, Staging};
use crate::error::Error;
use crate::hash::ResumableSha256;
use crate::meta::{Garbage, ImportProgress, ImportTask, MetaStore};
use crate::services::ingest::{Cap, Ingest};
use crate::telemetry::metric;

/// What an attempt works with: the worker's stores, fetcher and settings.
pub struct AttemptContext {
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<Blobs>,
    pub fetcher: Fetcher,
    pub settings: ImportSettings,
}

impl AttemptContext {
    /// The task's staging area, created if it is not yet: the database knew its key before (a bucket's
    /// multipart upload id is recorded as soon as it exists). `None` when the task was removed meanwhile.
    async fn staging_area(&self, task: &ImportTask) -> crate::error::Result<Option<Staging>> {
        let staging = task.staging();
        if staging.upload_id.is_some() {
            return Ok(Some(staging));
        }
        Ingest::begin_recorded(self.meta.as_ref(), self.blobs.as_ref(), staging).await
    }

    /// Records an import's progress with its lease (see `task::record_progress`); `false` once it is lost.
    async fn record(&self, task: &ImportTask, step: &task::Step<'_>) -> Result<bool, Failure> {
        let limits = &self.settings.limits;
        task::record_progress(self.meta.as_ref(), limits, task, step).await.map_err(storage_failure)
    }
}

/// What a store failure means for an import: over a limit is final, anything else is retried.
pub fn storage_failure(err: Error) -> Failure {
    match err {
        Error::FileTooLarge { limit, .. } => {
            Failure::permanent(FailureCode::TooLarge, format!("the file is larger than the limit of {limit} bytes"))
        }
        Error::QuotaExceeded { requested, available, .. } => Failure::permanent(
            FailureCode::QuotaExceeded,
            format!("the file needs {requested} bytes but the project has {available} bytes of quota left"),
        ),
        other => {
            tracing::warn!(error = %other, "import storage step failed");
            Failure::transient(FailureCode::Internal, "storing the file failed; it will be retried")
        }
    }
}

/// Opens the source: from the staged bytes on when a validator lets the source prove it unchanged, else
/// from the start. Returns the response and whether the task starts over (the source changed, or the
/// staged bytes cannot be continued).
async fn open(on: &AttemptContext, task: &ImportTask) -> Result<(SourceResponse, bool), Failure> {
    let hasher = ResumableSha256::from_bytes(&task.hasher_state);
    let resume = match (&task.validator, &hasher) {
        (Some(validator), Some(_)) if task.received_bytes > 0 => Some((task.received_bytes, validator.as_str())),
        _ => None,
    };
    let source = on.fetcher.open(&task.source_url, resume).await?;
    let limit = on.settings.limits.max_file_bytes;
    if let Some(total) = source.total.filter(|&t| t > limit) {
        return Err(Failure::permanent(
            FailureCode::TooLarge,
            format!("the source announces {total} bytes, over the limit of {limit} bytes"),
        ));
    }
    let restart = task.received_bytes > 0 && (source.offset != task.received_bytes || hasher.is_none());
    Ok((source, restart))
}

/// How often an attempt writes the bytes it has received so far (the import's progress between commits).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The task that writes `from` plus the bytes `arrived` counts every [`PROGRESS_EVERY`] while it changes
/// (for every node's import view; the committed offset stays the resume point). It ends with the attempt,
/// when the handle is dropped.
fn report_progress(
    on: &AttemptContext,
    task: &ImportTask,
    from: u64,
    arrived: Arc<AtomicU64>,
) -> tokio_util::task::AbortOnDropHandle<()> {
    let (meta, lease) = (on.meta.clone(), task.lease.clone());
    let reporting = tokio::spawn(async move {
        let mut written = 0;
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let now = arrived.load(Ordering::Relaxed);
            if now != written {
                match meta.note_import_fetched(&lease, from + now).await {
                    Ok(true) => written = now,
                    Ok(false) => return, // the lease went: the attempt ends too
                    Err(e) => tracing::debug!(error = %e, "recording an import's progress failed"),
                }
            }
        }
    });
    tokio_util::task::AbortOnDropHandle::new(reporting)
}

/// What the response said of the file, for [`sniff`]: its `Content-Type` and the URL it came from.
struct Described {
    content_type: Option<String>,
    url: url::Url,
}

/// The file's type, from the response's `Content-Type`, its first bytes and its URL; refused as soon as
/// it is known if the deployment does not take it.
fn sniff(on: &AttemptContext, source: &Described, head: &[u8]) -> Result<String, Failure> {
    let detected = mime::detect(source.content_type.as_deref(), head, &source.url);
    on.settings
        .limits
        .media_types
        .check(&detected)
        .map_err(|e| Failure::permanent(FailureCode::UnsupportedMimeType, e.to_string()))?;
    Ok(detected)
}

/// A running attempt: the task, its source and its ingest session.
pub struct Attempt<'a> {
    on: &'a AttemptContext,
    task: &'a ImportTask,
    ingest: Ingest<'a>,
    progress: ImportProgress,
    /// Detected from the first part; `None` keeps the type recorded by an earlier attempt.
    mime_type: Option<String>,
}

/// Parts an import stores between two commits of its progress, at least: a crash refetches at most
/// this many, and the pause while the last parts of a span are stored comes once per span.
const MIN_PARTS_PER_COMMIT: usize = 8;

/// `Ok(Some(file, garbage))` when the import is ready (with the staging it leaves to delete), `Ok(None)`
/// when the lease was lost.
pub type Finished = Option<(FileRecord, Vec<Garbage>)>;

/// An attempt whose bytes are all stored and checked, waiting for the one short transaction that makes the
/// file ready. That step is kept apart so that nothing can interrupt it halfway: the lease's heartbeat,
/// which would see the task finished and call the lease lost, is stopped first, and the transaction is
/// fenced by the lease itself.
pub struct Completed {
    size: u64,
    digest: [u8; 32],
    mime_type: String,
    garbage: Vec<Garbage>,
}

impl<'a> Attempt<'a> {
    /// Stores the source; `Ok(None)` when the lease was lost on the way.
    pub async fn run(on: &'a AttemptContext, task: &'a ImportTask) -> Result<Option<Completed>, Failure> {
        let (source, restart) = open(on, task).await?;
        let Some(staging) = on.staging_area(task).await.map_err(storage_failure)? else {
            return Ok(None);
        };
        let hasher = ResumableSha256::from_bytes(&task.hasher_state).unwrap_or_default();
        let mut ingest = Ingest::resume(on.blobs.as_ref(), staging, task.received_bytes, hasher);
        let dropped = if restart || source.offset == 0 { ingest.restart() } else { None };
        let progress = ImportProgress {
            received_bytes: ingest.received(),
            hasher_state: ingest.hasher().to_bytes(),
            validator: source.validator.clone(),
            total_bytes: source.total,
        };
        let mut attempt = Self { on, task, ingest, progress, mime_type: None };
        // Recording the announced size first reserves it against the quota before any byte is stored.
        let garbage = dropped.as_slice();
        let step = task::Step { progress: &attempt.progress, mime_type: None, parts: &[], garbage, restart };
        if !attempt.record(&step).await? {
            return Ok(None);
        }
        // The earlier attempt's tail, queued by that commit, goes now rather than at the next sweep.
        attempt.ingest.reclaim(on.meta.as_ref(), garbage).await;
        let described = Described { content_type: source.content_type, url: source.url };
        let _reporting = report_progress(on, task, source.offset, source.arrived);
        if !attempt.ingest_source(source.body, &described).await? {
            return Ok(None);
        }
        if let Some(total) = source.total.filter(|&t| t != attempt.ingest.received()) {
            return Err(Failure::transient(
                FailureCode::SourceUnreachable,
                format!("the source closed the connection after {} of {total} bytes", attempt.ingest.received()),
            ));
        }
        attempt.complete().await.map(Some)
    }

    /// Stages the source span by span (several parts of the store each), committing each span with the
    /// lease; `false` once the lease is lost.
    async fn ingest_source(&mut self, body: SourceBody, source: &Described) -> Result<bool, Failure> {
        let limit = self.on.settings.limits.max_file_bytes;
        let mut body = PartSource::new(body, self.on.settings.config.stall_timeout);
        loop {
            let received = self.ingest.received();
            // A span ends on a part boundary of the store, so a stalled import's tail never outgrows one;
            // it holds several parts, so that they go up while the next ones are fetched (the budget's
            // parts in flight), and its progress is committed once they are all stored. The first span is
            // one part, so that a type the deployment refuses is refused before more is fetched. The
            // local disk commits every granule of the upload protocol.
            let part_len = match self.on.blobs.part_granule() {
                Some(granule) => {
                    let in_flight = self.on.blobs.part_budget().in_flight();
                    let parts = if received == 0 { 1 } else { (2 * in_flight).max(MIN_PARTS_PER_COMMIT) as u64 };
                    parts * granule - received % granule
                }
                None => crate::blob::PART_BYTES,
            };
            let head = (received == 0).then(|| Arc::new(Mutex::new(Vec::new())));
            let (part, returned) = body.part(part_len, head.clone());
            // Stalls are the part source's business (it ends the part early): no idle limit here.
            let cap = Cap {
                bytes: limit - received,
                overflow: Box::new(move || Error::FileTooLarge { size: limit + 1, limit }),
            };
            let chunk = self.ingest.stage(part, cap).await.map_err(storage_failure)?;
            body = returned
                .await
                .map_err(|_| Failure::transient(FailureCode::Internal, "the source stream ended unexpectedly"))?;
            if let Some(head) = head {
                let sniffed = sniff(self.on, source, &head.lock().expect("sniff buffer poisoned"));
                match sniffed {
                    Ok(mime_type) => self.mime_type = Some(mime_type),
                    Err(refused) => {
                        self.ingest.discard(&chunk).await;
                        return Err(refused);
                    }
                }
            }
            let written = chunk.written;
            if written > 0 {
                self.progress.received_bytes = received + written;
                self.progress.hasher_state = chunk.hasher.to_bytes();
                let (on, task, progress) = (self.on, self.task, &self.progress);
                let mime_type = self.mime_type.as_deref();
                let (meta, limits) = (on.meta.as_ref(), &on.settings.limits);
                let refused = self
                    .ingest
                    .commit(meta, chunk, async |chunk| {
                        let garbage = chunk.superseded.as_slice();
                        let step = task::Step { progress, mime_type, parts: &chunk.parts, garbage, restart: false };
                        task::record_progress(meta, limits, task, &step).await
                    })
                    .await
                    .map_err(storage_failure)?;
                if let Some(chunk) = refused {
                    // The lease is lost. If the file went (deleted, expired), nobody will write this staging
                    // area again and its removal queued only the tail recorded before this chunk.
                    let current = meta.get_file(&task.project, &task.file_id).await;
                    if current.is_ok_and(|file| file.is_none_or(|f| f.blob_key != task.blob_key)) {
                        self.ingest.discard(&chunk).await;
                    }
                    return Ok(false);
                }
                metrics::counter!(metric::IMPORT_BYTES).increment(written);
            }
            if let Some(failure) = body.failure.take() {
                return Err(failure);
            }
            if body.done {
                return Ok(true);
            }
        }
    }

    async fn record(&self, step: &task::Step<'_>) -> Result<bool, Failure> {
        self.on.record(self.task, step).await
    }

    /// Checks the digest and completes the staging area into the file's object.
    async fn complete(self) -> Result<Completed, Failure> {
        let (on, task) = (self.on, self.task);
        let digest = self.ingest.hasher().digest();
        if let Some(expected) = task.expected_sha256.as_deref().filter(|e| *e != hex::encode(digest)) {
            return Err(Failure::permanent(
                FailureCode::ChecksumMismatch,
                format!("the file's SHA-256 is {}, not the expected {expected}", hex::encode(digest)),
            ));
        }
        let staging: &Staging = self.ingest.staging();
        let parts = on.meta.parts(&staging.key).await.map_err(|e| storage_failure(e.into()))?;
        let garbage = self.ingest.complete(&parts).await.map_err(storage_failure)?;
        let mime_type = self.mime_type.unwrap_or_else(|| task.mime_type.clone());
        Ok(Completed { size: self.ingest.received(), digest, mime_type, garbage })
    }
}

impl Completed {
    /// Marks the file ready, if the lease still holds; otherwise drops the object when no file owns it.
    pub async fn commit(self, on: &AttemptContext, task: &ImportTask) -> Result<Finished, Failure> {
        let done = (self.size, self.digest, self.mime_type.as_str());
        let finished = task::finish(on.meta.as_ref(), task, done, &self.garbage).await.map_err(storage_failure)?;
        if finished.is_none() {
            let (meta, blobs) = (on.meta.as_ref(), on.blobs.as_ref());
            crate::services::garbage::drop_if_orphaned(meta, blobs, &task.project, &task.file_id, &task.blob_key).await;
        }
        Ok(finished.map(|file| (file, self.garbage)))
    }
}
