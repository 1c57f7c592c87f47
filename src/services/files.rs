//! Reading and removing files: get, list (keyset pages), delete and download.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;

use crate::blob::{Blobs, ByteStream};
use crate::domain::{FileId, FileRecord, FileState, ProjectId, SecretToken, Timestamp};
use crate::error::{Error, Result};
use crate::meta::{ListCursor, MetaStore};
use crate::services::imports::ImportQueue;

pub const DEFAULT_PAGE_SIZE: u32 = 10;
pub const MAX_PAGE_SIZE: u32 = 100;

pub struct Files {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    imports: Arc<ImportQueue>,
}

/// A requested byte range, as HTTP `Range: bytes=…` states it, before the file size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=start-` or `bytes=start-end` (end inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range this selects in a file of `size` bytes; `None` when it selects nothing.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            Self::From { start, end } if start < size => {
                Some(start..end.map_or(size, |e| e.saturating_add(1).min(size)))
            }
            Self::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

/// An open download: the file, the range being sent and its bytes.
pub struct Download {
    pub file: FileRecord,
    pub range: Range<u64>,
    pub partial: bool,
    pub body: ByteStream,
}

fn encode_cursor(cursor: &ListCursor) -> String {
    let raw = format!("{}.{}", cursor.created_at.as_micros(), cursor.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(token: &str) -> Result<ListCursor> {
    let invalid = || Error::invalid(format!("Invalid page token \"{token}\": pass a nextPageToken unchanged."));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
    Ok(ListCursor {
        created_at: Timestamp::from_micros(micros.parse().map_err(|_| invalid())?),
        id: FileId::from_path(id),
    })
}

/// A visible, unexpired file of `project`, or `FileNotFound` (see [`Files::get`]).
pub async fn visible_file(meta: &dyn MetaStore, project: &ProjectId, id: &FileId) -> Result<FileRecord> {
    match meta.get_file(project, id).await? {
        Some(file) if file.state.is_visible() && !file.is_expired(Timestamp::now()) => Ok(file),
        _ => Err(Error::FileNotFound(id.to_string())),
    }
}

impl Files {
    /// The `gs://`, `s3://` or `az://` URI of a ready file's bytes (none on the local disk, none before the
    /// bytes are whole).
    pub fn storage_uri(&self, file: &FileRecord) -> Option<String> {
        (file.state == FileState::Ready).then(|| self.blobs.storage_uri(&file.blob_key)).flatten()
    }

    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>, imports: Arc<ImportQueue>) -> Self {
        Self { meta, blobs, imports }
    }

    /// A visible, unexpired file of `project`; anything else is `FileNotFound`, so a caller cannot learn
    /// whether another project has a file of that name.
    pub async fn get(&self, project: &ProjectId, id: &FileId) -> Result<FileRecord> {
        visible_file(self.meta.as_ref(), project, id).await
    }

    /// One page, newest first. `page_size` defaults to 10 and is clamped to 100; the token is the last
    /// file's `(createTime, id)`, so pages stay stable while files are added or removed.
    pub async fn list(
        &self,
        project: &ProjectId,
        page_size: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<(Vec<FileRecord>, Option<String>)> {
        let page_size = match page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => return Err(Error::invalid(format!("pageSize must not be negative (got {n})."))),
            Some(n) => u32::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let cursor = page_token.filter(|t| !t.is_empty()).map(decode_cursor).transpose()?;
        let mut files = self.meta.list_files(project, Timestamp::now(), cursor.as_ref(), page_size + 1).await?;
        let next = if files.len() > page_size as usize {
            files.truncate(page_size as usize);
            files.last().map(|f| encode_cursor(&ListCursor { created_at: f.created_at, id: f.id.clone() }))
        } else {
            None
        };
        Ok((files, next))
    }

    /// One page newest first after the file `after` (the OpenAI surface's cursor), and whether more follow.
    pub async fn list_after(
        &self,
        project: &ProjectId,
        after: Option<&FileId>,
        limit: u32,
    ) -> Result<(Vec<FileRecord>, bool)> {
        let token = match after {
            Some(id) => {
                let file = self.get(project, id).await?;
                Some(encode_cursor(&ListCursor { created_at: file.created_at, id: file.id }))
            }
            None => None,
        };
        let (files, next) = self.list(project, Some(i64::from(limit.max(1))), token.as_deref()).await?;
        Ok((files, next.is_some()))
    }

    /// Deletes a file: its row goes at once (freeing its name and quota), its bytes right after; if that
    /// fails the janitor retries from the garbage queue. A running import of it stops.
    pub async fn delete(&self, project: &ProjectId, id: &FileId) -> Result<FileRecord> {
        super::lifecycle::delete(self.meta.as_ref(), self.blobs.as_ref(), &self.imports.running, project, id).await
    }

    /// A link that downloads an ACTIVE file for [`DOWNLOAD_LINK_TTL`] without the API key (the console's:
    /// a browser's own download streams to disk, but cannot send a header). The token is a
    /// [`SecretToken`], as an upload URL's: the database keeps only its SHA-256.
    pub async fn download_link(&self, project: &ProjectId, id: &FileId) -> Result<String> {
        let file = self.get(project, id).await?;
        if file.state != FileState::Ready {
            return Err(Error::FailedPrecondition(format!("The file {id} is not ACTIVE and cannot be downloaded.")));
        }
        let token = SecretToken::generate();
        let expires_at = Timestamp::now().plus_seconds(DOWNLOAD_LINK_TTL.as_secs());
        self.meta.put_download_link(&token.hash(), project, id, expires_at).await?;
        Ok(token.as_str().to_owned())
    }

    /// The project and file a live download link names; anything else is `FileNotFound`.
    pub async fn resolve_download_link(&self, token: &str) -> Result<(ProjectId, FileId)> {
        let found = self.meta.download_link(&SecretToken::from_request(token).hash(), Timestamp::now()).await?;
        found.ok_or_else(|| Error::FileNotFound("(an expired or unknown download link)".into()))
    }

    /// The project's counters, as its own users may see them.
    pub async fn usage(&self, project: &ProjectId) -> Result<crate::meta::ProjectUsage> {
        Ok(self.meta.project_usage(project).await?.unwrap_or_default())
    }

    /// Opens an ACTIVE file for download, whole or one range of it.
    pub async fn download(&self, project: &ProjectId, id: &FileId, range: Option<ByteRange>) -> Result<Download> {
        let file = self.get(project, id).await?;
        if file.state != FileState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "The file {id} is not in an ACTIVE state and cannot be downloaded yet."
            )));
        }
        let size = file.size_bytes.unwrap_or(0);
        let (range, partial) = match range {
            None => (0..size, false),
            Some(requested) => (requested.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?, true),
        };
        let body = self.blobs.read(&file.blob_key, range.clone()).await?;
        Ok(Download { file, range, partial, body })
    }
}

/// How long a download link works: long enough for a browser to start the download it was made for.
pub const DOWNLOAD_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_size() {
        let r = |start, end| ByteRange::From { start, end };
        assert_eq!(r(0, Some(9)).resolve(100), Some(0..10));
        assert_eq!(r(90, None).resolve(100), Some(90..100));
        assert_eq!(r(90, Some(500)).resolve(100), Some(90..100));
        assert_eq!(r(100, None).resolve(100), None);
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Suffix(500).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let cursor =
            ListCursor { created_at: Timestamp::from_micros(1_770_000_000_123_456), id: FileId::from_path("abc") };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        assert!(matches!(decode_cursor("not-a-token"), Err(Error::InvalidArgument(_))));
    }
}
