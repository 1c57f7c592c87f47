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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_type_limits_follow_vertex() {
        assert_eq!(vertex_reference_limit("image/png"), Some(30 * MIB));
        assert_eq!(vertex_reference_limit("application/pdf"), Some(50 * MIB));
        assert_eq!(vertex_reference_limit("text/plain; charset=utf-8"), Some(7 * MIB));
        assert_eq!(vertex_reference_limit("video/mp4"), None);
    }
}
