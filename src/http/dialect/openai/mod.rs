//! OpenAI's conventions, spoken by the OpenAI surfaces (files, uploads, chat) and the import API: domain
//! errors as the body their clients parse (`{"error": {"message", "type", "code"}}`; the only place that
//! decides their status codes), the caller's project, found also from the bare key in `Authorization`, and
//! the import API's view of a file (`view.rs`, shown in webhook events too).

pub mod view;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::domain::ProjectId;
use crate::error::{Error, UpstreamError};
use crate::http::AnsweredError;
use crate::http::auth::import_project;
use crate::http::state::HttpState;
use crate::wire::import::{ErrorBody, ErrorEnvelope};

#[derive(Debug)]
pub struct OpenAiError(pub Error);

impl<E: Into<Error>> From<E> for OpenAiError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

/// HTTP status, error type, machine code and message (shared with the chat completions surface, which
/// speaks the same error format).
pub(crate) fn classify(err: &Error) -> (StatusCode, &'static str, &'static str, String) {
    use StatusCode as S;
    let msg = err.public_message();
    match err {
        Error::InvalidField { code, .. } => (S::BAD_REQUEST, "invalid_request_error", code.as_str(), msg),
        // An Upload of the OpenAI surface that is not the caller's, or gone.
        Error::Upload(crate::error::UploadError::SessionNotFound) => {
            (S::NOT_FOUND, "not_found_error", "upload_not_found", "No such upload.".into())
        }
        Error::InvalidArgument(_) | Error::Upload(_) | Error::RangeNotSatisfiable { .. } => {
            (S::BAD_REQUEST, "invalid_request_error", "invalid_request", msg)
        }
        Error::FileTooLarge { .. } => (S::BAD_REQUEST, "invalid_request_error", "too_large", msg),
        Error::MissingApiKey => (
            S::UNAUTHORIZED,
            "authentication_error",
            "missing_api_key",
            "No API key: send it as Authorization: <key> (or Bearer <key>).".into(),
        ),
        Error::InvalidApiKey => (S::UNAUTHORIZED, "authentication_error", "invalid_api_key", "Invalid API key.".into()),
        Error::FileNotFound(id) => (S::NOT_FOUND, "not_found_error", "file_not_found", format!("No file {id}.")),
        Error::PermissionDenied(message) => (S::FORBIDDEN, "permission_error", "permission_denied", message.clone()),
        Error::WebhookNotFound(name) => {
            (S::NOT_FOUND, "not_found_error", "webhook_not_found", format!("No webhook {name}."))
        }
        Error::BatchNotFound(name) => (S::NOT_FOUND, "not_found_error", "batch_not_found", format!("No batch {name}.")),
        Error::CacheNotFound(name) => {
            (S::NOT_FOUND, "not_found_error", "cache_not_found", format!("No cached content {name}."))
        }
        Error::AlreadyExists(_) => (S::CONFLICT, "invalid_request_error", "already_exists", msg),
        Error::IdempotencyConflict(_) => (S::CONFLICT, "invalid_request_error", "idempotency_conflict", msg),
        Error::FailedPrecondition(_) => (S::CONFLICT, "invalid_request_error", "failed_precondition", msg),
        Error::QuotaExceeded { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", "quota_exceeded", msg),
        Error::LimitReached(limit) => (S::TOO_MANY_REQUESTS, "rate_limit_error", limit.code(), msg),
        Error::NotImplemented(_) => (S::NOT_IMPLEMENTED, "invalid_request_error", "not_implemented", msg),
        Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "api_error", "unavailable", msg),
        Error::BodyStalled(_) => (S::REQUEST_TIMEOUT, "invalid_request_error", "request_timeout", msg),
        Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "api_error", "internal_error", msg),
        Error::Upstream(upstream) => match upstream.as_ref() {
            UpstreamError::Credentials { .. } => (S::SERVICE_UNAVAILABLE, "api_error", "upstream_credentials", msg),
            UpstreamError::Unreachable { .. } => (S::BAD_GATEWAY, "api_error", "upstream_unreachable", msg),
            UpstreamError::Unauthorized { .. } => (S::BAD_GATEWAY, "api_error", "upstream_unauthorized", msg),
            UpstreamError::Stalled { .. } => (S::GATEWAY_TIMEOUT, "api_error", "upstream_timeout", msg),
            UpstreamError::Status { status, message, .. } => {
                let status = S::from_u16(*status).unwrap_or(S::BAD_GATEWAY);
                let kind = match status.as_u16() {
                    400 | 409 | 413 | 422 => "invalid_request_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    429 => "rate_limit_error",
                    _ => "api_error",
                };
                (status, kind, "upstream_error", message.clone())
            }
        },
    }
}

