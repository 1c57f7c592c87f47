//! File references in a `generateContent` request: finding the ones that name filegate files and
//! rewriting them to what the upstream can read.
//!
//! A reference is a Part's `fileData` (or `file_data`: the SDKs and both upstreams accept either, and
//! google-genai sends the camelCase key with snake_case fields inside), wherever the Part is: in `contents`,
//! `systemInstruction`, a `functionResponse`. The whole body is walked, so no place is missed; other keys of
//! the Part (`videoMetadata`, `mediaResolution`, …) stay as they are.

use serde_json::{Map, Value};

use crate::blob::{BucketUrl, GcsObject};
use crate::domain::{API_VERSIONS, BlobKey, FileId, IMPORT_ID_PREFIX, OPENAI_ID_PREFIX, ProjectId, glob_matches};
use crate::error::{Error, Result};

/// What a caller's file URIs are checked against.
#[derive(Debug, Clone, Default)]
pub struct ReferenceRules {
    /// filegate's own base URL: `{public_url}/{version}/files/{id}` is a filegate file.
    pub public_url: String,
    /// The Cloud Storage locations holding filegate's own bytes (its blob store, the Vertex staging
    /// bucket), whose objects are `files/{project}/{id}.{generation}` under the location's prefix.
    pub own: Vec<BucketUrl>,
    /// `gs://` patterns of other objects a model may read (`FILEGATE_REGISTER_BUCKETS`): filegate's
    /// credentials, not the caller's, read them.
    pub allowed_gcs: Vec<String>,
    /// The base URL of the Gemini API filegate calls, whose Files API holds filegate's own copies.
    pub gemini_files_base: Option<String>,
    /// File references one request may carry.
    pub max_references: usize,
}

/// A Part that names a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// JSON pointer to the Part (the object holding the `fileData`).
    pub part: String,
    /// The key the reference is under: `fileData` or `file_data`.
    pub key: &'static str,
    pub target: Target,
    /// The MIME type the request gave, if any.
    pub mime_type: Option<String>,
}

/// What a reference names, as far as the request alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A filegate file of the caller's project, by id (`files/{id}`, `qfile-{id}`, filegate's `uri`).
    File(FileId),
    /// An object in filegate's own storage (its `storageUri`, or a copy's): usable only as the caller's
    /// own file with exactly that object.
    Stored { project: ProjectId, id: FileId, key: String, uri: String },
    /// An object outside filegate that the operator lets models read, in its canonical spelling.
    Gcs(String),
    /// A URI filegate will not let a model read with its credentials (another bucket, a Files API file):
    /// answered like a missing file, before anything is sent.
    Refused(String),
    /// A Cloud Storage URI that names no object (`..`, an invalid bucket): the sentence says why.
    Invalid(String),
}

/// What a reference becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `fileData {fileUri, mimeType}`: a `gs://` URI, or a Google Files API `uri`.
    FileData { uri: String, mime_type: Option<String> },
    /// `inlineData {mimeType, data}`, where `data` is a placeholder the outgoing body replaces with the
    /// file's bytes in base64 as it streams (see `body.rs`).
    Inline { mime_type: String, placeholder: String },
}

const FILE_DATA_KEYS: [&str; 2] = ["fileData", "file_data"];

/// What a `fileUri` says of filegate: `None` when it is not filegate's spelling at all (a public URL, a
/// `gs://` object); `Some(Some(id))` for a filegate file in any spelling — `files/{id}`, `qfile-{id}`,
/// `file-{id}` (the OpenAI surfaces' id), filegate's own `uri` (`{public_url}/{v1,v1beta,v1alpha}/files/{id}`)
/// or its `downloadUri` (`…/files/{id}:download?alt=media`); `Some(None)` for a spelling of filegate's that
/// names no file (`files//x`, `files/../x`, an upload URL, a console link): refused, never passed on.
pub fn filegate_file(uri: &str, public_url: &str) -> Option<Option<FileId>> {
    let id = if let Some(id) = uri.strip_prefix(IMPORT_ID_PREFIX) {
        id
    } else if let Some(id) = uri.strip_prefix("files/") {
        id
    } else if let Some(id) = uri.strip_prefix(OPENAI_ID_PREFIX) {
        id
    } else {
        let path = uri.strip_prefix(public_url)?;
        if !(path.is_empty() || path.starts_with(['/', '?', '#'])) {
            return None; // another host that begins with filegate's (`https://files.example.test.evil/…`)
        }
        let named = path.strip_prefix('/').and_then(|path| {
            let (version, rest) = path.split_once('/')?;
            let id = rest.strip_prefix("files/").filter(|_| API_VERSIONS.contains(&version))?;
            // The download URI: `{id}:download?alt=media`.
            Some(id.strip_suffix(":download?alt=media").unwrap_or(id))
        });
        return Some(named.and_then(valid_id));
    };
    Some(valid_id(id))
}

fn valid_id(id: &str) -> Option<FileId> {
    let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| FileId::from_path(id))
}

