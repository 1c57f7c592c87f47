//! The URL import surface's JSON (`POST /v1/files {source_url, …}` → `qfile-…`): snake_case, Unix-second
//! times and OpenAI-style errors. See `docs/imports.md`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, Default, utoipa::ToSchema)]
pub struct CreateImportRequest {
    #[serde(default)]
    pub source_url: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// The import view of a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ImportFile {
    pub id: String,
    pub object: String,
    pub status: String,
    pub model: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub source_url: String,
    pub filename: Option<String>,
    pub bytes: Option<u64>,
    pub mime_type: Option<String>,
    /// Lowercase hex, once known.
    pub sha256: Option<String>,
    pub progress: Progress,
    pub gemini_file: GeminiFileRef,
    pub storage_uri: Option<String>,
    pub error: Option<ImportError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    /// Bytes received from the source so far, as they arrive.
    pub received_bytes: u64,
    /// Bytes stored durably (an attempt after a crash or a dropped connection resumes from here).
    pub stored_bytes: u64,
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GeminiFileRef {
    pub name: String,
    pub uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ImportError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedImport {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}

/// `{"error": {"message", "type", "code"}}`, the shape OpenAI-style clients parse.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ImportErrorEnvelope)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ImportErrorBody)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
}
