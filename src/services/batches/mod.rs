//! The Batch API (`client.batches.*`): many `generateContent` requests run by the upstream at its own pace,
//! their file references resolved and rewritten like a model call's, their results a filegate file.
//!
//! **Create** reads the requests (a JSONL file of the caller's, or inline requests) twice, line by line,
//! never whole (`input.rs`): the first pass checks every line (valid JSON, the caller's own ready files:
//! a bad line refuses the batch with a 400 naming it) and makes the copies the upstream will read; the
//! second streams the rewritten lines upstream with their exact length. The Gemini API gets them as one
//! upload to its Files API and a `batchGenerateContent`; Vertex AI as an object in the staging bucket and a
//! `batchPredictionJobs` job writing its predictions under that object's `-output/` prefix.
//!
//! **Get** asks the upstream while the job runs and records what it says (states in the Gemini API's
//! words, `view.rs`). When the upstream reports success, the results are copied, streamed, into a filegate
//! file of the project (`source: GENERATED`, expiring like any file), by one node at a time (a lease on the
//! batch row); until that file exists the batch shows `BATCH_STATE_RUNNING`, so a client polling for the
//! end finds `metadata.output.responsesFile` when it gets there. Results that do not fit the project's
//! quota fail the batch with a message that says so. The results file holds the upstream's lines as it
//! wrote them (`{"key", "response"}` from the Gemini API; Vertex AI's lines carry each `request` with its
//! `response`).
//!
//! **Per project**: another project's batch name answers 404 like a missing one, before any upstream
//! call; a project has at most `FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT` unfinished batches (429 beyond,
//! checked before the submission and again, under the project's lock, when the batch is recorded).
//!
//! **Followed without polling**: every node walks all unfinished batches each sweep interval, page by page,
//! a few at a time, and asks the upstream about each; so every batch of every project is followed within
//! an interval plus the walk, however many another project runs. The copies a batch reads are held for [`HOLD`] (the longest an upstream keeps a batch waiting and
//! running) whatever happens to their files.

mod input;
mod view;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};

use self::input::{Source, at_line, parse_line};
pub use self::view::batch_view;
use crate::blob::{Blobs, ByteStream};
use crate::domain::FileRecord;
use crate::domain::Limit;
use crate::domain::{FileId, Origin, ProjectId, Timestamp, new_object_key, random_alphanumeric, registered_key};
use crate::error::{Error, Result, UpstreamError};
use crate::meta::{BatchCursor, BatchRecord, Lease, MetaStore, Queue, Unfinished};
use crate::services::files::visible_file;
use crate::services::ingest::write_object;
use crate::services::model::upstream::UpstreamClient;
use crate::services::model::{Models, RewritePlan};
use crate::services::outbox::{self, EventType};
use crate::services::uploads::{DeclaredSize, StartUpload, Uploads};
use crate::services::{lease, lifecycle};
use tokio_util::sync::CancellationToken;

/// How long the copies a batch reads are kept: Google runs a batch within 48 hours of its creation; a
/// day more covers a job still writing its results.
pub const HOLD: Duration = Duration::from_secs(72 * 3600);
/// How long one node has to copy a batch's results before another may take over.
const COLLECTION_LEASE: Duration = Duration::from_secs(120);
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;
/// Batches the API has not shown an end for yet.
const UNFINISHED: Unfinished<'static> =
    Unfinished { ended: &[view::FAILED, view::CANCELLED, view::EXPIRED], succeeded: view::SUCCEEDED };
/// Unfinished batches a watcher reads per page.
const WATCH_PAGE: u32 = 200;
/// Upstream requests a watcher has in flight at once.
const WATCHED_AT_ONCE: usize = 8;

pub struct Batches {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    models: Arc<Models>,
    uploads: Arc<Uploads>,
    /// How long to wait for the Gemini API to accept an uploaded requests file.
    processing_timeout: Duration,
    /// Unfinished batches a project may have.
    max_running: u64,
    /// This process's name on the collection leases it claims.
    collector: String,
}

/// A batch ready to go upstream: its rewritten requests, streaming, and their exact length.
struct Submission<'a> {
    id: &'a str,
    project: &'a ProjectId,
    /// The upstream's name of the model.
    model: &'a str,
    display_name: String,
    requests: ByteStream,
    bytes: u64,
}

/// Where a finished job's results are at the upstream.
enum Results {
    /// A file of the Gemini API's Files API.
    GoogleFile(String),
    /// An object in Cloud Storage (Vertex AI's `predictions.jsonl`).
    Gcs(String),
}

