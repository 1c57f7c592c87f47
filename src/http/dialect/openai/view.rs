//! The import API's view of a file record (an import task), shown by the import surface and in webhook
//! events.

use crate::domain::{FileRecord, FileState};
use crate::http::dialect::google::view::file_uri;
use crate::http::state::Handles;
use crate::wire::import::{DeletedImport, GeminiFileRef, ImportError, ImportFile, Progress};

pub fn status(state: FileState) -> &'static str {
    match state {
        FileState::Uploading | FileState::Pending => "pending",
        FileState::Processing => "processing",
        FileState::Ready => "ready",
        FileState::Failed => "failed",
    }
}

pub fn import_file(state: &Handles, file: &FileRecord) -> ImportFile {
    let import = file.import.clone().unwrap_or_else(|| crate::domain::ImportInfo {
        source_url: String::new(),
        model: String::new(),
        received_bytes: 0,
        stored_bytes: 0,
        total_bytes: None,
    });
    let ready = file.state == FileState::Ready;
    ImportFile {
        id: file.id.import_id(),
        object: "file".into(),
        status: status(file.state).into(),
        model: import.model,
        created_at: file.created_at.unix_seconds(),
        expires_at: file.expires_at.unix_seconds(),
        source_url: import.source_url,
        filename: file.display_name.clone(),
        bytes: file.size_bytes,
        // Until the first bytes are in, the type is only a guess from the URL.
        mime_type: (ready || import.received_bytes > 0).then(|| file.mime_type.clone()),
        sha256: file.sha256.map(hex::encode),
        progress: Progress {
            received_bytes: import.received_bytes,
            stored_bytes: import.stored_bytes,
            total_bytes: import.total_bytes,
        },
        gemini_file: GeminiFileRef { name: format!("files/{}", file.id), uri: file_uri(state, file) },
        storage_uri: state.files.storage_uri(file),
        error: file.error.as_ref().map(|e| ImportError { code: e.code.as_str().into(), message: e.message.clone() }),
    }
}

pub fn deleted_import(file: &FileRecord) -> DeletedImport {
    DeletedImport { id: file.id.import_id(), object: "file".into(), deleted: true }
}
