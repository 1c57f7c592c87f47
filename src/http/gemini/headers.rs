//! What the upload protocol reads from a request besides the bytes: its headers and the small JSON
//! metadata a start or a multipart upload carries. Shared by the start, the session and multipart.

use axum::body::Body;
use axum::http::HeaderMap;

use crate::error::Error;
use crate::wire::gemini::CreateFileRequest;

/// Largest JSON metadata accepted with a start or a multipart upload.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// A header's trimmed value; `None` when absent, empty or not text.
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
