//! The model front door: a `generateContent` call (native, or translated from an OpenAI chat completion)
//! whose file references name filegate files is forwarded to Vertex AI or the Gemini API with each
//! reference rewritten to something the upstream can read.
//!
//! For each referenced file, in order of preference:
//!
//! | the file is            | Vertex AI gets                                 | the Gemini API gets                  |
//! |------------------------|------------------------------------------------|--------------------------------------|
//! | in Cloud Storage       | its `gs://` URI (no copy)                      | inline, or a Files API upload        |
//! | small enough to inline | `inlineData`, streamed from the blob store     | `inlineData`                         |
//! | larger                 | a copy in `FILEGATE_VERTEX_STAGING_BUCKET`     | an upload to its Files API           |
//!
//! "Small enough" is at most `FILEGATE_INLINE_MAX_BYTES` and within what is left of the 20 MiB request
//! (base64 counted). Copies are made once per file and reused by every call and node until the file goes
//! (`copies.rs`). Every check (the caller's project, the file's state, per-type limits) happens before
//! anything is sent upstream; the caller's own key never leaves filegate.

mod batch_refs;
mod body;
mod caches;
pub mod chat;
mod copies;
mod limits;
mod refs;
pub mod responses;
pub mod upstream;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;
use tracing::Instrument as _;

pub use batch_refs::{BatchReferences, RewritePlan};
pub use copies::Copies;
pub use limits::{REQUEST_MAX_BYTES, body_too_large};
pub use upstream::ModelMethod;

use self::body::{InlineFile, OutgoingBody, base64_len};
pub use self::refs::ReferenceRules;
use self::refs::{FileRef, Rewrite, Target};
use self::upstream::UpstreamClient;
use self::usage::CallMeter;
use crate::blob::Blobs;
use crate::config::{ModelConfig, Upstream};
use crate::domain::{FileId, FileRecord, FileState, ProjectId, StorageKey, random_alphanumeric};
use crate::error::{Error, Result, UpstreamError};
use crate::meta::{CopyTarget, MetaStore};
use crate::services::files::visible_file;

/// A model call as a surface hands it over.
pub struct ModelCall {
    pub project: ProjectId,
    /// The model as the caller named it (an alias of `FILEGATE_MODEL_MAP`, or the upstream's name).
    pub model: String,
    pub method: ModelMethod,
    /// `?alt=sse`: a stream of server-sent events (else the upstream's JSON, an array for a stream).
    pub sse: bool,
    pub body: Value,
    /// Refuse files of types the model cannot read (the OpenAI surfaces; the native routes leave that to
    /// the upstream, which answers such a file with its own error).
    pub readable_only: bool,
}

/// The upstream's reply, streaming.
pub struct ModelReply {
    pub content_type: Option<String>,
    pub body: BoxStream<'static, Result<Bytes>>,
}

pub struct Models {
    upstream: Option<Arc<UpstreamClient>>,
    copies: Option<Arc<Copies>>,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    inline_max_bytes: u64,
    model_map: HashMap<String, String>,
    rules: ReferenceRules,
}

/// The files a request's references name, each looked up once.
#[derive(Default)]
struct ResolvedFiles {
    by_id: HashMap<FileId, FileRecord>,
    /// How many references name each file (an inline file is sent once per reference).
    references: HashMap<FileId, u64>,
    /// The file of each reference, in the order found; `None` for an object outside filegate.
    per_reference: Vec<Option<FileId>>,
}

fn request_too_large(bytes: u64, upstream: &str) -> Error {
    Error::invalid(format!(
        "The request is {bytes} bytes, over the {} bytes {upstream} takes; send large data as files.",
        limits::REQUEST_MAX_BYTES
    ))
}

/// Where a forwarded request goes.
#[derive(Clone, Copy)]
enum Destination<'a> {
    Model {
        model: &'a str,
        method: ModelMethod,
        sse: bool,
        readable_only: bool,
    },
    /// A new context cache (`caches.rs`).
    NewCache,
}

/// A forwarded request's reply, and the upstream copies of files it was sent (a cache holds them).
struct Forwarded {
    reply: upstream::Reply,
    copies: Vec<(String, CopyTarget)>,
}

