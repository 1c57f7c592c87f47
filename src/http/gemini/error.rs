//! Domain errors as google.rpc.Status JSON: the only place that decides a Gemini status code.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[cfg(test)]
use crate::error::Unavailable;
use crate::error::{Error, UploadError, UpstreamError};
use crate::wire::gemini::{ErrorEnvelope, RpcStatus};

/// An error on a Gemini metadata route or an upload start.
#[derive(Debug)]
pub struct GeminiError(pub Error);

/// An error on an upload URL: the same body, plus `x-goog-upload-status` so that the SDKs stop
/// (`final`, `cancelled`) or, for transient failures where the header is left out, resend the chunk.
#[derive(Debug)]
pub struct UploadUrlError(pub Error);

impl<E: Into<Error>> From<E> for GeminiError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl<E: Into<Error>> From<E> for UploadUrlError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

pub const UPLOAD_STATUS: HeaderName = HeaderName::from_static("x-goog-upload-status");

/// HTTP status, canonical code name, message and details of an error, as Google's service words them
/// where it is known (`docs/api-quirks.md`).
fn classify(err: &Error) -> (StatusCode, &'static str, String, Vec<serde_json::Value>) {
    use StatusCode as S;
    let msg = err.public_message();
    match err {
        Error::InvalidArgument(_) | Error::InvalidField { .. } | Error::FileTooLarge { .. } => {
            (S::BAD_REQUEST, "INVALID_ARGUMENT", msg, vec![])
        }
        Error::FileNotFound(id) => (
            S::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("You do not have permission to access the File {id} or it may not exist."),
            vec![],
        ),
        Error::AlreadyExists(id) => (S::CONFLICT, "ALREADY_EXISTS", format!("files/{id} already exists."), vec![]),
        Error::IdempotencyConflict(_) => (S::CONFLICT, "ABORTED", msg, vec![]),
        Error::QuotaExceeded { .. } | Error::LimitReached { .. } => {
            (S::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", msg, vec![])
        }
        Error::FailedPrecondition(_) => (S::BAD_REQUEST, "FAILED_PRECONDITION", msg, vec![]),
        Error::MissingApiKey => (
            S::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API."
                .into(),
            vec![],
        ),
        Error::InvalidApiKey => (
            S::BAD_REQUEST,
            "INVALID_ARGUMENT",
            msg,
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
            })],
        ),
        Error::Upload(upload) => match upload {
            UploadError::SessionNotFound => (S::NOT_FOUND, "NOT_FOUND", msg, vec![]),
            UploadError::Cancelled | UploadError::AlreadyFinalized => {
                (S::BAD_REQUEST, "FAILED_PRECONDITION", msg, vec![])
            }
            UploadError::ResendMismatch { .. } => (S::CONFLICT, "ABORTED", msg, vec![]),
            UploadError::OffsetMismatch { .. }
            | UploadError::TooManyBytes { .. }
            | UploadError::SizeMismatch { .. }
            | UploadError::BadRequest(_) => (S::BAD_REQUEST, "INVALID_ARGUMENT", msg, vec![]),
        },
        Error::RangeNotSatisfiable { .. } => (S::RANGE_NOT_SATISFIABLE, "OUT_OF_RANGE", msg, vec![]),
        Error::NotImplemented(_) => (S::NOT_IMPLEMENTED, "UNIMPLEMENTED", msg, vec![]),
        Error::UnknownRoute => (S::NOT_FOUND, "NOT_FOUND", msg, vec![]),
        Error::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "UNIMPLEMENTED", msg, vec![]),
        Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "UNAVAILABLE", msg, vec![]),
        Error::BodyStalled(_) => (S::REQUEST_TIMEOUT, "DEADLINE_EXCEEDED", msg, vec![]),
        Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "INTERNAL", msg, vec![]),
        Error::Upstream(upstream) => match upstream.as_ref() {
            UpstreamError::Credentials { .. } => (S::SERVICE_UNAVAILABLE, "UNAVAILABLE", msg, vec![]),
            UpstreamError::Unreachable { .. } | UpstreamError::Unauthorized { .. } => {
                (S::BAD_GATEWAY, "UNAVAILABLE", msg, vec![])
            }
            UpstreamError::Stalled { .. } => (S::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", msg, vec![]),
            // A google.rpc.Status is answered verbatim by `status_response`; anything else in these words.
            UpstreamError::Status { status, .. } => {
                let status = S::from_u16(*status).unwrap_or(S::BAD_GATEWAY);
                (status, code_of_status(status), msg, vec![])
            }
        },
    }
}

/// An upstream's own google.rpc.Status, passed on as it came (the SDKs already parse it), with its
/// `Retry-After`.
fn upstream_reply(status: u16, body: &bytes::Bytes, retry_after: Option<&str>) -> Response {
    let mut response = Response::new(axum::body::Body::from(body.clone()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}

/// The canonical code name Google's services give an HTTP status.
fn code_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// The HTTP status this surface answers `err` with (for the OpenAPI description).
pub(crate) fn status_of(err: &Error) -> StatusCode {
    classify(err).0
}

/// The google.rpc.Status response for `err`.
pub fn status_response(err: &Error) -> Response {
    crate::error::log_server_side(err);
    if let Error::Upstream(upstream) = err {
        if let UpstreamError::Status { status, rpc_body: Some(body), retry_after, .. } = upstream.as_ref() {
            return upstream_reply(*status, body, retry_after.as_deref());
        }
    }
    let (status, code, message, details) = classify(err);
    let body = ErrorEnvelope { error: RpcStatus { code: status.as_u16(), message, status: code.into(), details } };
    let mut response = (status, Json(body)).into_response();
    if let Error::RangeNotSatisfiable { size } = err {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

impl IntoResponse for GeminiError {
    fn into_response(self) -> Response {
        status_response(&self.0)
    }
}

impl IntoResponse for UploadUrlError {
    fn into_response(self) -> Response {
        let mut response = status_response(&self.0);
        if let Some(status) = self.0.upload_status() {
            response.headers_mut().insert(UPLOAD_STATUS, HeaderValue::from_static(status.as_str()));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_answers_like_googles_permission_denied() {
        let (status, code, message, _) = classify(&Error::FileNotFound("abc".into()));
        assert_eq!((status, code), (StatusCode::FORBIDDEN, "PERMISSION_DENIED"));
        assert_eq!(message, "You do not have permission to access the File abc or it may not exist.");
    }

    #[test]
    fn upload_errors_carry_final_transient_ones_carry_nothing() {
        let offset = UploadUrlError(UploadError::OffsetMismatch { expected: 8, got: 16 }.into()).into_response();
        assert_eq!(offset.status(), StatusCode::BAD_REQUEST);
        assert_eq!(offset.headers()[UPLOAD_STATUS], "final");
        let cancelled = UploadUrlError(UploadError::Cancelled.into()).into_response();
        assert_eq!(cancelled.headers()[UPLOAD_STATUS], "cancelled");
        let busy = UploadUrlError(Error::Unavailable(Unavailable::Database("pool".into()))).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().get(UPLOAD_STATUS).is_none());
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let (status, _, message, _) = classify(&Error::internal("disk /secret/path exploded"));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!message.contains("secret"));
    }
}