/// The OpenAI-style reply to `err` under `classify`, with an upstream's `Retry-After` kept.
pub(crate) fn openai_response(
    err: Error,
    classify: fn(&Error) -> (StatusCode, &'static str, &'static str, String),
) -> Response {
    let (status, kind, code, message) = classify(&err);
    let body = ErrorEnvelope { error: ErrorBody { message, kind: kind.into(), code: code.into() } };
    let mut response = (status, Json(body)).into_response();
    if let Error::Upstream(upstream) = &err {
        if let UpstreamError::Status { retry_after: Some(after), .. } = upstream.as_ref() {
            if let Ok(value) = axum::http::HeaderValue::from_str(after) {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
            }
        }
    }
    if let Error::Unavailable(why) = &err {
        let seconds = axum::http::HeaderValue::from(why.retry_after_seconds());
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds);
    }
    response.extensions_mut().insert(AnsweredError::new(err));
    response
}

/// The HTTP status this surface answers `err` with (for the OpenAPI description).
pub(crate) fn status_of(err: &Error) -> StatusCode {
    classify(err).0
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        openai_response(self.0, classify)
    }
}

/// An error on the chat completions route: OpenAI's envelope, with Google's wording for files a caller
/// cannot use.
pub(crate) struct ChatError(Error);

impl<E: Into<Error>> From<E> for ChatError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

fn chat_classify(err: &Error) -> (StatusCode, &'static str, &'static str, String) {
    match err {
        Error::FileNotFound(id) => (
            StatusCode::FORBIDDEN,
            "permission_error",
            "file_not_found",
            format!("You do not have permission to access the File {id} or it may not exist."),
        ),
        Error::FailedPrecondition(message) => {
            (StatusCode::BAD_REQUEST, "invalid_request_error", "failed_precondition", message.clone())
        }
        other => classify(other),
    }
}

/// The HTTP status the chat route answers `err` with (for the OpenAPI description).
pub(crate) fn chat_status_of(err: &Error) -> StatusCode {
    chat_classify(err).0
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        openai_response(self.0, chat_classify)
    }
}

/// The caller's project on an import route (OpenAI-style errors).
pub(crate) struct ImportCaller(pub ProjectId);

/// The caller's project on an OpenAI route (`/v1/chat/completions`).
pub(crate) struct ChatCaller(pub ProjectId);

impl FromRequestParts<HttpState> for ImportCaller {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, OpenAiError> {
        Ok(Self(import_project(state, parts).await?))
    }
}

impl FromRequestParts<HttpState> for ChatCaller {
    type Rejection = ChatError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ChatError> {
        Ok(Self(import_project(state, parts).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_keep_their_machine_code() {
        let (status, kind, code, message) =
            classify(&Error::invalid_field(crate::domain::FieldCode::InvalidSourceUrl, "bad url"));
        assert_eq!(
            (status, kind, code, message.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_source_url", "bad url")
        );
        assert_eq!(classify(&Error::MissingApiKey).0, StatusCode::UNAUTHORIZED);
        assert_eq!(classify(&Error::InvalidApiKey).0, StatusCode::UNAUTHORIZED);
        assert_eq!(classify(&Error::FileNotFound("qfile-x".into())).0, StatusCode::NOT_FOUND);
    }
}