/// How one file reaches the upstream.
enum Route {
    Inline,
    /// By URI; `cached` when it is a copy made earlier (which may have vanished upstream since).
    Uri {
        uri: String,
        copy: Option<CopyTarget>,
        cached: bool,
    },
}

/// The model's own name in any of its spellings (the part after the last `models/`).
fn model_name(model: &str) -> &str {
    model.rsplit_once("models/").map_or(model, |(_, name)| name)
}

/// The MIME type a file goes by: the one the reference gives, unless missing or generic, else the file's.
fn effective_mime(reference: &FileRef, file_mime: &str) -> String {
    match reference.mime_type.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() && m != "application/octet-stream" => m.to_owned(),
        _ => file_mime.to_owned(),
    }
}

/// Whether an upstream error may be about a file it cannot find or read (Google answers a missing or
/// deleted file with 403 `PERMISSION_DENIED` or 404 `NOT_FOUND`), decided from its status and code only.
fn may_be_about_a_copy(err: &UpstreamError) -> bool {
    match err {
        UpstreamError::Status { status: 403 | 404, code, .. } => {
            code.as_deref().is_none_or(|code| ["PERMISSION_DENIED", "NOT_FOUND"].contains(&code))
        }
        _ => false,
    }
}

impl Models {
    pub fn new(
        config: &ModelConfig,
        meta: Arc<dyn MetaStore>,
        blobs: Arc<Blobs>,
        rules: ReferenceRules,
    ) -> anyhow::Result<Self> {
        let upstream = UpstreamClient::new(config)?.map(Arc::new);
        let copies = match (&upstream, &config.upstream) {
            (Some(client), Upstream::Vertex { staging, .. }) => {
                let staging = staging.as_ref().map(Blobs::from_env).transpose()?.map(Arc::new);
                Some(Copies::new(meta.clone(), blobs.clone(), client.clone(), staging, config.idle_timeout))
            }
            (Some(client), _) => {
                Some(Copies::new(meta.clone(), blobs.clone(), client.clone(), None, config.idle_timeout))
            }
            (None, _) => None,
        };
        Ok(Self {
            upstream,
            copies: copies.map(Arc::new),
            meta,
            blobs,
            inline_max_bytes: config.inline_max_bytes,
            model_map: config.model_map.clone(),
            rules,
        })
    }

    /// The copy keeper, whose sweeper the server runs (none when model calls are off).
    pub fn copies(&self) -> Option<Arc<Copies>> {
        self.copies.clone()
    }

    pub(crate) fn upstream(&self) -> Result<&Arc<UpstreamClient>> {
        self.upstream.as_ref().ok_or_else(|| {
            Error::NotImplemented(
                "Model calls are off on this server: its operator can forward them to Vertex AI or the Gemini \
                 API with FILEGATE_UPSTREAM=vertex or FILEGATE_UPSTREAM=gemini."
                    .into(),
            )
        })
    }

    /// The upstream's name for `model` in any spelling the SDKs send (`m`, `models/m`,
    /// `publishers/google/models/m`, `projects/{p}/locations/{l}/publishers/google/models/m`): mapped by
    /// `FILEGATE_MODEL_MAP`, and checked to be a plain name, so that no path can be smuggled into the
    /// upstream URL.
    pub fn upstream_model(&self, model: &str) -> Result<String> {
        let model = model_name(model);
        let model = self.model_map.get(model).map_or(model, String::as_str);
        let plain = !model.is_empty()
            && model.len() <= 128
            && model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if !plain {
            return Err(Error::invalid(format!(
                "Invalid model name \"{model}\": use the upstream's model name, such as gemini-2.5-flash."
            )));
        }
        Ok(model.to_owned())
    }

    /// Forwards a call and streams the reply back, measured (`usage.rs`).
    pub async fn call(&self, call: ModelCall) -> Result<ModelReply> {
        let upstream = self.upstream()?;
        let model = self.upstream_model(&call.model)?;
        let meter = CallMeter::start(&call.project, &model, call.method.as_str(), upstream.provider());
        let destination =
            Destination::Model { model: &model, method: call.method, sse: call.sse, readable_only: call.readable_only };
        let mut body = call.body;
        let forwarded = async {
            self.resolve_cache_names(&call.project, &mut body).await?;
            self.forward(upstream, destination, &call.project, &body).await
        };
        match forwarded.instrument(meter.span.clone()).await {
            Ok(Forwarded { reply, .. }) => Ok(ModelReply {
                content_type: reply.content_type,
                body: meter.tap(reply.body).map_err(Error::from).boxed(),
            }),
            Err(err) => {
                meter.failed(&err);
                Err(err)
            }
        }
    }