/// A batch's id in any spelling a caller sends (`batches/{id}`, `{id}`).
fn batch_id(name: &str) -> Result<&str> {
    let id = name.strip_prefix("batches/").unwrap_or(name);
    let plain = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then_some(id).ok_or_else(|| Error::BatchNotFound(name.to_owned()))
}

impl Batches {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<Blobs>,
        models: Arc<Models>,
        uploads: Arc<Uploads>,
        processing_timeout: Duration,
        max_running: u64,
    ) -> Self {
        let collector = lease::holder("batches");
        Self { meta, blobs, models, uploads, processing_timeout, max_running, collector }
    }

    fn too_many(&self) -> Error {
        Error::LimitReached(Limit::RunningBatches { running: self.max_running })
    }

    /// `POST /{v}/models/{model}:batchGenerateContent` with `{"batch": {"displayName", "inputConfig":
    /// {"fileName": "files/…"} | {"requests": {"requests": [...]}}}}`.
    pub async fn create(&self, project: ProjectId, model: &str, body: Value) -> Result<Value> {
        let upstream = self.models.upstream()?.clone();
        let upstream_model = self.models.upstream_model(model)?;
        // Before any work: the count is checked again, under the project's lock, when the batch is recorded.
        if self.meta.unfinished_batch_count(&project, UNFINISHED).await? >= self.max_running {
            return Err(self.too_many());
        }
        let batch = body.get("batch").filter(|b| b.is_object()).ok_or_else(|| {
            Error::invalid("The body is {\"batch\": {\"inputConfig\": {\"fileName\": \"files/…\"}}}.")
        })?;
        let display_name = batch.get("displayName").and_then(Value::as_str).map(str::to_owned);
        if display_name.as_ref().is_some_and(|n| n.chars().count() > crate::domain::MAX_DISPLAY_NAME_CHARS) {
            return Err(Error::invalid(format!(
                "displayName is longer than {} characters.",
                crate::domain::MAX_DISPLAY_NAME_CHARS
            )));
        }
        let input = batch.get("inputConfig").unwrap_or(&Value::Null);
        let source = match (input.get("fileName").and_then(Value::as_str), input.pointer("/requests/requests")) {
            (Some(name), None) => {
                let id = FileId::from_path(name.strip_prefix("files/").unwrap_or(name));
                let file = visible_file(self.meta.as_ref(), &project, &id).await?;
                if file.state != crate::domain::FileState::Ready {
                    return Err(Error::FailedPrecondition(format!(
                        "The File {id} is not in an ACTIVE state and usage is not allowed."
                    )));
                }
                Source::File(Box::new(file))
            }
            (None, Some(Value::Array(requests))) if !requests.is_empty() => Source::inline(requests)?,
            _ => {
                return Err(Error::invalid(
                    "inputConfig names its requests: a JSONL file ({\"fileName\": \"files/…\"}) or a non-empty \
                     {\"requests\": {\"requests\": [...]}}, not both.",
                ));
            }
        };

        let (plan, lines, bytes) = self.check_and_plan(&project, &source).await?;
        let id = random_alphanumeric(24);
        let now = Timestamp::now();
        if !plan.copies.is_empty() {
            self.meta.hold_upstream_copies(&plan.copies, now.plus_seconds(HOLD.as_secs())).await?;
        }
        let submission = Submission {
            id: &id,
            project: &project,
            model: &upstream_model,
            display_name: display_name.clone().unwrap_or_else(|| format!("filegate batch {id}")),
            requests: self.rewritten(&source, Arc::new(plan)).await?,
            bytes,
        };
        let (upstream_name, state) = if upstream.is_vertex() {
            self.submit_to_vertex(&upstream, submission).await?
        } else {
            self.submit_to_gemini(&upstream, submission).await?
        };
        tracing::info!(batch = id, lines, bytes, upstream = upstream.name(), "batch submitted");
        let record = BatchRecord {
            id,
            project,
            upstream_name,
            // As the Gemini API names it in a batch (`models/…`), whatever spelling the path used.
            model: if model.starts_with("models/") { model.to_owned() } else { format!("models/{model}") },
            display_name,
            state: state.to_owned(),
            input_file: match &source {
                Source::File(file) => Some(file.id.clone()),
                Source::Inline(_) => None,
            },
            output_file: None,
            error: None,
            created_at: now,
            updated_at: now,
            end_time: None,
        };
        if !self.meta.put_batch(&record, UNFINISHED, self.max_running).await? {
            // Racing creates passed the first check together: this one is undone upstream.
            let cancel = format!("{}:cancel", record.upstream_name);
            let _ = upstream.resource_request(reqwest::Method::POST, &cancel, Some(&json!({}))).await;
            let _ = upstream.resource_request(reqwest::Method::DELETE, &record.upstream_name, None).await;
            return Err(self.too_many());
        }
        Ok(batch_view(&record))
    }

    /// The first pass: every line parsed and its references resolved; the copies made. Returns the plan,
    /// the number of requests and the exact length of the rewritten JSONL.
    async fn check_and_plan(&self, project: &ProjectId, source: &Source) -> Result<(RewritePlan, u64, u64)> {
        let mut references = self.models.batch_references(project)?;
        let mut lines = source.lines(&self.blobs).await?;
        let (mut count, mut bytes) = (0u64, 0u64);
        while let Some(line) = lines.next().await {
            let (number, line) = line?;
            let mut request = parse_line(number, &line)?;
            references.rewrite(&mut request["request"]).await.map_err(|e| at_line(number, e))?;
            bytes += serde_json::to_vec(&request).map_err(Error::internal)?.len() as u64 + 1;
            count += 1;
        }
        if count == 0 {
            return Err(Error::invalid("The batch has no requests: its file holds no line."));
        }
        Ok((references.into_plan(), count, bytes))
    }

    /// The second pass: the rewritten lines as they stream.
    async fn rewritten(&self, source: &Source, plan: Arc<RewritePlan>) -> Result<ByteStream> {
        let lines = source.lines(&self.blobs).await?;
        Ok(lines
            .map(move |line| {
                let (number, line) = line?;
                let mut request = parse_line(number, &line)?;
                plan.apply(&mut request["request"]).map_err(|e| at_line(number, e))?;
                let mut bytes = serde_json::to_vec(&request).map_err(Error::internal)?;
                bytes.push(b'\n');
                Ok(Bytes::from(bytes))
            })
            .boxed())
    }

    async fn submit_to_gemini(
        &self,
        upstream: &UpstreamClient,
        batch: Submission<'_>,
    ) -> Result<(String, &'static str)> {
        let body = reqwest::Body::wrap_stream(batch.requests.map_err(std::io::Error::other));
        // "jsonl" is the MIME type Google's batch guide uploads requests with.
        let name = format!("filegate batch {}", batch.id);
        let mut google = upstream.upload_file(&name, "jsonl", batch.bytes, body).await?;
        let deadline = tokio::time::Instant::now() + self.processing_timeout;
        while google.state == "PROCESSING" && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            google = upstream.get_file(&google.name).await?;
        }
        let create = json!({"batch": {"displayName": batch.display_name, "inputConfig": {"fileName": google.name}}});
        let path = format!("models/{}:batchGenerateContent", batch.model);
        let operation = upstream.resource_request(reqwest::Method::POST, &path, Some(&create)).await?;
        let name = operation
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::internal("the Gemini API answered a batch without a name"))?;
        let state =
            operation.pointer("/metadata/state").and_then(Value::as_str).map_or(view::PENDING, view::from_gemini);
        Ok((name.to_owned(), state))
    }

    async fn submit_to_vertex(
        &self,
        upstream: &UpstreamClient,
        batch: Submission<'_>,
    ) -> Result<(String, &'static str)> {
        let staging = self.models.copies().and_then(|c| c.staging()).ok_or_else(|| {
            Error::invalid(
                "Vertex AI reads a batch's requests from Cloud Storage: the server's operator can set \
                 FILEGATE_VERTEX_STAGING_BUCKET=gs://… for filegate to put them there.",
            )
        })?;
        let key = new_object_key(batch.project, &FileId::from_stored(format!("batch-{}", batch.id)));
        write_object(&staging, key.to_string(), batch.requests, batch.bytes).await?;
        let input = staging.storage_uri(&key).ok_or_else(|| Error::internal("the staging bucket has no gs:// URI"))?;
        let job = json!({
            "displayName": batch.display_name,
            "model": format!("publishers/google/models/{}", batch.model),
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [input]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": format!("{input}-output/")}},
        });
        let parent = upstream.parent().unwrap_or_default();
        let path = format!("{parent}/batchPredictionJobs");
        let made = upstream.resource_request(reqwest::Method::POST, &path, Some(&job)).await?;
        let name = made
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::internal("Vertex AI answered a batch prediction job without a name"))?;
        Ok((name.to_owned(), view::from_vertex(made.get("state").and_then(Value::as_str).unwrap_or_default())))
    }

    async fn record(&self, project: &ProjectId, name: &str) -> Result<BatchRecord> {
        let id = batch_id(name)?;
        self.meta.batch(project, id).await?.ok_or_else(|| Error::BatchNotFound(name.to_owned()))
    }

    /// `GET /{v}/batches/{id}`: what the upstream says now, and the results once they are a file.
    pub async fn get(self: &Arc<Self>, project: &ProjectId, name: &str) -> Result<Value> {
        let record = self.record(project, name).await?;
        Ok(batch_view(&self.refresh(record).await?))
    }

    /// Asks the upstream about a job that has not ended here, records the answer, and starts collecting
    /// the results of one that succeeded.
    async fn refresh(self: &Arc<Self>, mut record: BatchRecord) -> Result<BatchRecord> {
        let collected = record.output_file.is_some();
        if view::is_final(&record.state) && (record.state != view::SUCCEEDED || collected) {
            return Ok(record);
        }
        let upstream = self.models.upstream()?.clone();
        let found = upstream.resource_request(reqwest::Method::GET, &record.upstream_name, None).await?;
        let (state, end, results) = if upstream.is_vertex() {
            let state = view::from_vertex(found.get("state").and_then(Value::as_str).unwrap_or_default());
            let directory = found.pointer("/outputInfo/gcsOutputDirectory").and_then(Value::as_str);
            (state, found.get("endTime"), directory.map(|d| Results::Gcs(format!("{d}/predictions.jsonl"))))
        } else {
            let state =
                found.pointer("/metadata/state").and_then(Value::as_str).map_or(view::PENDING, view::from_gemini);
            let file = found.pointer("/metadata/output/responsesFile").and_then(Value::as_str);
            (state, found.pointer("/metadata/endTime"), file.map(|f| Results::GoogleFile(f.to_owned())))
        };
        let before = record.clone();
        record.state = state.to_owned();
        record.end_time = end.and_then(Value::as_str).and_then(Timestamp::parse_rfc3339).or(record.end_time);
        record.error = found.get("error").map(Value::to_string).or(record.error);
        // A client polling a running job writes nothing until something changed.
        if (&before.state, before.end_time, &before.error) != (&record.state, record.end_time, &record.error) {
            record.updated_at = Timestamp::now();
            self.record_change(&record, None).await?;
        }
        if state == view::SUCCEEDED && !collected {
            let now = Timestamp::now();
            let until = now.plus_seconds(COLLECTION_LEASE.as_secs());
            if let Some(results) = results {
                let owner = &self.collector;
                if let Some(lease) =
                    self.meta.claim_item(Queue::BatchCollections, &record.id, owner, now, until).await?
                {
                    let (batches, record) = (self.clone(), record.clone());
                    tokio::spawn(async move { batches.collect(record, results, lease).await });
                }
            }
        }
        Ok(record)
    }

    /// Records what was learnt of a batch (`learnt`: its state, times, error, results file) over the row as
    /// it is now, and queues the webhook event the change tells, in one transaction. The row may have moved
    /// since `learnt` was read (another request or node recorded first): the change is made from the row
    /// read here, with a compare-and-set, and read again if that lost. Once the API has shown an end, a
    /// late answer never moves the state back.
    ///
    /// With a collection's `lease`, only while it holds: `false` when it does not (the results were
    /// collected by another holder).
    async fn record_change(&self, learnt: &BatchRecord, lease: Option<&Lease>) -> Result<bool> {
        for _ in 0..RECORD_ATTEMPTS {
            let Some(current) = self.meta.batch(&learnt.project, &learnt.id).await? else { return Ok(true) };
            let after = BatchRecord {
                state: if shown_ended(&current) { current.state.clone() } else { learnt.state.clone() },
                end_time: learnt.end_time.or(current.end_time),
                error: learnt.error.clone().or_else(|| current.error.clone()),
                output_file: learnt.output_file.clone().or_else(|| current.output_file.clone()),
                updated_at: Timestamp::now(),
                ..current.clone()
            };
            if (&after.state, after.end_time, &after.error, &after.output_file)
                == (&current.state, current.end_time, &current.error, &current.output_file)
            {
                return Ok(true);
            }
            let mut tx = self.meta.write().await?;
            if let Some(lease) = lease
                && !tx.holds(lease).await?
            {
                return Ok(false);
            }
            if !tx.update_batch_from(&after, &current.state, current.output_file.is_some()).await? {
                continue;
            }
            if let Some(event) = ended_event(&current, &after) {
                let (project, view) = (&after.project, batch_view(&after));
                outbox::queue_batch_event(tx.as_mut(), event, project, view, Timestamp::now()).await?;
            }
            tx.commit().await?;
            return Ok(true);
        }
        Err(Error::retry(format!("batches/{} changed too often to record what was learnt of it", learnt.id)))
    }

    /// Asks the upstream, every `every`, about every batch whose end the API has not shown yet, so that
    /// their results are collected and their webhooks told without anyone polling. Every node watches: a
    /// change is recorded (and told) once, results are collected once (a lease).
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.follow_all() => {}
            }
        }
    }

    /// One walk over all unfinished batches, oldest first, [`WATCHED_AT_ONCE`] upstream requests at a time.
    async fn follow_all(self: &Arc<Self>) {
        let mut after: Option<BatchCursor> = None;
        loop {
            let page = match self.meta.unfinished_batches(UNFINISHED, after.as_ref(), WATCH_PAGE).await {
                Ok(page) => page,
                Err(e) => return tracing::warn!(error = %e, "listing unfinished batches failed"),
            };
            let full = page.len() == WATCH_PAGE as usize;
            after = page.last().map(|last| (last.created_at, last.id.clone()));
            futures_util::stream::iter(page)
                .for_each_concurrent(WATCHED_AT_ONCE, |batch| async move {
                    let id = batch.id.clone();
                    if let Err(e) = self.refresh(batch).await {
                        tracing::debug!(batch = id, error = %e, "asking the upstream about a batch failed");
                    }
                })
                .await;
            if !full {
                return;
            }
        }
    }

    /// Copies a finished job's results into a filegate file of its project, streamed, under the collection's
    /// lease: renewed while the copy runs (a large file may take longer than one lease), given up at once
    /// if the copy fails, and presented to record the file, so that results are recorded once even when a
    /// holder stalled past its lease and another took over.
    async fn collect(&self, mut record: BatchRecord, results: Results, lease: Lease) {
        let copy = async {
            let upstream = self.models.upstream()?.clone();
            let (body, size): (ByteStream, u64) = match &results {
                Results::GoogleFile(name) => {
                    let size = upstream.get_file(name).await?.size_bytes.and_then(|s| s.parse().ok()).unwrap_or(0);
                    (upstream.download_file(name).await?.map_err(Error::from).boxed(), size)
                }
                Results::Gcs(uri) => {
                    let key = registered_key(uri);
                    let size = self.blobs.size(&key).await?.ok_or_else(|| {
                        Error::internal(format!("Vertex AI reported results at {uri}, where there are none"))
                    })?;
                    (self.blobs.read(&key, 0..size).await?, size)
                }
            };
            let request = StartUpload {
                project: record.project.clone(),
                name: None,
                display_name: Some(format!("batch {} responses", record.id)),
                mime_type: Some("application/jsonl".into()),
                size: DeclaredSize::Exact(size),
                origin: Origin::Generated,
                ttl: None,
            };
            self.uploads.upload_whole(request, body).await
        };
        let collected = tokio::select! {
            collected = copy => collected,
            () = lease::keep_held(self.meta.clone(), lease.clone(), COLLECTION_LEASE) => {
                return tracing::warn!(batch = record.id, "the lease on collecting batch results was lost; another holder collects them");
            }
        };
        let mut made = None;
        match collected {
            Ok(file) => {
                tracing::info!(batch = record.id, file = %file.id, "batch results collected");
                record.output_file = Some(file.id.clone());
                record.updated_at = Timestamp::now();
                made = Some(file);
            }
            Err(err @ (Error::QuotaExceeded { .. } | Error::FileTooLarge { .. } | Error::LimitReached(_))) => {
                record.state = view::FAILED.to_owned();
                record.error = Some(
                    json!({"code": 8, "status": "RESOURCE_EXHAUSTED", "message": format!(
                        "The batch ran, but filegate could not keep its results: {}", err.public_message()
                    )})
                    .to_string(),
                );
            }
            Err(err) => {
                // Given up at once, so that the next look at the batch tries again.
                tracing::warn!(batch = record.id, error = %err, "collecting batch results failed");
                let now = Timestamp::now();
                if let Err(e) = self.meta.release(&lease, now, "", now).await {
                    tracing::warn!(batch = record.id, error = %e, "releasing a failed batch collection failed");
                }
                return;
            }
        }
        match self.record_change(&record, Some(&lease)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(batch = record.id, "batch results were collected twice; the later copy is removed");
                if let Some(file) = made {
                    self.remove_duplicate(&file).await;
                }
            }
            Err(e) => tracing::warn!(batch = record.id, error = %e, "recording collected batch results failed"),
        }
    }

    /// Removes a results file no batch records (another holder of the collection recorded its own).
    async fn remove_duplicate(&self, file: &FileRecord) {
        let removed = async {
            let mut tx = self.meta.write().await?;
            tx.lock_project(&file.project).await?;
            let garbage = lifecycle::remove(tx.as_mut(), &file.blob_key, Timestamp::now()).await?;
            tx.commit().await?;
            Ok::<_, Error>(garbage.map(|(_, garbage)| garbage).unwrap_or_default())
        };
        match removed.await {
            Ok(garbage) => {
                crate::services::garbage::reclaim_now(self.meta.as_ref(), self.blobs.as_ref(), &garbage).await
            }
            Err(e) => tracing::warn!(file = %file.id, error = %e, "removing a duplicate batch results file failed"),
        }
    }

    /// `GET /{v}/batches`: the project's batches as last seen, in id order.
    pub async fn list(&self, project: &ProjectId, page_size: Option<u32>, page_token: Option<&str>) -> Result<Value> {
        let limit = page_size.filter(|n| *n > 0).unwrap_or(DEFAULT_PAGE_SIZE).min(MAX_PAGE_SIZE);
        let after = page_token.filter(|t| !t.is_empty());
        if after.is_some_and(|t| batch_id(t).ok() != Some(t)) {
            return Err(Error::invalid("Invalid page token."));
        }
        let batches = self.meta.batches(project, after, limit + 1).await?;
        let page = &batches[..batches.len().min(limit as usize)];
        let mut list = json!({"operations": page.iter().map(batch_view).collect::<Vec<_>>()});
        if let (true, Some(last)) = (batches.len() > limit as usize, page.last()) {
            list["nextPageToken"] = Value::String(last.id.clone());
        }
        Ok(list)
    }

    /// `POST /{v}/batches/{id}:cancel`: asked of the upstream; the job's state follows.
    pub async fn cancel(self: &Arc<Self>, project: &ProjectId, name: &str) -> Result<Value> {
        let record = self.record(project, name).await?;
        if !view::is_final(&record.state) {
            let upstream = self.models.upstream()?;
            let path = format!("{}:cancel", record.upstream_name);
            upstream.resource_request(reqwest::Method::POST, &path, Some(&json!({}))).await?;
        }
        Ok(batch_view(&self.refresh(record).await?))
    }

    /// `DELETE /{v}/batches/{id}`: at the upstream (one gone there counts as deleted), then here. Its
    /// results file, if any, stays a file of the project.
    pub async fn delete(&self, project: &ProjectId, name: &str) -> Result<Value> {
        let record = self.record(project, name).await?;
        match self.models.upstream()?.resource_request(reqwest::Method::DELETE, &record.upstream_name, None).await {
            Ok(_) | Err(UpstreamError::Status { status: 403 | 404, .. }) => {}
            Err(err) => return Err(err.into()),
        }
        self.meta.delete_batch(project, &record.id).await?;
        Ok(json!({"name": format!("batches/{}", record.id), "done": true}))
    }
}

/// Reads of a batch's row before a change to it is given up (each lost to another writer).
const RECORD_ATTEMPTS: usize = 5;

/// Whether the API has shown the batch's end: a final state, and for a success its results collected.
fn shown_ended(batch: &BatchRecord) -> bool {
    view::is_final(&batch.state) && (batch.state != view::SUCCEEDED || batch.output_file.is_some())
}

/// The webhook event a change of a batch tells, if the API now shows it ended: a success only once its
/// results are a file of the project (until then the API shows it running).
fn ended_event(before: &BatchRecord, after: &BatchRecord) -> Option<EventType> {
    if after.state == view::SUCCEEDED && after.output_file.is_some() && before.output_file.is_none() {
        return Some(EventType::BatchSucceeded);
    }
    if after.state == before.state {
        return None;
    }
    match after.state.as_str() {
        view::FAILED => Some(EventType::BatchFailed),
        view::CANCELLED => Some(EventType::BatchCancelled),
        view::EXPIRED => Some(EventType::BatchExpired),
        _ => None,
    }
}
