//! The OpenAI surface's Files API (`client.files.*` of the openai SDKs) on the paths it shares with the
//! Gemini Files API on `v1` and with the import API:
//!
//! | request | who answers |
//! |---|---|
//! | `POST /v1/files` with `multipart/form-data` | OpenAI: an upload (`files.create`) |
//! | `POST /v1/files` with anything else (JSON) | the import API |
//! | `/v1/files/qfile-…` | the import API |
//! | `/v1/files[/{id}]` with `x-goog-api-key`, `?key=`, `pageSize` or `pageToken` | the Gemini Files API (google-genai and @google/genai always send `x-goog-api-key`; Google's curl guide sends one of the two) |
//! | `/v1/files[/{id}]` otherwise (`Authorization: Bearer`, as the openai SDKs send it) | OpenAI |
//! | `/v1/files/{id}/content` | OpenAI |
//!
//! One file, one id space: the OpenAI id of `files/{id}` is `file-{id}` (at most 45 characters, within
//! OpenAI's 64), and either spelling names the same file on either surface.

pub mod files;
pub mod uploads;

use axum::http::request::Parts;

/// Whether a request on a path the surfaces share comes from a Gemini client (see the table above).
pub fn from_gemini_client(parts: &Parts) -> bool {
    if parts.headers.contains_key("x-goog-api-key") {
        return true;
    }
    parts.uri.query().is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "key" || k == "pageSize" || k == "pageToken")
    })
}

/// What an OpenAI client is told for a `/v1` path or method filegate does not serve: OpenAI's own shape
/// (`invalid_request_error`), with what filegate serves instead, so the openai SDKs raise a clear error
/// rather than a Google body they cannot read.
pub fn unserved(parts: &Parts, rejection: crate::http::dialect::google::RouteRejection) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;

    use crate::http::dialect::google::RouteRejection;
    use crate::wire::import::{ErrorBody, ErrorEnvelope};
    let (status, code) = match rejection {
        RouteRejection::UnknownRoute => (StatusCode::NOT_FOUND, "unknown_url"),
        RouteRejection::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    };
    let path: String = parts.uri.path().chars().take(200).collect();
    let message = format!(
        "Invalid URL ({} {path}): filegate serves OpenAI's /v1/files, /v1/uploads, /v1/chat/completions, \
         /v1/responses and /v1/responses/input_tokens; other OpenAI APIs (assistants, fine-tuning, batches, \
         vector stores, embeddings, images, audio) are not served (docs/models.md).",
        parts.method
    );
    let body = ErrorEnvelope { error: ErrorBody { message, kind: "invalid_request_error".into(), code: code.into() } };
    (status, axum::Json(body)).into_response()
}

/// Whether a request that no route takes is an OpenAI client's: on `/v1/`, with its key as
/// `Authorization` (as the openai SDKs send it), and not a Gemini client.
pub fn is_openai_request(parts: &Parts) -> bool {
    parts.uri.path().starts_with("/v1/")
        && parts.headers.contains_key(axum::http::header::AUTHORIZATION)
        && !from_gemini_client(parts)
}

/// Whether a `POST /v1/files` body is a form upload (the openai SDKs' `files.create`).
pub fn is_form_upload(parts: &Parts) -> bool {
    parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::harness::request_parts as parts;

    #[test]
    fn gemini_clients_are_told_apart_from_openai_clients_by_what_they_send() {
        assert!(from_gemini_client(&parts("/v1/files", &[("x-goog-api-key", "k")])));
        assert!(from_gemini_client(&parts("/v1/files?key=k", &[])));
        assert!(from_gemini_client(&parts("/v1/files?pageSize=5", &[("authorization", "Bearer k")])));
        assert!(!from_gemini_client(&parts("/v1/files?limit=5&after=file-x", &[("authorization", "Bearer k")])));
        assert!(!from_gemini_client(&parts("/v1/files", &[("authorization", "Bearer k")])));
        assert!(is_form_upload(&parts("/v1/files", &[("content-type", "multipart/form-data; boundary=x")])));
        assert!(!is_form_upload(&parts("/v1/files", &[("content-type", "application/json")])));
        assert!(is_openai_request(&parts("/v1/assistants", &[("authorization", "Bearer k")])));
        assert!(!is_openai_request(&parts("/v1/assistants", &[])), "no key: Google's format, as before");
        assert!(!is_openai_request(&parts("/v1/models", &[("x-goog-api-key", "k")])));
        assert!(!is_openai_request(&parts("/v1beta/x", &[("authorization", "Bearer k")])));
    }
}