/// The file an object key of filegate's own layout names: `files/{project}/{id}.{generation}`.
fn stored_file(key: &str) -> Option<(ProjectId, FileId)> {
    match BlobKey::parse(key)? {
        BlobKey::File { project, id, .. } => Some((ProjectId::parse(project).ok()?, FileId::from_path(id))),
        _ => None,
    }
}

impl ReferenceRules {
    /// What `uri` names; `None` for what is not filegate's business (a public URL the model fetches).
    pub fn classify(&self, uri: &str) -> Option<Target> {
        match filegate_file(uri, &self.public_url) {
            Some(Some(id)) => return Some(Target::File(id)),
            Some(None) => return Some(Target::Refused(uri.to_owned())),
            None => {}
        }
        match GcsObject::parse(uri) {
            Err(message) => return Some(Target::Invalid(message)),
            Ok(Some(object)) => return Some(self.classify_gcs(uri, &object)),
            Ok(None) => {}
        }
        // Files of the Gemini API's Files API belong to filegate's API key: only filegate's own copies
        // are there, and callers never name them.
        let google_files = |base: &str| uri.strip_prefix(base).is_some_and(|rest| rest.contains("/files/"));
        let google = self.gemini_files_base.as_deref().is_some_and(google_files)
            || google_files("https://generativelanguage.googleapis.com");
        google.then(|| Target::Refused(uri.to_owned()))
    }

    fn classify_gcs(&self, uri: &str, object: &GcsObject) -> Target {
        for location in &self.own {
            if let Some(key) = object.key_under(location) {
                return match stored_file(key) {
                    Some((project, id)) => Target::Stored { project, id, key: key.to_owned(), uri: uri.to_owned() },
                    None => Target::Refused(uri.to_owned()),
                };
            }
        }
        let canonical = object.uri();
        let own = self.own.iter().any(|location| object.could_be_under(location));
        if own || !self.allowed_gcs.iter().any(|pattern| glob_matches(pattern, &canonical)) {
            return Target::Refused(uri.to_owned());
        }
        Target::Gcs(canonical)
    }

    /// Every Part of `body` that names a file, in document order; more than `max_references` is an error
    /// found before any of them is looked up.
    pub fn find(&self, body: &Value) -> Result<Vec<FileRef>> {
        let mut found = Vec::new();
        if !self.walk(body, &mut String::new(), &mut found) {
            return Err(Error::invalid(format!(
                "The request names more than {} files in fileData parts, the most filegate forwards in one request.",
                self.max_references
            )));
        }
        Ok(found)
    }

    /// `false` once more references than allowed were found (the walk stops there).
    fn walk(&self, value: &Value, pointer: &mut String, found: &mut Vec<FileRef>) -> bool {
        let len = pointer.len();
        match value {
            Value::Object(object) => {
                for key in FILE_DATA_KEYS {
                    let Some(Value::Object(data)) = object.get(key) else { continue };
                    let Some(uri) = string_field(data, "fileUri", "file_uri") else { continue };
                    if let Some(target) = self.classify(&uri) {
                        if found.len() == self.max_references {
                            return false;
                        }
                        let mime_type = string_field(data, "mimeType", "mime_type");
                        found.push(FileRef { part: pointer.clone(), key, target, mime_type });
                    }
                }
                for (key, child) in object {
                    if FILE_DATA_KEYS.contains(&key.as_str()) {
                        continue;
                    }
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    let within = self.walk(child, pointer, found);
                    pointer.truncate(len);
                    if !within {
                        return false;
                    }
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    let within = self.walk(child, pointer, found);
                    pointer.truncate(len);
                    if !within {
                        return false;
                    }
                }
            }
            _ => {}
        }
        true
    }
}

fn string_field(object: &Map<String, Value>, camel: &str, snake: &str) -> Option<String> {
    object.get(camel).or_else(|| object.get(snake)).and_then(Value::as_str).map(str::to_owned)
}

