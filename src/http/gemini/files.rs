//! Get, list, delete and download on `/{v}/files…`.

use axum::Json;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;

use crate::domain::{FileId, ProjectId};
use crate::error::Error;
use crate::http::dialect::google::GeminiError;
use crate::http::state::Handles;
use crate::services::files::ByteRange;
use crate::telemetry::metric;
use crate::wire::gemini::ListFilesResponse;

type Result<T> = std::result::Result<T, GeminiError>;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

pub async fn list(app: &Handles, project: ProjectId, parts: &Parts) -> Result<Response> {
    let query: ListQuery = query_params(parts)?;
    let page_size = query
        .page_size
        .map(|s| s.parse::<i64>().map_err(|_| Error::invalid(format!("Invalid value for pageSize: \"{s}\""))))
        .transpose()?;
    let (files, next_page_token) = app.files.list(&project, page_size, query.page_token.as_deref()).await?;
    let files = files.iter().map(|f| crate::http::dialect::google::view::gemini_file(app, f)).collect();
    Ok(Json(ListFilesResponse { files, next_page_token }).into_response())
}

pub async fn get(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    let file = app.files.get(&project, &FileId::from_path(id)).await?;
    Ok(Json(crate::http::dialect::google::view::gemini_file(app, &file)).into_response())
}

/// Replies `{}` with 200: the Python SDK parses the body and rejects a 204.
pub async fn delete(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    app.files.delete(&project, &FileId::from_path(id)).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// The bytes of an ACTIVE file, whole (200) or one `Range` (206).
pub async fn download(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    Ok(file_bytes(app, &project, parts, &FileId::from_path(id)).await?)
}

/// A file's bytes as every surface serves them: whole (200) or the one `Range` asked for (206), as an
/// attachment a browser saves rather than renders.
pub(crate) async fn file_bytes(
    app: &Handles,
    project: &ProjectId,
    parts: &Parts,
    id: &FileId,
) -> std::result::Result<Response, Error> {
    let range = parts.headers.get(header::RANGE).map(parse_range).transpose()?;
    let download = app.files.download(project, id, range).await?;
    let len = download.range.end - download.range.start;
    let body = download.body.map(|chunk| {
        if let Ok(bytes) = &chunk {
            metrics::counter!(metric::DOWNLOAD_BYTES).increment(bytes.len() as u64);
        }
        chunk.map_err(std::io::Error::other)
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    let mime =
        HeaderValue::from_str(&download.file.mime_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    // An uploaded file is never a page of filegate's origin: the browser saves it instead of rendering it,
    // does not guess a type that could run, and would run nothing even if it rendered it.
    headers.insert(header::CONTENT_DISPOSITION, attachment(&download.file));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if download.partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let size = download.file.size_bytes.unwrap_or(0);
        let value = format!("bytes {}-{}/{size}", download.range.start, download.range.end - 1);
        response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).map_err(Error::internal)?);
    }
    Ok(response)
}

/// `attachment; filename*=UTF-8''…` with the display name (or the id), percent-encoded (RFC 6266 and
/// RFC 8187), so that no name can break out of the header.
fn attachment(file: &crate::domain::FileRecord) -> HeaderValue {
    const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let name = file.display_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(file.id.as_str());
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

/// `files:register {"uris": ["gs://…"]}` → `{"files": [File…]}`: objects in the caller's bucket become files
/// without a copy (the SDK also sends a Google token, for Google's service; filegate reads the objects with
/// its own credentials, from the buckets its operator allows).
pub async fn register(app: &Handles, project: ProjectId, body: axum::body::Body) -> Result<Response> {
    #[derive(Deserialize)]
    struct RegisterRequest {
        uris: Vec<String>,
    }
    let bytes = crate::http::body::read_to_limit(body, 256 * 1024, || {
        Error::invalid("The request is larger than 256 KiB; register at most 100 objects per call.")
    })
    .await?;
    let request: RegisterRequest = crate::http::body::parse_json(&bytes).map_err(|e| {
        Error::invalid(format!("Invalid JSON payload received: expected {{\"uris\": [\"gs://…\"]}} ({e})."))
    })?;
    let files = app.registrar.register(&project, request.uris).await?;
    let files: Vec<_> = files.iter().map(|f| crate::http::dialect::google::view::gemini_file(app, f)).collect();
    Ok(Json(serde_json::json!({ "files": files })).into_response())
}

fn query_params<T: serde::de::DeserializeOwned + Default>(parts: &Parts) -> Result<T> {
    match parts.uri.query() {
        None => Ok(T::default()),
        Some(_) => axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|e| Error::invalid(format!("Invalid query string: {}", e.body_text())).into()),
    }
}

/// One `bytes=` range; several ranges are refused rather than answered with the whole file.
fn parse_range(value: &HeaderValue) -> std::result::Result<ByteRange, Error> {
    let invalid = || Error::invalid("Invalid Range header: expected bytes=START-[END] or bytes=-SUFFIX.");
    let spec = value.to_str().ok().and_then(|v| v.trim().strip_prefix("bytes=")).ok_or_else(invalid)?;
    if spec.contains(',') {
        return Err(invalid());
    }
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
    match (start.trim(), end.trim()) {
        ("", suffix) => Ok(ByteRange::Suffix(number(suffix)?)),
        (start, "") => Ok(ByteRange::From { start: number(start)?, end: None }),
        (start, end) => {
            let (start, end) = (number(start)?, number(end)?);
            if end < start {
                return Err(invalid());
            }
            Ok(ByteRange::From { start, end: Some(end) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_or_fail_clearly() {
        let parse = |s: &'static str| parse_range(&HeaderValue::from_static(s)).map_err(|_| ());
        assert_eq!(parse("bytes=0-99"), Ok(ByteRange::From { start: 0, end: Some(99) }));
        assert_eq!(parse("bytes=100-"), Ok(ByteRange::From { start: 100, end: None }));
        assert_eq!(parse("bytes=-5"), Ok(ByteRange::Suffix(5)));
        for bad in ["bytes=5-1", "items=0-1", "bytes=0-1,3-4", "bytes=a-b", "bytes=-"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
