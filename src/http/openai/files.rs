//! `client.files.*` of the openai SDKs: create (a `multipart/form-data` upload, streamed), list, retrieve,
//! content and delete, in OpenAI's object shapes and error envelope, on the same files as every surface.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use serde_json::json;

use crate::blob::ByteStream;
use crate::domain::{FileId, FileRecord, FileState, Origin};
use crate::error::Error;
use crate::http::body::into_stream;
use crate::http::dialect::openai::OpenAiError;
use crate::http::form::{Form, FormField, field_then, read_field};
use crate::http::state::Handles;
use crate::services::uploads::{DeclaredSize, StartUpload};

type Result<T> = std::result::Result<T, OpenAiError>;

/// The one purpose filegate keeps files for: input a model reads.
pub(super) const PURPOSE: &str = "user_data";
/// `expires_after.seconds` bounds, as OpenAI documents them: one hour to thirty days.
const MIN_EXPIRES_AFTER: u64 = 3600;
const MAX_EXPIRES_AFTER: u64 = 30 * 24 * 3600;
/// A form field other than the file is a short value.
const MAX_FIELD_BYTES: usize = 1024;
const DEFAULT_LIMIT: u32 = 100;

/// A file as OpenAI's Files API shows one.
#[derive(Serialize)]
pub struct OpenAiFile {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub filename: String,
    pub purpose: &'static str,
    /// `uploaded` while bytes arrive (an import), `processed` once ready, `error` if it failed.
    pub status: &'static str,
    pub status_details: Option<String>,
}

pub fn openai_file(file: &FileRecord) -> OpenAiFile {
    OpenAiFile {
        id: file.id.openai_id(),
        object: "file",
        bytes: file.size_bytes.unwrap_or(0),
        created_at: file.created_at.unix_seconds(),
        expires_at: file.expires_at.unix_seconds(),
        filename: file.display_name.clone().unwrap_or_else(|| file.id.to_string()),
        purpose: PURPOSE,
        status: match file.state {
            FileState::Ready => "processed",
            FileState::Failed => "error",
            _ => "uploaded",
        },
        status_details: file.error.as_ref().map(|e| e.message.clone()),
    }
}

/// The form's fields besides the file, as far as they have come.
#[derive(Default)]
struct Fields {
    purpose: Option<String>,
    anchor: Option<String>,
    seconds: Option<String>,
}

impl Fields {
    fn set(&mut self, name: &str, value: String) -> std::result::Result<(), Error> {
        let slot = match name {
            "purpose" => &mut self.purpose,
            "expires_after[anchor]" => &mut self.anchor,
            "expires_after[seconds]" => &mut self.seconds,
            other => return Err(Error::invalid(format!("Unrecognized request argument supplied: {other}"))),
        };
        *slot = Some(value);
        Ok(())
    }

    fn check_purpose(&self) -> std::result::Result<(), Error> {
        check_purpose(self.purpose.as_deref())
    }

    fn ttl(&self) -> std::result::Result<Option<Duration>, Error> {
        expires_after(self.anchor.as_deref(), self.seconds.as_deref())
    }
}

/// `purpose` must be the one filegate keeps files for.
pub(super) fn check_purpose(purpose: Option<&str>) -> std::result::Result<(), Error> {
    match purpose {
        Some(PURPOSE) => Ok(()),
        None => Err(Error::invalid("Missing required parameter: 'purpose'.")),
        Some(other) => Err(Error::invalid(format!(
            "purpose must be \"{PURPOSE}\" (got \"{other}\"): filegate keeps files as input a model reads; \
             fine-tuning, batch, assistants and evals files are not served."
        ))),
    }
}

/// `expires_after`: `anchor` is `created_at`, `seconds` within OpenAI's bounds.
pub(super) fn expires_after(
    anchor: Option<&str>,
    seconds: Option<&str>,
) -> std::result::Result<Option<Duration>, Error> {
    match (anchor, seconds) {
        (None, None) => Ok(None),
        (Some("created_at"), Some(seconds)) => {
            let seconds: u64 = seconds.trim_matches('"').parse().map_err(|_| {
                Error::invalid(format!("expires_after[seconds] must be a whole number, got \"{seconds}\"."))
            })?;
            if !(MIN_EXPIRES_AFTER..=MAX_EXPIRES_AFTER).contains(&seconds) {
                return Err(Error::invalid(format!(
                    "expires_after[seconds] must be between {MIN_EXPIRES_AFTER} and {MAX_EXPIRES_AFTER}."
                )));
            }
            Ok(Some(Duration::from_secs(seconds)))
        }
        _ => Err(Error::invalid(
            "expires_after needs anchor \"created_at\" and seconds (expires_after[anchor], expires_after[seconds]).",
        )),
    }
}

async fn text_field(field: FormField) -> std::result::Result<String, Error> {
    let value = read_field(field, MAX_FIELD_BYTES, || {
        Error::invalid(format!("A form field is longer than {MAX_FIELD_BYTES} bytes."))
    })
    .await?;
    String::from_utf8(value.to_vec()).map_err(|_| Error::invalid("A form field is not UTF-8 text."))
}