    /// Sends `request` (a body whose file references name filegate files) to `destination`, each reference
    /// rewritten to what the upstream can read; answers the upstream's reply and the copies it was sent.
    async fn forward(
        &self,
        upstream: &UpstreamClient,
        destination: Destination<'_>,
        project: &ProjectId,
        request: &Value,
    ) -> Result<Forwarded> {
        // Size first, references next, each bounded before any per-reference work (a lookup, a rewrite).
        let client_bytes = serde_json::to_vec(request).map_err(Error::internal)?.len() as u64;
        if client_bytes > limits::REQUEST_MAX_BYTES {
            return Err(request_too_large(client_bytes, upstream.name()));
        }
        let found = self.rules.find(request)?;
        let files = self.resolve(project, &found).await?;
        if let Destination::Model { readable_only: true, .. } = destination {
            for (reference, file) in found.iter().zip(&files.per_reference) {
                let Some(file) = file.as_ref().map(|id| &files.by_id[id]) else { continue };
                limits::check_model_reads(file, &effective_mime(reference, &file.mime_type))?;
            }
        }
        // The Gemini API caches a video only from a Files API file, whatever its size: a cache made there
        // gets every file by reference (one upload, reused by every later cache and call).
        let may_inline = upstream.is_vertex() || !matches!(destination, Destination::NewCache);
        // The Gemini API cannot read Cloud Storage: objects a model may read there go inline.
        let objects =
            if upstream.is_vertex() { HashMap::new() } else { self.objects_inline(&found, may_inline).await? };
        let objects_cost: u64 = found
            .iter()
            .filter_map(|r| match &r.target {
                Target::Gcs(uri) => objects.get(uri).map(|(_, size, _)| base64_len(*size)),
                _ => None,
            })
            .sum();
        for attempt in 0..2 {
            let routes = self.routes(upstream, &files, client_bytes + objects_cost, may_inline).await?;
            let placeholders = format!("filegate-inline-{}", random_alphanumeric(24));
            let mut body = request.clone();
            let mut inline = Vec::new();
            for (reference, file) in found.iter().zip(&files.per_reference) {
                let rewrite = match (&reference.target, file) {
                    (Target::Gcs(uri), _) => match objects.get(uri) {
                        Some((key, size, mime_type)) => {
                            let placeholder = body::placeholder(&placeholders, inline.len());
                            inline.push(InlineFile { blob_key: key.clone(), size: *size });
                            Rewrite::Inline { mime_type: mime_type.clone(), placeholder }
                        }
                        None => Rewrite::FileData { uri: uri.clone(), mime_type: reference.mime_type.clone() },
                    },
                    (_, Some(id)) => {
                        let file = &files.by_id[id];
                        let mime_type = effective_mime(reference, &file.mime_type);
                        match &routes[id] {
                            Route::Uri { uri, .. } => {
                                Rewrite::FileData { uri: uri.clone(), mime_type: Some(mime_type) }
                            }
                            Route::Inline => {
                                let placeholder = body::placeholder(&placeholders, inline.len());
                                inline.push(InlineFile {
                                    blob_key: file.blob_key.clone(),
                                    size: file.size_bytes.unwrap_or(0),
                                });
                                Rewrite::Inline { mime_type, placeholder }
                            }
                        }
                    }
                    (_, None) => continue,
                };
                refs::rewrite(&mut body, reference, rewrite);
            }
            let outgoing = OutgoingBody::new(&body, &placeholders, &inline)?;
            if outgoing.len() > limits::REQUEST_MAX_BYTES {
                return Err(request_too_large(outgoing.len(), upstream.name()));
            }
            let stream = outgoing.stream(self.blobs.clone()).map_err(std::io::Error::other);
            let stream = reqwest::Body::wrap_stream(stream);
            let sent = match destination {
                Destination::Model { model, method, sse, .. } => {
                    upstream.call(model, method, sse, stream, outgoing.len()).await
                }
                Destination::NewCache => upstream.create_cache(stream, outgoing.len()).await,
            };
            match sent {
                Err(err) if attempt == 0 && may_be_about_a_copy(&err) => {
                    // A copy made earlier may be gone upstream (deleted, or expired early): each is checked
                    // by asking for it, and the call is made again, once, if one was gone.
                    if !self.forget_vanished_copies(&files, &routes).await? {
                        return Err(err.into());
                    }
                    tracing::info!("the upstream lost a copy filegate made: copying again");
                }
                Err(err) => return Err(err.into()),
                Ok(reply) => {
                    let copies = routes
                        .iter()
                        .filter_map(|(id, route)| match route {
                            Route::Uri { copy: Some(target), .. } => {
                                Some((files.by_id[id].blob_key.to_string(), *target))
                            }
                            _ => None,
                        })
                        .collect();
                    return Ok(Forwarded { reply, copies });
                }
            }
        }
        Err(Error::internal("the retry loop ended without an answer"))
    }

