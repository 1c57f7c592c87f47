use super::{FailureCode, FileId, ProjectId, Timestamp};

/// The one internal lifecycle of a file, whichever surface created it.
///
/// `Uploading` files have an open upload session and are invisible on every surface; `Pending` is a queued
/// import. The Gemini surface shows `Pending` and `Processing` as `PROCESSING`, `Ready` as `ACTIVE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Uploading,
    Pending,
    Processing,
    Ready,
    Failed,
}

impl FileState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uploading" => Self::Uploading,
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the file is shown by get and list (an open upload is not, as on Google's service).
    pub const fn is_visible(self) -> bool {
        !matches!(self, Self::Uploading)
    }
}

/// How the bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Upload,
    Import,
    /// Made by filegate itself: the results of a batch job (`services::batches`).
    Generated,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Import => "import",
            Self::Generated => "generated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upload" => Some(Self::Upload),
            "import" => Some(Self::Import),
            "generated" => Some(Self::Generated),
            _ => None,
        }
    }
}

/// Why a file failed: a machine code (the import surface's `error.code`) and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub code: FailureCode,
    pub message: String,
}

/// What an imported file remembers of its source and of the fetch's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportInfo {
    pub source_url: String,
    pub model: String,
    /// Bytes received from the source so far (over every connection), at least [`Self::stored_bytes`].
    pub received_bytes: u64,
    /// Bytes stored durably: where a later attempt resumes.
    pub stored_bytes: u64,
    pub total_bytes: Option<u64>,
}

/// A file as the metadata store keeps it; both API surfaces render views of this one record.
#[derive(Debug, Clone)]
pub struct FileRecord {
    pub project: ProjectId,
    pub id: FileId,
    pub display_name: Option<String>,
    pub mime_type: String,
    /// Exact once the file is `Ready`; the declared size while an upload is open; unknown for an import
    /// whose source has not said yet.
    pub size_bytes: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    pub state: FileState,
    pub origin: Origin,
    /// Where the finished bytes live in the blob store.
    pub blob_key: super::StorageKey,
    /// What this file counts against its project's quota right now (a reservation while bytes arrive).
    pub charged_bytes: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    pub error: Option<FileError>,
    pub import: Option<ImportInfo>,
}

impl FileRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}
