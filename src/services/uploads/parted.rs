//! An upload assembled from parts (OpenAI's Uploads API: create, add parts, complete with the parts'
//! order, cancel) as one resumable session: each part is appended at the session's committed offset as a
//! chunk is, and what a part's receipt records — where it starts and how long it is — is all completion
//! needs to check that the parts named are the bytes received, in that order, with nothing missing or
//! doubled. The parts arrive one after another (the openai SDKs send them in sequence); parts sent at once
//! are appended in the order they get in, and a completion naming another order is refused, never
//! reassembled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt as _, TryStreamExt as _};
use md5::{Digest as _, Md5};

use super::{Progress, Uploads};
use crate::blob::ByteStream;
use crate::domain::{FileRecord, ProjectId, SecretToken};
use crate::error::{Error, Result, UploadError};

/// Where a part went: its first byte's offset in the file, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartReceipt {
    pub offset: u64,
    pub len: u64,
}

impl Uploads {
    /// The file an upload session is making, for a caller of `project` (another project's session answers
    /// like a missing one).
    pub async fn file_of(&self, token: &SecretToken, project: &ProjectId) -> Result<FileRecord> {
        let session = self.session(token).await?;
        if session.project != *project {
            return Err(UploadError::SessionNotFound.into());
        }
        self.meta
            .get_file(&session.project, &session.file_id)
            .await?
            .filter(|f| session.blob_key.as_deref() == Some(f.blob_key.as_str()))
            .ok_or_else(|| UploadError::SessionNotFound.into())
    }

    /// Appends a part at the session's committed offset.
    pub async fn add_part(&self, token: &SecretToken, project: &ProjectId, body: ByteStream) -> Result<PartReceipt> {
        self.file_of(token, project).await?;
        let counted = Arc::new(AtomicU64::new(0));
        let counter = counted.clone();
        let body = body
            .inspect_ok(move |bytes| {
                counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            })
            .boxed();
        match self.write(token, None, false, body).await? {
            Progress::Active { received } => {
                let len = counted.load(Ordering::Relaxed);
                Ok(PartReceipt { offset: received - len, len })
            }
            Progress::Final(_) => Err(UploadError::AlreadyFinalized.into()),
        }
    }

    /// Completes the upload when `parts` are exactly the bytes received, in order, and (if given) their
    /// MD5 is `md5`; a mismatch of the MD5 removes the file, as nothing of a failed upload is kept.
    pub async fn complete_parts(
        &self,
        token: &SecretToken,
        project: &ProjectId,
        parts: &[PartReceipt],
        md5: Option<[u8; 16]>,
    ) -> Result<FileRecord> {
        self.file_of(token, project).await?;
        let received = match self.query(token).await? {
            Progress::Active { received } => received,
            Progress::Final(file) => return Ok(*file),
        };
        let mut next = 0;
        for (i, part) in parts.iter().enumerate() {
            if part.offset != next {
                return Err(Error::invalid(format!(
                    "part_ids[{i}] is not the part that follows the ones before it: name every part, in the \
                     order they were added (they are appended in the order they arrive)."
                )));
            }
            next += part.len;
        }
        if next != received {
            return Err(Error::invalid(format!(
                "The parts named hold {next} bytes, and {received} were received: name every part added, in order."
            )));
        }
        let file = match self.write(token, Some(received), true, futures_util::stream::empty().boxed()).await? {
            Progress::Final(file) => *file,
            Progress::Active { .. } => return Err(Error::internal("a completion did not finalize")),
        };
        if let Some(expected) = md5 {
            let size = file.size_bytes.unwrap_or(0);
            let mut bytes = self.blobs.read(&file.blob_key, 0..size).await?;
            let mut hasher = Md5::new();
            while let Some(chunk) = bytes.next().await {
                hasher.update(&chunk?);
            }
            if <[u8; 16]>::from(hasher.finalize()) != expected {
                let none_running = crate::services::locks::Running::default();
                let (meta, blobs) = (self.meta.as_ref(), self.blobs.as_ref());
                crate::services::lifecycle::delete(meta, blobs, &none_running, project, &file.id).await?;
                return Err(Error::invalid(
                    "The bytes received do not have the md5 given: the upload is discarded, start it again.",
                ));
            }
        }
        Ok(file)
    }
}