    /// The Cloud Storage objects (outside filegate) the references name, each as it goes inline to an
    /// upstream that cannot read Cloud Storage (the Gemini API): `uri → (key to read it by, size, MIME
    /// type)`. An object too large to go inline, or a cache's (which the Gemini API makes only from Files
    /// API files), is refused with what to do instead: register it, and filegate copies the file once.
    async fn objects_inline(
        &self,
        found: &[FileRef],
        may_inline: bool,
    ) -> Result<HashMap<String, (StorageKey, u64, String)>> {
        let mut objects = HashMap::new();
        for reference in found {
            let Target::Gcs(uri) = &reference.target else { continue };
            if objects.contains_key(uri) {
                continue;
            }
            let key = crate::domain::registered_key(uri);
            let size = self.blobs.size(&key).await?.ok_or_else(|| Error::FileNotFound(uri.clone()))?;
            if !may_inline || size > self.inline_max_bytes {
                return Err(Error::invalid(format!(
                    "{uri} is {size} bytes: the Gemini API cannot read Cloud Storage, and filegate sends such \
                     objects inline only up to {} bytes (and never into a cache). Register it \
                     (POST /v1beta/files:register) and name the file: filegate copies files to the Gemini API \
                     once.",
                    self.inline_max_bytes
                )));
            }
            let mime_type = reference
                .mime_type
                .clone()
                .filter(|m| !m.trim().is_empty())
                .or_else(|| mime_guess::from_path(uri).first().map(|m| m.to_string()))
                .ok_or_else(|| Error::invalid(format!("{uri}: give its mimeType, which its name does not tell.")))?;
            objects.insert(uri.clone(), (key, size, mime_type));
        }
        Ok(objects)
    }

    /// Forgets every copy this call used that the upstream no longer has; `true` if there was one.
    async fn forget_vanished_copies(&self, files: &ResolvedFiles, routes: &HashMap<FileId, Route>) -> Result<bool> {
        let Some(copies) = &self.copies else { return Ok(false) };
        let mut vanished = false;
        for file in files.by_id.values() {
            if let Route::Uri { copy: Some(target), cached: true, .. } = routes[&file.id] {
                if copies.vanished(file, target).await? {
                    copies.forget(file, target).await?;
                    vanished = true;
                }
            }
        }
        Ok(vanished)
    }

    /// Looks up each file the references name, once per file, for `project`: a reference to anything else
    /// (another project's file or object, a URI filegate will not read for the caller) fails the call
    /// like a missing file, and a file that is not ready fails it, both before anything is sent.
    async fn resolve(&self, project: &ProjectId, found: &[FileRef]) -> Result<ResolvedFiles> {
        let mut resolved = ResolvedFiles::default();
        for reference in found {
            let id = match &reference.target {
                Target::File(id) => id,
                Target::Stored { project: owner, id, key, uri } => {
                    if owner != project {
                        return Err(Error::FileNotFound(uri.clone()));
                    }
                    let file = self.ready_file(project, id, &mut resolved).await?;
                    if file.blob_key != **key {
                        return Err(Error::FileNotFound(uri.clone()));
                    }
                    id
                }
                Target::Gcs(_) => {
                    resolved.per_reference.push(None);
                    continue;
                }
                Target::Refused(uri) => return Err(Error::FileNotFound(uri.clone())),
                Target::Invalid(message) => return Err(Error::invalid(message.clone())),
            };
            self.ready_file(project, id, &mut resolved).await?;
            *resolved.references.entry(id.clone()).or_default() += 1;
            resolved.per_reference.push(Some(id.clone()));
        }
        Ok(resolved)
    }

