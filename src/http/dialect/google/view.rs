//! The Gemini view of a file record.

use base64::Engine as _;

use crate::domain::{FailureCode, FileRecord, FileState, Origin};
use crate::http::state::Handles;
use crate::wire::gemini::{File, FileStatus};

/// google.rpc code numbers for the `error` of a FAILED file, from the failure's machine code.
fn rpc_code(code: FailureCode) -> i32 {
    use FailureCode as F;
    match code {
        F::Timeout => 4,                     // DEADLINE_EXCEEDED
        F::QuotaExceeded | F::TooLarge => 8, // RESOURCE_EXHAUSTED
        F::Internal | F::Unknown => 13,      // INTERNAL
        F::SourceUnreachable => 14,          // UNAVAILABLE
        F::SourceHttpStatus
        | F::TooManyRedirects
        | F::ForbiddenAddress
        | F::UnsupportedMimeType
        | F::ChecksumMismatch => 9, // FAILED_PRECONDITION
    }
}

pub fn gemini_state(state: FileState) -> &'static str {
    match state {
        FileState::Uploading | FileState::Pending | FileState::Processing => "PROCESSING",
        FileState::Ready => "ACTIVE",
        FileState::Failed => "FAILED",
    }
}

/// `{public}/v1beta/files/{id}`: an `https://` public URL makes the SDKs accept it as a file reference.
pub fn file_uri(state: &Handles, file: &FileRecord) -> String {
    format!("{}/v1beta/files/{}", state.public_url, file.id)
}

pub fn gemini_file(state: &Handles, file: &FileRecord) -> File {
    let ready = file.state == FileState::Ready;
    File {
        name: format!("files/{}", file.id),
        display_name: file.display_name.clone(),
        mime_type: file.mime_type.clone(),
        size_bytes: file.size_bytes.unwrap_or(0).to_string(),
        create_time: file.created_at.to_rfc3339(),
        update_time: file.updated_at.to_rfc3339(),
        expiration_time: file.expires_at.to_rfc3339(),
        sha256_hash: file.sha256.map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
        uri: file_uri(state, file),
        download_uri: ready.then(|| format!("{}/v1beta/files/{}:download?alt=media", state.public_url, file.id)),
        state: gemini_state(file.state).into(),
        source: match (file.origin, file.blob_key.registered_uri()) {
            (Origin::Generated, _) => "GENERATED",
            (_, Some(_)) => "REGISTERED",
            _ => "UPLOADED",
        }
        .into(),
        error: file
            .error
            .as_ref()
            .map(|e| FileStatus { code: rpc_code(e.code), message: format!("{}: {}", e.code, e.message) }),
        storage_uri: state.files.storage_uri(file),
    }
}
