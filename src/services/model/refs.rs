//! File references in a `generateContent` request: finding the ones that name filegate files and
//! rewriting them to what the upstream can read.
//!
//! A reference is a Part's `fileData` (or `file_data`: the SDKs and both upstreams accept either, and
//! google-genai sends the camelCase key with snake_case fields inside), wherever the Part is: in `contents`,
//! `systemInstruction`, a `functionResponse`. The whole body is walked, so no place is missed; other keys of
//! the Part (`videoMetadata`, `mediaResolution`, …) stay as they are.

use serde_json::{Map, Value};

use crate::domain::{API_VERSIONS, FileId, IMPORT_ID_PREFIX};

/// A Part that names a filegate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// JSON pointer to the Part (the object holding the `fileData`).
    pub part: String,
    /// The key the reference is under: `fileData` or `file_data`.
    pub key: &'static str,
    pub id: FileId,
    /// The MIME type the request gave, if any.
    pub mime_type: Option<String>,
}

/// What a reference becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `fileData {fileUri, mimeType}`: a `gs://` URI, or a Google Files API `uri`.
    FileData { uri: String, mime_type: String },
    /// `inlineData {mimeType, data}`, where `data` is a placeholder the outgoing body replaces with the
    /// file's bytes in base64 as it streams (see `body.rs`).
    Inline { mime_type: String, placeholder: String },
}

const FILE_DATA_KEYS: [&str; 2] = ["fileData", "file_data"];

/// The filegate file a `fileUri` names: `files/{id}`, `qfile-{id}`, or filegate's own `uri`
/// (`{public_url}/{v1,v1beta,v1alpha}/files/{id}`). Anything else (`gs://…`, a Google Files URI, a public
/// URL) is not filegate's and passes through.
pub fn filegate_file(uri: &str, public_url: &str) -> Option<FileId> {
    let id = if let Some(id) = uri.strip_prefix(IMPORT_ID_PREFIX) {
        id
    } else if let Some(id) = uri.strip_prefix("files/") {
        id
    } else {
        let path = uri.strip_prefix(public_url)?.strip_prefix('/')?;
        let (version, rest) = path.split_once('/')?;
        if !API_VERSIONS.contains(&version) {
            return None;
        }
        rest.strip_prefix("files/")?
    };
    let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| FileId::from_path(id))
}

fn string_field(object: &Map<String, Value>, camel: &str, snake: &str) -> Option<String> {
    object.get(camel).or_else(|| object.get(snake)).and_then(Value::as_str).map(str::to_owned)
}

/// Every Part of `body` that names a filegate file, in document order.
pub fn find(body: &Value, public_url: &str) -> Vec<FileRef> {
    let mut found = Vec::new();
    walk(body, &mut String::new(), public_url, &mut found);
    found
}

fn walk(value: &Value, pointer: &mut String, public_url: &str, found: &mut Vec<FileRef>) {
    let len = pointer.len();
    match value {
        Value::Object(object) => {
            for key in FILE_DATA_KEYS {
                let Some(Value::Object(data)) = object.get(key) else { continue };
                let Some(uri) = string_field(data, "fileUri", "file_uri") else { continue };
                if let Some(id) = filegate_file(&uri, public_url) {
                    let mime_type = string_field(data, "mimeType", "mime_type");
                    found.push(FileRef { part: pointer.clone(), key, id, mime_type });
                }
            }
            for (key, child) in object {
                if FILE_DATA_KEYS.contains(&key.as_str()) {
                    continue;
                }
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(child, pointer, public_url, found);
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointer.push('/');
                pointer.push_str(&index.to_string());
                walk(child, pointer, public_url, found);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Replaces the reference `at` in `body` by `with`.
pub fn rewrite(body: &mut Value, at: &FileRef, with: Rewrite) {
    let Some(Value::Object(part)) = body.pointer_mut(&at.part) else { return };
    part.remove(at.key);
    match with {
        Rewrite::FileData { uri, mime_type } => {
            part.insert("fileData".into(), serde_json::json!({"fileUri": uri, "mimeType": mime_type}));
        }
        Rewrite::Inline { mime_type, placeholder } => {
            part.insert("inlineData".into(), serde_json::json!({"mimeType": mime_type, "data": placeholder}));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PUBLIC: &str = "https://files.example.test";

    #[test]
    fn filegate_references_are_recognized_in_every_spelling() {
        let id = |uri| filegate_file(uri, PUBLIC).map(|id| id.to_string());
        assert_eq!(id("files/abc123").as_deref(), Some("abc123"));
        assert_eq!(id("qfile-abc123").as_deref(), Some("abc123"));
        assert_eq!(id("https://files.example.test/v1beta/files/abc123").as_deref(), Some("abc123"));
        assert_eq!(id("https://files.example.test/v1/files/my-name").as_deref(), Some("my-name"));
        for foreign in [
            "gs://bucket/files/abc",
            "https://generativelanguage.googleapis.com/v1beta/files/abc",
            "https://files.example.test/v9/files/abc",
            "https://files.example.test.evil/v1beta/files/abc",
            "files/",
            "files/../x",
            "https://example.com/video.mp4",
        ] {
            assert_eq!(id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn references_are_found_wherever_parts_are_and_rewritten_in_place() {
        let mut body = json!({
            "systemInstruction": {"parts": [{"file_data": {"file_uri": "files/sys", "mime_type": "text/plain"}}]},
            "contents": [{"role": "user", "parts": [
                {"fileData": {"file_uri": "https://files.example.test/v1beta/files/vid", "mime_type": "video/mp4"},
                 "videoMetadata": {"startOffset": "10s"}},
                {"fileData": {"fileUri": "gs://theirs/x.mp4", "mimeType": "video/mp4"}},
                {"text": "files/not-a-part"},
                {"functionResponse": {"name": "f", "parts": [{"fileData": {"fileUri": "qfile-imp"}}]}}
            ]}]
        });
        let refs = find(&body, PUBLIC);
        let ids: Vec<_> = refs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["vid", "imp", "sys"]);
        assert_eq!(refs[0].part, "/contents/0/parts/0");
        assert_eq!(refs[0].mime_type.as_deref(), Some("video/mp4"));
        assert_eq!(refs[1].mime_type, None);
        assert_eq!(refs[2].key, "file_data");

        rewrite(&mut body, &refs[0], Rewrite::FileData { uri: "gs://b/o".into(), mime_type: "video/mp4".into() });
        rewrite(&mut body, &refs[2], Rewrite::Inline { mime_type: "text/plain".into(), placeholder: "P0".into() });
        assert_eq!(
            body["contents"][0]["parts"][0],
            json!({"fileData": {"fileUri": "gs://b/o", "mimeType": "video/mp4"}, "videoMetadata": {"startOffset": "10s"}})
        );
        assert_eq!(
            body["systemInstruction"]["parts"][0],
            json!({"inlineData": {"mimeType": "text/plain", "data": "P0"}})
        );
        assert_eq!(body["contents"][0]["parts"][1]["fileData"]["fileUri"], "gs://theirs/x.mp4");
    }
}
