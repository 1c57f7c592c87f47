//! Gemini Files API JSON (proto3 JSON of `google.ai.generativelanguage.v1beta.File`): camelCase,
//! int64 as strings, RFC 3339 `Z` timestamps. See `docs/api-quirks.md`.

use serde::{Deserialize, Serialize};

/// The File resource as the SDKs read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub mime_type: String,
    pub size_bytes: String,
    pub create_time: String,
    pub update_time: String,
    pub expiration_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_hash: Option<String>,
    pub uri: String,
    /// Set once the file is ACTIVE: filegate lets a project download its own files (Google only
    /// allows it for generated files), and the Python SDK's `download(file=File)` needs this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_uri: Option<String>,
    pub state: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FileStatus>,
    /// Extension: where an object-store backend keeps the bytes (`s3://…`, `gs://…`, `az://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
}

/// `google.rpc.Status` as embedded in a FAILED file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FileStatus {
    pub code: i32,
    pub message: String,
}

/// The reply to finalize, to multipart and raw uploads, and to `query` on a finalized session.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEnvelope {
    pub file: File,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListFilesResponse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The body of an upload start (or the metadata part of a multipart upload). Python sends snake_case
/// with `size_bytes` as a number, JS camelCase with `sizeBytes` as a string; both are accepted, and
/// fields this server does not use are ignored.
#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
pub struct CreateFileRequest {
    #[serde(default)]
    pub file: Option<FileMetadata>,
}

#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "display_name")]
    pub display_name: Option<String>,
    #[serde(default, alias = "mime_type")]
    pub mime_type: Option<String>,
    /// An int64: a number or a decimal string.
    #[serde(default, alias = "size_bytes")]
    #[schema(value_type = Option<String>)]
    pub size_bytes: Option<Int64>,
}

/// An int64 as proto3 JSON allows it: a number or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(i64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(Self(n)),
            Repr::Text(s) => {
                s.trim().parse().map(Self).map_err(|_| serde::de::Error::custom(format!("\"{s}\" is not an int64")))
            }
        }
    }
}

/// The body of every Gemini error reply.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: RpcStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RpcStatus {
    pub code: u16,
    pub message: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_bodies_parse_in_both_spellings() {
        let py: CreateFileRequest = serde_json::from_str(
            r#"{"file": {"name": "files/big-one", "display_name": "Big", "mime_type": "video/mp4", "size_bytes": 20000000}}"#,
        )
        .unwrap();
        let js: CreateFileRequest = serde_json::from_str(
            r#"{"file": {"mimeType": "video/mp4", "name": "files/big-one", "displayName": "Big", "sizeBytes": "20000000"}}"#,
        )
        .unwrap();
        for req in [py, js] {
            let file = req.file.unwrap();
            assert_eq!(file.name.as_deref(), Some("files/big-one"));
            assert_eq!(file.display_name.as_deref(), Some("Big"));
            assert_eq!(file.mime_type.as_deref(), Some("video/mp4"));
            assert_eq!(file.size_bytes, Some(Int64(20_000_000)));
        }
    }

    #[test]
    fn a_size_that_is_not_a_number_is_refused() {
        assert!(serde_json::from_str::<CreateFileRequest>(r#"{"file": {"sizeBytes": "12x"}}"#).is_err());
    }
}
