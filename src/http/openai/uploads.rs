//! `client.uploads.*` of the openai SDKs (the Uploads API, which `upload_file_chunked` uses for large
//! files): create, add parts, complete, cancel — one filegate upload session behind each Upload
//! (`services::uploads::parted`). The Upload's id is the session's capability (`upload_{token}`), and it
//! works only with a key of the project that made it; its routes are logged by their template, never
//! with the id.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::files::{OpenAiFile, PURPOSE, check_purpose, expires_after, openai_file};
use crate::domain::{FileRecord, Origin, SecretToken, Timestamp};
use crate::error::{Error, UploadError};
use crate::http::body::into_stream;
use crate::http::dialect::google::GPath;
use crate::http::dialect::openai::OpenAiError;
use crate::http::form::Form;
use crate::http::state::HttpState;
use crate::services::uploads::{DeclaredSize, PartReceipt, StartUpload};

/// The largest part OpenAI takes.
const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
/// A create or complete body is a small JSON object (a completion names its parts).
const MAX_JSON_BYTES: usize = 1024 * 1024;
const ID_PREFIX: &str = "upload_";

fn not_found() -> Error {
    UploadError::SessionNotFound.into()
}

fn token_of(id: &str) -> std::result::Result<SecretToken, Error> {
    let token = id.strip_prefix(ID_PREFIX).filter(|t| !t.is_empty() && t.len() <= 64).ok_or_else(not_found)?;
    Ok(SecretToken::from_request(token))
}

/// A part's id: where it starts and how long it is, in hex (`part_{offset}_{len}`).
fn part_id(part: PartReceipt) -> String {
    format!("part_{:x}_{:x}", part.offset, part.len)
}

fn parse_part_id(id: &str) -> Option<PartReceipt> {
    let (offset, len) = id.strip_prefix("part_")?.split_once('_')?;
    Some(PartReceipt { offset: u64::from_str_radix(offset, 16).ok()?, len: u64::from_str_radix(len, 16).ok()? })
}

/// An Upload object as OpenAI shows one.
fn upload_view(id: &str, file: &FileRecord, status: &str, done: Option<OpenAiFile>) -> Value {
    json!({
        "id": id,
        "object": "upload",
        "bytes": file.size_bytes.unwrap_or(0),
        "created_at": file.created_at.unix_seconds(),
        "filename": file.display_name.clone().unwrap_or_default(),
        "purpose": PURPOSE,
        "status": status,
        "expires_at": file.expires_at.unix_seconds(),
        "file": done,
    })
}

async fn json_body(body: Body) -> std::result::Result<Value, Error> {
    let too_large = || Error::invalid(format!("The request body is larger than {MAX_JSON_BYTES} bytes."));
    let bytes = crate::http::body::read_to_limit(body, MAX_JSON_BYTES, too_large).await?;
    crate::http::body::parse_json(&bytes).map_err(|e| Error::invalid(format!("The body is not valid JSON: {e}")))
}