    async fn ready_file<'a>(
        &self,
        project: &ProjectId,
        id: &FileId,
        resolved: &'a mut ResolvedFiles,
    ) -> Result<&'a FileRecord> {
        if !resolved.by_id.contains_key(id) {
            let file = visible_file(self.meta.as_ref(), project, id).await?;
            if file.state != FileState::Ready {
                return Err(Error::FailedPrecondition(format!(
                    "The File {} is not in an ACTIVE state and usage is not allowed.",
                    file.id
                )));
            }
            resolved.by_id.insert(id.clone(), file);
        }
        Ok(&resolved.by_id[id])
    }

    /// Chooses how each file reaches the upstream, given that the caller's own request is `client_bytes`.
    /// A file sent inline costs its base64 once per reference.
    async fn routes(
        &self,
        upstream: &UpstreamClient,
        files: &ResolvedFiles,
        client_bytes: u64,
        may_inline: bool,
    ) -> Result<HashMap<FileId, Route>> {
        // The rewrite itself adds a little (an `inlineData` key where a `fileData` was): keep 4 KiB for it.
        let mut budget = limits::REQUEST_MAX_BYTES.saturating_sub(client_bytes + 4096);
        let mut routes = HashMap::new();
        for file in files.by_id.values() {
            let size = file.size_bytes.unwrap_or(0);
            let inline_cost = base64_len(size).saturating_mul(files.references[&file.id]);
            let in_gcs = self.blobs.storage_uri(&file.blob_key).filter(|uri| uri.starts_with("gs://"));
            let route = match in_gcs {
                Some(uri) if upstream.is_vertex() => {
                    limits::check_vertex_reference(file)?;
                    Route::Uri { uri, copy: None, cached: false }
                }
                _ if may_inline && size <= self.inline_max_bytes && inline_cost <= budget => {
                    budget -= inline_cost;
                    Route::Inline
                }
                _ => {
                    let copies = self.copies.as_ref().ok_or_else(|| Error::internal("no copy keeper"))?;
                    let Some(target) = copies.target() else {
                        return Err(Error::invalid(format!(
                            "The file {} is {size} bytes: too large to send to Vertex AI inline (at most {} bytes \
                             per file, 20 MiB per request), and it is not in Cloud Storage. The server's operator \
                             can set FILEGATE_VERTEX_STAGING_BUCKET=gs://… so that filegate copies such files \
                             there once.",
                            file.id, self.inline_max_bytes
                        )));
                    };
                    if upstream.is_vertex() {
                        limits::check_vertex_reference(file)?;
                    }
                    let (uri, cached) = copies.uri(file, target).await?;
                    Route::Uri { uri, copy: Some(target), cached }
                }
            };
            routes.insert(file.id.clone(), route);
        }
        Ok(routes)
    }

    /// Makes the copy a file will need before a model can read it, ahead of the first call (an import that
    /// just became ready): nothing happens when the file would go inline or by its own `gs://` URI.
    pub async fn prepare(&self, file: &FileRecord) {
        let (Some(upstream), Some(copies)) = (&self.upstream, &self.copies) else { return };
        let Some(target) = copies.target() else { return };
        let in_gcs = self.blobs.storage_uri(&file.blob_key).is_some_and(|uri| uri.starts_with("gs://"));
        if file.size_bytes.unwrap_or(0) <= self.inline_max_bytes || (upstream.is_vertex() && in_gcs) {
            return;
        }
        match copies.uri(file, target).await {
            Ok((uri, _)) => tracing::info!(file = %file.id, copy = %uri, "copied ahead for {}", upstream.name()),
            Err(e) => tracing::warn!(file = %file.id, error = %e, "copying ahead for {} failed", upstream.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_read_in_every_spelling_the_sdks_send() {
        for name in [
            "gemini-2.5-flash",
            "models/gemini-2.5-flash",
            "publishers/google/models/gemini-2.5-flash",
            "projects/None/locations/None/publishers/google/models/gemini-2.5-flash",
        ] {
            assert_eq!(model_name(name), "gemini-2.5-flash", "{name}");
        }
    }
}
