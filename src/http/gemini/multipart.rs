//! One-request uploads: `multipart` (a JSON metadata part, then the media part, in `multipart/related`)
//! and `raw` (the body is the file). Both stream the media to storage; neither is used by the official
//! SDKs, but discovery-based Google clients and curl scripts send them.

use axum::Json;
use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::headers::{MAX_METADATA_BYTES, header_str, header_u64, parse_metadata};
use crate::domain::Origin;
use crate::error::Error;
use crate::http::body::into_stream;
use crate::http::dialect::google::GeminiError;
use crate::http::form::{Form, field_then, read_field};
use crate::http::state::Handles;
use crate::services::uploads::{DeclaredSize, StartUpload};
use crate::wire::gemini::FileEnvelope;

fn content_length(parts: &Parts, protocol: &str) -> Result<u64, Error> {
    header_u64(&parts.headers, header::CONTENT_LENGTH.as_str())?.ok_or_else(|| {
        Error::invalid(format!("A {protocol} upload needs a Content-Length header (or use a resumable upload)."))
    })
}

/// `multipart/related` (or `multipart/form-data`): exactly two parts, the JSON metadata and then the media.
/// Anything else (no media, a second metadata part, a third part) is refused before the file is
/// finalized, so nothing of such a request is kept.
pub async fn multipart(app: &Handles, parts: &Parts, body: Body) -> Result<Response, GeminiError> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let boundary = content_type
        .parse::<mime_guess::mime::Mime>()
        .ok()
        .filter(|m| m.type_() == "multipart")
        .and_then(|m| m.get_param("boundary").map(|b| b.as_str().to_owned()))
        .ok_or_else(|| {
            Error::invalid(format!(
                "A multipart upload needs Content-Type: multipart/related; boundary=… (got \"{content_type}\")."
            ))
        })?;
    let total = content_length(parts, "multipart")?;

    let mut multipart = Form::new(into_stream(body), boundary);
    let metadata_part = multipart.next_field().await?.ok_or_else(|| {
        Error::invalid("The multipart body has no parts: send two, the JSON metadata and then the media.")
    })?;
    let metadata = read_field(metadata_part, MAX_METADATA_BYTES, || {
        Error::invalid(format!("The metadata part is larger than {MAX_METADATA_BYTES} bytes."))
    })
    .await?;
    let metadata = parse_metadata(&metadata)?.file.unwrap_or_default();
    let media = multipart.next_field().await?.ok_or_else(|| {
        Error::invalid("The multipart body has no media part: send two parts, the JSON metadata and then the media.")
    })?;
    let mime_type = metadata.mime_type.or_else(|| media.content_type().map(ToString::to_string));
    let request = StartUpload {
        project,
        name: metadata.name,
        display_name: metadata.display_name,
        mime_type,
        size: DeclaredSize::AtMost(total),
        origin: Origin::Upload,
        ttl: None,
    };
    // Exactly two parts: anything after the media fails the upload.
    let media = field_then(multipart, media, |mut rest| async move {
        match rest.next_field().await? {
            None => Ok(()),
            Some(_) => Err(Error::invalid(
                "The multipart body has more than two parts: send exactly two, the JSON metadata and then the media.",
            )),
        }
    });
    let file = app.uploads.upload_whole(request, media).await?;
    Ok(Json(FileEnvelope { file: crate::http::dialect::google::view::gemini_file(app, &file) }).into_response())
}

/// The body is the file; its type comes from `X-Goog-Upload-Header-Content-Type` or `Content-Type`.
pub async fn raw(app: &Handles, parts: &Parts, body: Body) -> Result<Response, GeminiError> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    let size = content_length(parts, "raw")?;
    let mime_type = header_str(&parts.headers, "x-goog-upload-header-content-type")
        .or_else(|| header_str(&parts.headers, header::CONTENT_TYPE.as_str()))
        .map(str::to_owned);
    let request = StartUpload {
        project,
        name: None,
        display_name: None,
        mime_type,
        size: DeclaredSize::Exact(size),
        origin: Origin::Upload,
        ttl: None,
    };
    let file = app.uploads.upload_whole(request, into_stream(body)).await?;
    Ok(Json(FileEnvelope { file: crate::http::dialect::google::view::gemini_file(app, &file) }).into_response())
}
