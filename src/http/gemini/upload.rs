//! `POST /upload/{v}/files`: without `upload_id` it starts an upload (resumable, multipart or raw);
//! with `upload_id` it is an upload URL, handled by [`super::session`].

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::headers::{header_str, header_u64, read_metadata};
use super::multipart;
use crate::domain::Origin;
use crate::error::Error;
use crate::http::dialect::google::{GPath, GQuery};
use crate::http::dialect::google::{GeminiError, UPLOAD_STATUS};
use crate::http::state::{Handles, HttpState};
use crate::services::uploads::{CHUNK_GRANULARITY, DeclaredSize, StartUpload};

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
