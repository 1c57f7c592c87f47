//! `POST /upload/{v}/files`: without `upload_id` it starts an upload (resumable, multipart or raw);
//! with `upload_id` it is an upload URL, handled by [`super::session`].

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{GeminiError, UPLOAD_STATUS};
use super::multipart;
use crate::domain::Origin;
use crate::error::Error;
use crate::http::extract::{GPath, GQuery};
use crate::http::state::{Handles, HttpState};
use crate::services::uploads::{CHUNK_GRANULARITY, DeclaredSize, StartUpload};
use crate::wire::gemini::CreateFileRequest;

/// Largest JSON metadata accepted with a start or a multipart upload.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, Default)]
pub struct UploadQuery {
    upload_id: Option<String>,
    #[serde(rename = "uploadType")]
    upload_type: Option<String>,
}

/// `/upload/{v}/files`
pub async fn upload(
    State(app): State<HttpState>,
    GPath(version): GPath<String>,
    GQuery(q): GQuery<UploadQuery>,
    req: Request,
) -> Response {
    dispatch(&app, &version, q, req).await
}

/// `/{v}/upload/{v}/files`, which js-genai 1.34 sent when a baseUrl was set (js-genai#1206).
pub async fn upload_aliased(
    State(app): State<HttpState>,
    GPath((_, version)): GPath<(String, String)>,
    GQuery(q): GQuery<UploadQuery>,
    req: Request,
) -> Response {
    dispatch(&app, &version, q, req).await
}

async fn dispatch(app: &Handles, version: &str, query: UploadQuery, req: Request) -> Response {
    if let Some(token) = query.upload_id {
        return super::session::handle(app, &token, req).await;
    }
    if let Err(e) = super::check_version(version) {
        return e.into_response();
    }
    let (parts, body) = req.into_parts();
    let protocol = header_str(&parts.headers, "x-goog-upload-protocol")
        .map(str::to_ascii_lowercase)
        .or_else(|| query.upload_type.map(|t| if t == "media" { "raw".into() } else { t }));
    let result = match protocol.as_deref() {
        Some("resumable") => start_resumable(app, version, &parts, body).await,
        Some("multipart") => multipart::multipart(app, &parts, body).await,
        Some("raw") => multipart::raw(app, &parts, body).await,
        Some(other) => Err(Error::invalid(format!(
            "Unsupported X-Goog-Upload-Protocol \"{other}\": use resumable, multipart or raw."
        ))
        .into()),
        None => Err(Error::invalid(
            "Missing X-Goog-Upload-Protocol header: start a resumable upload with \
             X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start.",
        )
        .into()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// A decimal header value, or a clear error naming the header.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Error> {
    header_str(headers, name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| Error::invalid(format!("{name} must be a non-negative integer, got \"{v}\".")))
        })
        .transpose()
}

/// Reads a small JSON body (`{"file": {…}}`); an empty body means no metadata.
pub async fn read_metadata(body: Body) -> Result<CreateFileRequest, Error> {
    let bytes = crate::http::body::read_to_limit(body, MAX_METADATA_BYTES, || {
        Error::invalid(format!("The metadata is larger than {MAX_METADATA_BYTES} bytes."))
    })
    .await?;
    parse_metadata(&bytes)
}

/// Parses the metadata JSON as Google's front end does: strict JSON, or else the lenient form its own
/// documentation sends (`curl -d "{'file': {'display_name': 'AUDIO'}}"`, single quotes), which JSON5
/// reads.
pub fn parse_metadata(bytes: &[u8]) -> Result<CreateFileRequest, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateFileRequest::default());
    }
    crate::http::body::parse_json(bytes).or_else(|strict| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| json5::from_str(text).ok())
            .ok_or_else(|| Error::invalid(format!("Invalid JSON payload received. {strict}")))
    })
}

async fn start_resumable(app: &Handles, version: &str, parts: &Parts, body: Body) -> Result<Response, GeminiError> {
    let headers = &parts.headers;
    match header_str(headers, "x-goog-upload-command").map(str::to_ascii_lowercase).as_deref() {
        Some("start") => {}
        other => {
            return Err(Error::invalid(format!(
                "A resumable upload starts with X-Goog-Upload-Command: start (got {other:?})."
            ))
            .into());
        }
    }
    let project = crate::http::auth::gemini_project(app, parts).await?;
    let metadata = read_metadata(body).await?.file.unwrap_or_default();
    let header_size = match header_u64(headers, "x-goog-upload-header-content-length")? {
        Some(size) => Some(size),
        None => header_u64(headers, "x-goog-upload-raw-size")?,
    };
    let body_size = match metadata.size_bytes {
        Some(size) => Some(u64::try_from(size.0).map_err(|_| Error::invalid("sizeBytes must not be negative."))?),
        None => None,
    };
    let size = match (header_size, body_size) {
        (Some(h), Some(b)) if h != b => {
            return Err(Error::invalid(format!(
                "X-Goog-Upload-Header-Content-Length ({h}) and file.sizeBytes ({b}) disagree."
            ))
            .into());
        }
        (Some(size), _) | (None, Some(size)) => size,
        (None, None) => {
            return Err(Error::invalid(
                "The upload size is required: send X-Goog-Upload-Header-Content-Length with the total number of bytes.",
            )
            .into());
        }
    };
    let mime_type = metadata.mime_type.or_else(|| {
        header_str(headers, "x-goog-upload-header-content-type")
            .or_else(|| header_str(headers, "x-goog-upload-content-type"))
            .map(str::to_owned)
    });
    let started = app
        .uploads
        .start(StartUpload {
            project,
            name: metadata.name,
            display_name: metadata.display_name,
            mime_type,
            size: DeclaredSize::Exact(size),
            origin: Origin::Upload,
            ttl: None,
        })
        .await?;

    let upload_url = format!(
        "{}/upload/{version}/files?upload_id={}&upload_protocol=resumable",
        app.public_url,
        started.token.as_str()
    );
    let url = HeaderValue::from_str(&upload_url).map_err(Error::internal)?;
    Ok((
        [
            (UPLOAD_STATUS, HeaderValue::from_static("active")),
            (header::HeaderName::from_static("x-goog-upload-url"), url.clone()),
            (header::HeaderName::from_static("x-goog-upload-control-url"), url),
            (header::HeaderName::from_static("x-goog-upload-chunk-granularity"), HeaderValue::from(CHUNK_GRANULARITY)),
        ],
        (),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_in_googles_documented_single_quotes_is_read() {
        let request = parse_metadata(b"{'file': {'display_name': 'AUDIO'}}").unwrap();
        assert_eq!(request.file.unwrap().display_name.as_deref(), Some("AUDIO"));
        let strict = parse_metadata(br#"{"file": {"displayName": "x"}}"#).unwrap();
        assert_eq!(strict.file.unwrap().display_name.as_deref(), Some("x"));
        assert!(parse_metadata(b"   ").unwrap().file.is_none());
        let err = parse_metadata(b"{file: ").unwrap_err().to_string();
        assert!(err.starts_with("Invalid JSON payload received."), "{err}");
    }
}