/// Replaces the reference `at` in `body` by `with`.
pub fn rewrite(body: &mut Value, at: &FileRef, with: Rewrite) {
    let Some(Value::Object(part)) = body.pointer_mut(&at.part) else { return };
    part.remove(at.key);
    match with {
        Rewrite::FileData { uri, mime_type } => {
            let mut data = Map::new();
            data.insert("fileUri".into(), Value::String(uri));
            if let Some(mime_type) = mime_type {
                data.insert("mimeType".into(), Value::String(mime_type));
            }
            part.insert("fileData".into(), Value::Object(data));
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

    fn rules() -> ReferenceRules {
        ReferenceRules {
            public_url: PUBLIC.into(),
            own: vec![BucketUrl::parse("gs://fg-data/prod").unwrap(), BucketUrl::parse("gs://fg-staging").unwrap()],
            allowed_gcs: vec!["gs://media/talks/*".into(), "gs://fg-data/shared/*".into()],
            gemini_files_base: Some("http://127.0.0.1:9".into()),
            max_references: 4,
        }
    }

    #[test]
    fn filegate_references_are_recognized_in_every_spelling() {
        let id = |uri| filegate_file(uri, PUBLIC).map(|id| id.map(|id| id.to_string()));
        for (uri, named) in [
            ("files/abc123", "abc123"),
            ("qfile-abc123", "abc123"),
            ("file-abc123", "abc123"),
            ("https://files.example.test/v1beta/files/abc123", "abc123"),
            ("https://files.example.test/v1/files/my-name", "my-name"),
            ("https://files.example.test/v1beta/files/abc123:download?alt=media", "abc123"),
        ] {
            assert_eq!(id(uri), Some(Some(named.to_owned())), "{uri}");
        }
        // filegate's spellings that name no file: refused rather than passed to the upstream as they are.
        for refused in [
            "files/",
            "files//abc123",
            "files/../x",
            "file-",
            "qfile-a/b",
            "https://files.example.test/v9/files/abc",
            "https://files.example.test/upload/v1beta/files?upload_id=x",
            "https://files.example.test/console/download/token",
            "https://files.example.test",
        ] {
            assert_eq!(id(refused), Some(None), "{refused}");
        }
        for foreign in [
            "gs://bucket/files/abc",
            "https://generativelanguage.googleapis.com/v1beta/files/abc",
            "https://files.example.test.evil/v1beta/files/abc",
            "https://example.com/video.mp4",
            "file:///etc/passwd",
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
        let refs = rules().find(&body).unwrap();
        let ids: Vec<_> = refs
            .iter()
            .map(|r| match &r.target {
                Target::File(id) => id.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["vid", r#"Refused("gs://theirs/x.mp4")"#, "imp", "sys"]);
        assert_eq!(refs[0].part, "/contents/0/parts/0");
        assert_eq!(refs[0].mime_type.as_deref(), Some("video/mp4"));
        assert_eq!(refs[2].mime_type, None);
        assert_eq!(refs[3].key, "file_data");

        let to_gcs = Rewrite::FileData { uri: "gs://b/o".into(), mime_type: Some("video/mp4".into()) };
        rewrite(&mut body, &refs[0], to_gcs);
        rewrite(&mut body, &refs[3], Rewrite::Inline { mime_type: "text/plain".into(), placeholder: "P0".into() });
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

    #[test]
    fn more_references_than_the_cap_are_refused_before_any_is_resolved() {
        let part = json!({"fileData": {"fileUri": "files/a"}});
        let body =
            json!({"contents": [{"parts": [part.clone(), part.clone(), part.clone(), part.clone(), {"text": "x"}]}]});
        assert_eq!(rules().find(&body).unwrap().len(), 4);
        let over = json!({"contents": [{"parts": [part.clone(), part.clone(), part.clone(), part.clone(), part]}]});
        let err = rules().find(&over).unwrap_err();
        assert!(err.to_string().contains("more than 4 files"), "{err}");
    }

    #[test]
    fn cloud_storage_uris_are_filegate_files_allowed_objects_or_refused_in_every_spelling() {
        let rules = rules();
        let stored = |uri: &str| match rules.classify(uri) {
            Some(Target::Stored { project, id, key, .. }) => format!("{project}/{id} {key}"),
            other => format!("{other:?}"),
        };
        for spelling in [
            "gs://fg-data/prod/files/alpha/abc.x1y2",
            "gs://fg-data//prod/files/alpha/abc.x1y2",
            "GS://fg-data/prod//files/alpha/abc.x1y2",
            "https://storage.googleapis.com/fg-data/prod/files/alpha/abc.x1y2",
            "https://fg-data.storage.googleapis.com/prod%2Ffiles%2Falpha%2Fabc.x1y2",
            "https://www.googleapis.com/storage/v1/b/fg-data/o/prod%2Ffiles%2Falpha%2Fabc.x1y2?alt=media",
        ] {
            assert_eq!(stored(spelling), "alpha/abc files/alpha/abc.x1y2", "{spelling}");
        }
        assert_eq!(stored("gs://fg-staging/files/beta/xyz.g1"), "beta/xyz files/beta/xyz.g1", "a staging copy");
        for refused in [
            "gs://fg-data/prod/staging/tok/tail-3",
            "gs://fg-data/prod/files/alpha",
            "gs://fg-data/prod%2Ffiles/alpha/abc.x1y2",
            "gs://fg-data/%70rod/files/alpha/abc.x1y2",
            "gs://fg-staging/anything",
            "gs://media/private/a.mp4",
            "gs://theirs/a.mp4",
            "http://127.0.0.1:9/v1beta/files/abc123",
            "https://generativelanguage.googleapis.com/v1beta/files/abc123",
        ] {
            assert_eq!(rules.classify(refused), Some(Target::Refused(refused.into())), "{refused}");
        }
        assert_eq!(rules.classify("gs://media//talks/a.mp4"), Some(Target::Gcs("gs://media/talks/a.mp4".into())));
        assert_eq!(rules.classify("gs://fg-data/shared/x.pdf"), Some(Target::Gcs("gs://fg-data/shared/x.pdf".into())));
        assert!(matches!(rules.classify("gs://media/talks/../private/a.mp4"), Some(Target::Invalid(_))));
        assert_eq!(rules.classify("https://www.youtube.com/watch?v=x"), None, "public URLs are the model's to fetch");
    }
}
