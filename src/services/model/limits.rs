//! What the upstreams accept, checked before a call so that the caller gets a clear 400 naming the file and
//! the limit instead of a confusing upstream error after a long copy.
//!
//! Sources (see `docs/models.md`): Vertex AI's inference reference and Gemini 3 technical
//! specifications: images read from Cloud Storage up to 30 MiB (Vertex's own error says 31457280 bytes),
//! PDFs up to 50 MiB, plain text up to 7 MiB; a request, inline data included, up to 20 MiB on both APIs.

use crate::domain::FileRecord;
use crate::error::{Error, Result};

/// The largest request body either upstream takes (Vertex AI and the Gemini API: 20 MB, inline data
/// included, after base64).
pub const REQUEST_MAX_BYTES: u64 = 20 * 1024 * 1024;

/// The refusal of a client's request body larger than [`REQUEST_MAX_BYTES`], before it is read whole.
pub fn body_too_large() -> Error {
    Error::invalid(format!("Request payload size exceeds the limit: {REQUEST_MAX_BYTES} bytes."))
}

const MIB: u64 = 1024 * 1024;

/// The largest file of this MIME type Vertex AI reads by `gs://` reference, if it has its own limit.
fn vertex_reference_limit(mime_type: &str) -> Option<u64> {
    let essence = mime_type.split(';').next().unwrap_or_default().trim();
    match essence {
        "application/pdf" => Some(50 * MIB),
        "text/plain" => Some(7 * MIB),
        _ if essence.starts_with("image/") => Some(30 * MIB),
        _ => None,
    }
}

/// Refuses a file Vertex AI would refuse by reference.
pub fn check_vertex_reference(file: &FileRecord) -> Result<()> {
    let size = file.size_bytes.unwrap_or(0);
    match vertex_reference_limit(&file.mime_type) {
        Some(limit) if size > limit => Err(Error::invalid(format!(
            "The file {} is {size} bytes, over Vertex AI's limit of {limit} bytes for {} files.",
            file.id, file.mime_type
        ))),
        _ => Ok(()),
    }
}

/// Whether Gemini reads files of this type: images, video, audio, text and PDF documents, and the text
/// formats Google lists under other names (JSON, JavaScript, Python, XML). Anything else — an archive, a
/// spreadsheet, `application/octet-stream` — reaches the model as nothing it can use.
pub fn model_reads(mime_type: &str) -> bool {
    let essence = mime_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (kind, _) = essence.split_once('/').unwrap_or_default();
    matches!(kind, "image" | "video" | "audio" | "text")
        || matches!(
            essence.as_str(),
            "application/pdf"
                | "application/json"
                | "application/x-javascript"
                | "application/javascript"
                | "application/x-python"
                | "application/xml"
                | "application/rtf"
        )
}

/// Refuses, on the OpenAI surfaces, a file the model could not read: those clients would otherwise get an
/// answer written as if no file had been sent.
pub fn check_model_reads(file: &FileRecord, mime_type: &str) -> Result<()> {
    if model_reads(mime_type) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "The file {} is {mime_type}, a type Gemini cannot read (it reads images, video, audio, text and PDF): \
         the request was not sent rather than answered without the file.",
        file.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_gemini_reads_are_known() {
        for readable in
            ["video/mp4", "image/png", "audio/mpeg", "text/csv; charset=utf-8", "application/pdf", "application/json"]
        {
            assert!(model_reads(readable), "{readable}");
        }
        for unreadable in ["application/zip", "application/octet-stream", "application/vnd.ms-excel", "font/woff2"] {
            assert!(!model_reads(unreadable), "{unreadable}");
        }
    }

    #[test]
    fn per_type_limits_follow_vertex() {
        assert_eq!(vertex_reference_limit("image/png"), Some(30 * MIB));
        assert_eq!(vertex_reference_limit("application/pdf"), Some(50 * MIB));
        assert_eq!(vertex_reference_limit("text/plain; charset=utf-8"), Some(7 * MIB));
        assert_eq!(vertex_reference_limit("video/mp4"), None);
    }
}
