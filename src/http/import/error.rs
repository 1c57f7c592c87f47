//! Domain errors as the OpenAI-style body the import surface's clients parse:
//! `{"error": {"message", "type", "code"}}`. The only place that decides an import status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::wire::import::{ErrorBody, ErrorEnvelope};

#[derive(Debug)]
pub struct ImportApiError(pub Error);

impl<E: Into<Error>> From<E> for ImportApiError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

/// HTTP status, error type, machine code and message.
fn classify(err: &Error) -> (StatusCode, &'static str, &'static str, String) {
    use StatusCode as S;
    let msg = err.to_string();
    match err {
        Error::InvalidField { code, .. } => (S::BAD_REQUEST, "invalid_request_error", code, msg),
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
        Error::AlreadyExists(_) => (S::CONFLICT, "invalid_request_error", "already_exists", msg),
        Error::IdempotencyConflict(_) => (S::CONFLICT, "invalid_request_error", "idempotency_conflict", msg),
        Error::FailedPrecondition(_) => (S::CONFLICT, "invalid_request_error", "failed_precondition", msg),
        Error::QuotaExceeded { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", "quota_exceeded", msg),
        Error::LimitReached { code, .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", code, msg),
        Error::NotImplemented(_) => (S::NOT_IMPLEMENTED, "invalid_request_error", "not_implemented", msg),
        Error::UnknownRoute => (S::NOT_FOUND, "not_found_error", "unknown_route", msg),
        Error::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed", msg),
        Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "api_error", "unavailable", msg),
        Error::BodyStalled(_) => (S::REQUEST_TIMEOUT, "invalid_request_error", "request_timeout", msg),
        Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "api_error", "internal_error", "Internal error.".into()),
    }
}

/// The HTTP status this surface answers `err` with (for the OpenAPI description).
pub(crate) fn status_of(err: &Error) -> StatusCode {
    classify(err).0
}

impl IntoResponse for ImportApiError {
    fn into_response(self) -> Response {
        crate::error::log_server_side(&self.0);
        let (status, kind, code, message) = classify(&self.0);
        let body = ErrorEnvelope { error: ErrorBody { message, kind: kind.into(), code: code.into() } };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_keep_their_machine_code() {
        let (status, kind, code, message) =
            classify(&Error::InvalidField { code: "invalid_source_url", message: "bad url".into() });
        assert_eq!(
            (status, kind, code, message.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_source_url", "bad url")
        );
        assert_eq!(classify(&Error::MissingApiKey).0, StatusCode::UNAUTHORIZED);
        assert_eq!(classify(&Error::InvalidApiKey).0, StatusCode::UNAUTHORIZED);
        assert_eq!(classify(&Error::FileNotFound("qfile-x".into())).0, StatusCode::NOT_FOUND);
    }
}