/// `POST /v1/uploads {bytes, filename, mime_type, purpose, expires_after?}`
pub async fn create(State(app): State<HttpState>, req: Request) -> Response {
    let answer = async {
        let (parts, body) = req.into_parts();
        let project = crate::http::auth::import_project(&app, &parts).await?;
        let body = json_body(body).await?;
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        check_purpose(text("purpose").as_deref())?;
        let bytes = body
            .get("bytes")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::invalid("Missing required parameter: 'bytes' (the file's size, a number)."))?;
        let filename = text("filename").ok_or_else(|| Error::invalid("Missing required parameter: 'filename'."))?;
        // A type as OpenAI's examples give it (`pdf`) is read from the file name instead.
        let mime_type = text("mime_type")
            .filter(|m| m.contains('/'))
            .or_else(|| mime_guess::from_path(&filename).first().map(|m| m.to_string()));
        let anchor = body.pointer("/expires_after/anchor").and_then(Value::as_str).map(str::to_owned);
        let seconds = body.pointer("/expires_after/seconds").map(|s| s.to_string());
        let request = StartUpload {
            project,
            name: None,
            display_name: Some(filename),
            mime_type,
            size: DeclaredSize::Exact(bytes),
            origin: Origin::Upload,
            ttl: expires_after(anchor.as_deref(), seconds.as_deref())?,
        };
        let started = app.uploads.start(request).await?;
        let id = format!("{ID_PREFIX}{}", started.token.as_str());
        Ok::<_, OpenAiError>(Json(upload_view(&id, &started.file, "pending", None)).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/uploads/{id}/parts`, a form whose `data` field is the part (at most 64 MiB).
pub async fn add_part(State(app): State<HttpState>, GPath(id): GPath<String>, req: Request) -> Response {
    let answer = async {
        let (parts, body) = req.into_parts();
        let project = crate::http::auth::import_project(&app, &parts).await?;
        let token = token_of(&id)?;
        let mut form = Form::new(into_stream(body), boundary(&parts)?);
        let data = form.next_field().await?.ok_or_else(|| Error::invalid("Missing required parameter: 'data'."))?;
        match data.name() {
            Some("data") => {}
            Some(other) => {
                return Err(Error::invalid(format!("Unrecognized request argument supplied: {other}")).into());
            }
            None => return Err(Error::invalid("Every form field needs a name.").into()),
        }
        let part = crate::http::form::field_then(form, data, |mut rest| async move {
            match rest.next_field().await? {
                None => Ok(()),
                Some(_) => Err(Error::invalid("A part is one field, data: send one per request.")),
            }
        });
        let mut seen = 0u64;
        let capped = part
            .map(move |bytes| {
                let bytes = bytes?;
                seen += bytes.len() as u64;
                match seen > MAX_PART_BYTES {
                    true => Err(Error::invalid(format!("A part may be at most {MAX_PART_BYTES} bytes (64 MiB)."))),
                    false => Ok(bytes),
                }
            })
            .boxed();
        let receipt = app.uploads.add_part(&token, &project, capped).await?;
        Ok::<_, OpenAiError>(
            Json(json!({
                "id": part_id(receipt),
                "object": "upload.part",
                "created_at": Timestamp::now().unix_seconds(),
                "upload_id": id,
            }))
            .into_response(),
        )
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/uploads/{id}/complete {part_ids, md5?}`: the file, once the parts named are every byte
/// received, in order.
pub async fn complete(State(app): State<HttpState>, GPath(id): GPath<String>, req: Request) -> Response {
    let answer = async {
        let (parts, body) = req.into_parts();
        let project = crate::http::auth::import_project(&app, &parts).await?;
        let token = token_of(&id)?;
        let body = json_body(body).await?;
        let ids = body
            .get("part_ids")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid("Missing required parameter: 'part_ids' (the parts, in order)."))?;
        let receipts = ids
            .iter()
            .map(|id| id.as_str().and_then(parse_part_id))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::invalid("part_ids names a part this upload never had."))?;
        let md5 =
            match body.get("md5").and_then(Value::as_str).filter(|m| !m.is_empty()) {
                None => None,
                Some(text) => Some(md5_digest(text).ok_or_else(|| {
                    Error::invalid("md5 must be the file's MD5: 32 hexadecimal digits (or its base64).")
                })?),
            };
        let file = app.uploads.complete_parts(&token, &project, &receipts, md5).await?;
        let done = openai_file(&file);
        Ok::<_, OpenAiError>(Json(upload_view(&id, &file, "completed", Some(done))).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/uploads/{id}/cancel`: no part may be added after it; what was received is deleted.
pub async fn cancel(State(app): State<HttpState>, GPath(id): GPath<String>, req: Request) -> Response {
    let answer = async {
        let parts = req.into_parts().0;
        let project = crate::http::auth::import_project(&app, &parts).await?;
        let token = token_of(&id)?;
        let file = app.uploads.file_of(&token, &project).await?;
        app.uploads.cancel(&token).await?;
        Ok::<_, OpenAiError>(Json(upload_view(&id, &file, "cancelled", None)).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

fn boundary(parts: &Parts) -> std::result::Result<String, Error> {
    parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| Error::invalid("A part needs Content-Type: multipart/form-data; boundary=…."))
}

/// An MD5 as 32 hex digits or base64 (both spellings are in use).
fn md5_digest(text: &str) -> Option<[u8; 16]> {
    let bytes = hex::decode(text).ok().or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ids_say_where_each_part_is() {
        let part = PartReceipt { offset: 64 << 20, len: 12345 };
        assert_eq!(parse_part_id(&part_id(part)), Some(part));
        for bad in ["part_", "part_x_1", "part_1", "upload_1_2", "part_1_2_3"] {
            assert_eq!(parse_part_id(bad), None, "{bad}");
        }
        assert_eq!(md5_digest("d41d8cd98f00b204e9800998ecf8427e").map(|d| d[0]), Some(0xd4));
        assert_eq!(md5_digest("1B2M2Y8AsgTpgAmY7PhCfg==").map(|d| d[0]), Some(0xd4));
        assert_eq!(md5_digest("nope"), None);
    }
}
