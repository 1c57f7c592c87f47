//! The file references of batch requests (`services::batches`), resolved with the same checks as a model
//! call and rewritten one request at a time.
//!
//! A batch is read twice, line by line, never whole: the first pass resolves every reference (the caller's
//! own, ready file; each file looked up and copied once) and learns where each file goes; the second
//! rewrites each line from what the first learnt, synchronously, as the rewritten requests stream upstream.
//! Each copy a batch reuses is first checked to still exist upstream (a batch cannot retry once submitted).
//! A batch reads every file by reference, never inline (thousands of requests each carrying a file's bytes
//! would multiply them): Vertex AI gets `gs://` URIs (a file's own object, else a staging copy), the Gemini
//! API its Files API copies.

use std::collections::HashMap;

use serde_json::Value;

use super::refs::{self, FileRef, ReferenceRules, Rewrite, Target};
use super::upstream::UpstreamClient;
use super::{Models, effective_mime};
use crate::domain::{FileId, ProjectId};
use crate::error::{Error, Result};
use crate::meta::CopyTarget;

/// The first pass: learns each file the requests name.
pub struct BatchReferences<'a> {
    models: &'a Models,
    upstream: &'a UpstreamClient,
    project: ProjectId,
    plan: RewritePlan,
}

/// What the first pass learnt: enough to rewrite any of the same requests without a lookup.
#[derive(Clone)]
pub struct RewritePlan {
    rules: ReferenceRules,
    /// Each file met: the URI the upstream reads it by, and its MIME type.
    files: HashMap<FileId, (String, String)>,
    /// Each cache the requests name (`cachedContent`): the caller's name → the upstream's.
    caches: HashMap<String, String>,
    /// The upstream copies the batch reads, to hold while it runs.
    pub copies: Vec<(String, CopyTarget)>,
}

impl Models {
    /// The reference resolver of one batch of `project`'s.
    pub fn batch_references(&self, project: &ProjectId) -> Result<BatchReferences<'_>> {
        let upstream = self.upstream()?;
        let plan = RewritePlan {
            rules: self.rules.clone(),
            files: HashMap::new(),
            caches: HashMap::new(),
            copies: Vec::new(),
        };
        Ok(BatchReferences { models: self, upstream, project: project.clone(), plan })
    }
}

impl BatchReferences<'_> {
    /// Resolves the references of one request — each file the caller's own and ready, and where it goes
    /// (copied now if it must be; files met before are not looked up again) — and rewrites them.
    pub async fn rewrite(&mut self, request: &mut Value) -> Result<()> {
        let found = self.models.rules.find(request)?;
        self.learn(&found).await?;
        self.models.learn_caches(&self.project, request, &mut self.plan.caches).await?;
        self.plan.rewrite_found(request, found)
    }

    async fn learn(&mut self, found: &[FileRef]) -> Result<()> {
        let new: Vec<FileRef> = found
            .iter()
            .filter(|r| !matches!(&r.target, Target::File(id) if self.plan.files.contains_key(id)))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let resolved = self.models.resolve(&self.project, &new).await?;
        for file in resolved.by_id.values() {
            if self.plan.files.contains_key(&file.id) {
                continue;
            }
            let own_gcs = self.models.blobs.storage_uri(&file.blob_key).filter(|uri| uri.starts_with("gs://"));
            let uri = match own_gcs {
                Some(uri) if self.upstream.is_vertex() => {
                    super::limits::check_vertex_reference(file)?;
                    uri
                }
                _ => {
                    let copies = self.models.copies.as_ref().ok_or_else(|| Error::internal("no copy keeper"))?;
                    let Some(target) = copies.target() else {
                        return Err(Error::invalid(format!(
                            "A batch reads every file by reference, and the file {} is not in Cloud Storage. \
                             The server's operator can set FILEGATE_VERTEX_STAGING_BUCKET=gs://… so that filegate \
                             copies such files there once.",
                            file.id
                        )));
                    };
                    if self.upstream.is_vertex() {
                        super::limits::check_vertex_reference(file)?;
                    }
                    let (mut uri, reused) = copies.uri(file, target).await?;
                    // A model call retries when a copy it reused turns out gone; a batch fails hours later
                    // instead: a reused copy is checked now, and made again if the upstream lost it.
                    if reused && copies.vanished(file, target).await? {
                        copies.forget(file, target).await?;
                        uri = copies.uri(file, target).await?.0;
                    }
                    self.plan.copies.push((file.blob_key.to_string(), target));
                    uri
                }
            };
            self.plan.files.insert(file.id.clone(), (uri, file.mime_type.clone()));
        }
        Ok(())
    }

    /// Everything learnt so far.
    pub fn into_plan(self) -> RewritePlan {
        self.plan
    }
}

impl RewritePlan {
    /// Rewrites the references of a request the first pass learnt.
    pub fn apply(&self, request: &mut Value) -> Result<()> {
        let found = self.rules.find(request)?;
        self.rewrite_found(request, found)
    }

    fn rewrite_found(&self, request: &mut Value, found: Vec<FileRef>) -> Result<()> {
        super::caches::rename_caches(request, &self.caches)?;
        for reference in found {
            let rewrite = match &reference.target {
                Target::Gcs(uri) => Rewrite::FileData { uri: uri.clone(), mime_type: reference.mime_type.clone() },
                Target::File(id) | Target::Stored { id, .. } => {
                    let (uri, file_mime) = self
                        .files
                        .get(id)
                        .ok_or_else(|| Error::internal(format!("the file {id} was not met by the first pass")))?;
                    Rewrite::FileData { uri: uri.clone(), mime_type: Some(effective_mime(&reference, file_mime)) }
                }
                Target::Refused(uri) => return Err(Error::FileNotFound(uri.clone())),
                Target::Invalid(message) => return Err(Error::invalid(message.clone())),
            };
            refs::rewrite(request, &reference, rewrite);
        }
        Ok(())
    }
}
