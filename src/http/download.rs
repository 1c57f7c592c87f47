//! A file's bytes as every surface serves them (Gemini's `:download`, OpenAI's `/content`, the console's
//! links): surface-neutral, answering the domain error for each surface to word.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt as _;

use crate::domain::{FileId, ProjectId};
use crate::error::Error;
use crate::http::state::Handles;
use crate::services::files::ByteRange;
use crate::telemetry::metric;

/// A file's bytes as every surface serves them: whole (200) or the one `Range` asked for (206), as an
/// attachment a browser saves rather than renders.
pub async fn file_bytes(
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