/// `POST /v1/files` with `multipart/form-data`: `purpose` and `expires_after[…]` (before or after the file),
/// then `file`, streamed to storage like any upload. A field after the file is checked once the file's bytes
/// are in, and a wrong one fails the upload: nothing of it is kept.
pub async fn create(app: &Handles, parts: &Parts, body: Body) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let content_type = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let boundary = content_type
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| Error::invalid("A file upload needs Content-Type: multipart/form-data; boundary=…."))?;
    let mut form = Form::new(into_stream(body), boundary);
    let mut fields = Fields::default();
    let file = loop {
        let Some(field) = form.next_field().await? else {
            return Err(Error::invalid("Missing required parameter: 'file'.").into());
        };
        match field.name().map(str::to_owned) {
            Some(name) if name == "file" => break field,
            Some(name) => {
                let value = text_field(field).await?;
                fields.set(&name, value)?;
            }
            None => return Err(Error::invalid("Every form field needs a name.").into()),
        }
    };
    if fields.purpose.is_some() {
        fields.check_purpose()?;
    }
    let ttl = fields.ttl()?;
    let filename = file.file_name().map(str::to_owned);
    // The part's own type when it says one; else what the file name says (the SDKs send
    // application/octet-stream for names they do not know).
    let mime_type = file
        .content_type()
        .map(ToString::to_string)
        .filter(|m| m != crate::domain::mime::DEFAULT_MIME_TYPE)
        .or_else(|| filename.as_deref().and_then(|n| mime_guess::from_path(n).first()).map(|m| m.to_string()));
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let request = StartUpload {
        project,
        name: None,
        display_name: filename,
        mime_type,
        size: DeclaredSize::AtMost(declared.unwrap_or(u64::MAX)),
        origin: Origin::Upload,
        ttl,
    };
    let stored = app.uploads.upload_whole(request, file_then_fields(form, file, fields)).await?;
    Ok(Json(openai_file(&stored)).into_response())
}

/// The file part's bytes, then the fields after it, checked: `purpose` must have come and be right, and
/// `expires_after` cannot come after the file (the file's expiry is set when it starts).
fn file_then_fields(form: Form, file: FormField, mut fields: Fields) -> ByteStream {
    field_then(form, file, |mut form| async move {
        while let Some(field) = form.next_field().await? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "file" {
                return Err(Error::invalid("The form has two files: send one per request."));
            }
            if name.starts_with("expires_after") {
                return Err(Error::invalid("Send expires_after before the file in the form."));
            }
            let value = text_field(field).await?;
            fields.set(&name, value)?;
        }
        fields.check_purpose()
    })
}

/// `GET /v1/files[?after=&limit=&order=&purpose=]`: the caller's files, newest first.
pub async fn list(app: &Handles, parts: &Parts) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let (mut after, mut limit, mut purpose) = (None, DEFAULT_LIMIT, None);
    for (key, value) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "after" => after = Some(FileId::from_openai(&value)),
            "limit" => {
                limit =
                    value.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                        Error::invalid(format!("limit must be between 1 and 10000, got \"{value}\"."))
                    })?;
            }
            "order" if value == "desc" => {}
            "order" => {
                return Err(Error::invalid(format!(
                    "order=\"{value}\" is not supported: filegate lists files newest first (order=desc)."
                ))
                .into());
            }
            "purpose" => purpose = Some(value.into_owned()),
            other => return Err(Error::invalid(format!("Unrecognized request argument supplied: {other}")).into()),
        }
    }
    let page_size = limit.min(crate::services::files::MAX_PAGE_SIZE);
    let (files, has_more) = match purpose.as_deref() {
        None | Some(PURPOSE) => app.files.list_after(&project, after.as_ref(), page_size).await?,
        Some(_) => (Vec::new(), false),
    };
    let data: Vec<OpenAiFile> = files.iter().map(openai_file).collect();
    let (first_id, last_id) = (data.first().map(|f| f.id.clone()), data.last().map(|f| f.id.clone()));
    Ok(Json(json!({"object": "list", "data": data, "first_id": first_id, "last_id": last_id, "has_more": has_more}))
        .into_response())
}

/// `GET /v1/files/{id}`
pub async fn retrieve(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let file = app.files.get(&project, &FileId::from_openai(id)).await?;
    Ok(Json(openai_file(&file)).into_response())
}

/// `GET /v1/files/{id}/content`: the bytes, whole or one `Range`.
pub async fn content(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    Ok(crate::http::download::file_bytes(app, &project, parts, &FileId::from_openai(id)).await?)
}

/// `DELETE /v1/files/{id}`
pub async fn delete(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let file = app.files.delete(&project, &FileId::from_openai(id)).await?;
    Ok(Json(json!({"id": file.id.openai_id(), "object": "file", "deleted": true})).into_response())
}
