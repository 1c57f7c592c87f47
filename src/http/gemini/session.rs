//! Requests on an upload URL, chosen by `X-Goog-Upload-Command`: `upload`, `upload, finalize`,
//! `finalize`, `query`, `cancel`. Every reply carries `x-goog-upload-status` (errors included, except
//! transient ones: see [`UploadUrlError`]). No API key is needed: the Python SDK sends none, and the
//! unguessable `upload_id` is the credential.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::headers::{header_str, header_u64};
use crate::domain::SecretToken;
use crate::error::{Error, UploadError};
use crate::http::body::into_stream;
use crate::http::dialect::google::{UPLOAD_STATUS, UploadUrlError};
use crate::http::state::Handles;
use crate::services::uploads::{CHUNK_GRANULARITY, Progress};
use crate::wire::gemini::FileEnvelope;

const SIZE_RECEIVED: HeaderName = HeaderName::from_static("x-goog-upload-size-received");
const GRANULARITY: HeaderName = HeaderName::from_static("x-goog-upload-chunk-granularity");

/// What `X-Goog-Upload-Command` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Upload { finalize: bool },
    Finalize,
    Query,
    Cancel,
}

/// Parses the comma-separated command list (`upload, finalize`), case-insensitively.
fn parse_command(headers: &HeaderMap) -> Result<Command, Error> {
    let raw = header_str(headers, "x-goog-upload-command")
        .ok_or_else(|| UploadError::BadRequest("Missing X-Goog-Upload-Command header.".into()))?;
    let mut words: Vec<String> =
        raw.split(',').map(|w| w.trim().to_ascii_lowercase()).filter(|w| !w.is_empty()).collect();
    words.sort();
    words.dedup();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match words.as_slice() {
        ["upload"] => Command::Upload { finalize: false },
        ["finalize", "upload"] => Command::Upload { finalize: true },
        ["finalize"] => Command::Finalize,
        ["query"] => Command::Query,
        ["cancel"] => Command::Cancel,
        _ => {
            return Err(UploadError::BadRequest(format!(
                "Unsupported X-Goog-Upload-Command \"{raw}\": use upload, \"upload, finalize\", finalize, query or cancel."
            ))
            .into());
        }
    })
}

pub async fn handle(app: &Handles, token: &str, req: Request) -> Response {
    run(app, token, req).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run(app: &Handles, token: &str, req: Request) -> Result<Response, UploadUrlError> {
    let token = SecretToken::from_request(token);
    let (parts, body) = req.into_parts();
    let command = parse_command(&parts.headers)?;
    let progress = match command {
        Command::Query => app.uploads.query(&token).await?,
        Command::Cancel => {
            app.uploads.cancel(&token).await?;
            return Ok(([(UPLOAD_STATUS, HeaderValue::from_static("cancelled"))], ()).into_response());
        }
        Command::Upload { finalize } => {
            let offset = header_u64(&parts.headers, "x-goog-upload-offset")?
                .ok_or_else(|| UploadError::BadRequest("Missing X-Goog-Upload-Offset header.".into()))?;
            app.uploads.write(&token, Some(offset), finalize, into_stream(body)).await?
        }
        Command::Finalize => {
            let offset = header_u64(&parts.headers, "x-goog-upload-offset")?;
            app.uploads.write(&token, offset, true, into_stream(body)).await?
        }
    };
    Ok(progress_response(app, progress))
}

fn progress_response(app: &Handles, progress: Progress) -> Response {
    match progress {
        Progress::Active { received } => (
            [
                (UPLOAD_STATUS, HeaderValue::from_static("active")),
                (SIZE_RECEIVED, HeaderValue::from(received)),
                (GRANULARITY, HeaderValue::from(CHUNK_GRANULARITY)),
            ],
            (),
        )
            .into_response(),
        Progress::Final(file) => (
            [
                (UPLOAD_STATUS, HeaderValue::from_static("final")),
                (SIZE_RECEIVED, HeaderValue::from(file.size_bytes.unwrap_or(0))),
            ],
            Json(FileEnvelope { file: crate::http::dialect::google::view::gemini_file(app, &file) }),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(value: &str) -> Result<Command, Error> {
        let mut headers = HeaderMap::new();
        headers.insert("x-goog-upload-command", HeaderValue::from_str(value).unwrap());
        parse_command(&headers)
    }

    #[test]
    fn commands_parse_as_comma_separated_lists() {
        assert_eq!(command("upload").unwrap(), Command::Upload { finalize: false });
        assert_eq!(command("upload, finalize").unwrap(), Command::Upload { finalize: true });
        assert_eq!(command("Finalize,Upload").unwrap(), Command::Upload { finalize: true });
        assert_eq!(command("finalize").unwrap(), Command::Finalize);
        assert_eq!(command(" query ").unwrap(), Command::Query);
        assert_eq!(command("cancel").unwrap(), Command::Cancel);
        for bad in ["start", "upload, cancel", "delete", ","] {
            assert!(command(bad).is_err(), "{bad}");
        }
        assert!(parse_command(&HeaderMap::new()).is_err());
    }
}
