//! Domain errors as google.rpc.Status JSON: the only place that decides a Gemini status code.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::Limit;
#[cfg(test)]
use crate::error::Unavailable;
use crate::error::{Error, UploadError, UpstreamError};
use crate::http::AnsweredError;
use crate::wire::gemini::{ErrorEnvelope, RpcStatus};

/// An error on a Gemini metadata route or an upload start.
#[derive(Debug)]
pub enum GeminiError {
    /// What a service (or the HTTP layer, for a malformed request) refused.
    Failed(Error),
    /// A request no route takes; no service was asked.
    Route(RouteRejection),
}

/// Requests that name no operation: an unknown path or API version, or a method the path does not take.
/// HTTP's concern, not the domain's, so they are answered here, in Google's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRejection {
    UnknownRoute,
    MethodNotAllowed,
}

/// An error on an upload URL: the same body, plus `x-goog-upload-status` so that the SDKs stop
/// (`final`, `cancelled`) or, for transient failures where the header is left out, resend the chunk.
#[derive(Debug)]
pub struct UploadUrlError(pub Error);

impl<E: Into<Error>> From<E> for GeminiError {
    fn from(err: E) -> Self {
        Self::Failed(err.into())
    }
}

impl From<RouteRejection> for GeminiError {
    fn from(rejection: RouteRejection) -> Self {
        Self::Route(rejection)
    }
}

impl<E: Into<Error>> From<E> for UploadUrlError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

pub const UPLOAD_STATUS: HeaderName = HeaderName::from_static("x-goog-upload-status");

/// How one error is answered.
struct Answer {
    status: StatusCode,
    /// The canonical code name (`PERMISSION_DENIED`).
    code: &'static str,
    message: String,
    /// The `reason` of an `ErrorInfo` detail, for errors a client may want to tell apart beyond the
    /// status (two 403s, say: a missing file and a missing key). Google's own reasons keep Google's domain;
    /// filegate's are in the `filegate` domain, which the SDKs ignore and filegate's CLI reads.
    reason: Option<(&'static str, &'static str)>,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self { status, code, message, reason: None }
    }

    fn reason(mut self, domain: &'static str, reason: &'static str) -> Self {
        self.reason = Some((domain, reason));
        self
    }

    fn details(&self) -> Vec<serde_json::Value> {
        let Some((domain, reason)) = self.reason else { return vec![] };
        let mut info = json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain});
        if domain == GOOGLE {
            info["metadata"] = json!({"service": "generativelanguage.googleapis.com"});
        }
        vec![info]
    }
}

const GOOGLE: &str = "googleapis.com";
const FILEGATE: &str = "filegate";

/// HTTP status, canonical code name, message and details of an error, as Google's service words them
/// where it is known (`docs/api-quirks.md`).
fn classify(err: &Error) -> Answer {
    use StatusCode as S;
    let msg = err.public_message();
    let answer = |status, code, message| Answer::new(status, code, message);
    match err {
        Error::InvalidArgument(_) | Error::InvalidField { .. } => answer(S::BAD_REQUEST, "INVALID_ARGUMENT", msg),
        Error::FileTooLarge { .. } => {
            answer(S::BAD_REQUEST, "INVALID_ARGUMENT", msg).reason(FILEGATE, "FILE_TOO_LARGE")
        }
        Error::FileNotFound(id) => answer(
            S::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("You do not have permission to access the File {id} or it may not exist."),
        )
        .reason(FILEGATE, "FILE_NOT_FOUND"),
        // Google's words for a cache that is missing or not the caller's.
        Error::CacheNotFound(_) => {
            answer(S::FORBIDDEN, "PERMISSION_DENIED", "CachedContent not found (or permission denied)".into())
                .reason(FILEGATE, "CACHE_NOT_FOUND")
        }
        Error::BatchNotFound(name) => {
            answer(S::NOT_FOUND, "NOT_FOUND", format!("Batch {name} not found.")).reason(FILEGATE, "BATCH_NOT_FOUND")
        }
        Error::PermissionDenied(_) => answer(S::FORBIDDEN, "PERMISSION_DENIED", msg),
        Error::WebhookNotFound(name) => answer(S::NOT_FOUND, "NOT_FOUND", format!("Webhook {name} not found."))
            .reason(FILEGATE, "WEBHOOK_NOT_FOUND"),
        Error::AlreadyExists(id) => answer(S::CONFLICT, "ALREADY_EXISTS", format!("files/{id} already exists.")),
        Error::IdempotencyConflict(_) => answer(S::CONFLICT, "ABORTED", msg),
        Error::QuotaExceeded { .. } => {
            answer(S::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", msg).reason(FILEGATE, "QUOTA_EXCEEDED")
        }
        Error::LimitReached(limit) => {
            answer(S::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", msg).reason(FILEGATE, limit_reason(*limit))
        }
        Error::FailedPrecondition(_) => answer(S::BAD_REQUEST, "FAILED_PRECONDITION", msg),
        Error::MissingApiKey => answer(
            S::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API."
                .into(),
        )
        .reason(GOOGLE, "CREDENTIALS_MISSING"),
        Error::InvalidApiKey => {
            answer(S::BAD_REQUEST, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.".into())
                .reason(GOOGLE, "API_KEY_INVALID")
        }
        Error::Upload(upload) => match upload {
            UploadError::SessionNotFound => answer(S::NOT_FOUND, "NOT_FOUND", msg),
            UploadError::Cancelled | UploadError::AlreadyFinalized => {
                answer(S::BAD_REQUEST, "FAILED_PRECONDITION", msg)
            }
            UploadError::ResendMismatch { .. } => answer(S::CONFLICT, "ABORTED", msg),
            UploadError::OffsetMismatch { .. }
            | UploadError::TooManyBytes { .. }
            | UploadError::SizeMismatch { .. }
            | UploadError::BadRequest(_) => answer(S::BAD_REQUEST, "INVALID_ARGUMENT", msg),
        },
        Error::RangeNotSatisfiable { .. } => answer(S::RANGE_NOT_SATISFIABLE, "OUT_OF_RANGE", msg),
        Error::NotImplemented(_) => answer(S::NOT_IMPLEMENTED, "UNIMPLEMENTED", msg),
        Error::Unavailable(_) => answer(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", msg),
        Error::BodyStalled(_) => answer(S::REQUEST_TIMEOUT, "DEADLINE_EXCEEDED", msg),
        Error::Internal(_) => answer(S::INTERNAL_SERVER_ERROR, "INTERNAL", msg),
        Error::Upstream(upstream) => match upstream.as_ref() {
            UpstreamError::Credentials { .. } => answer(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", msg),
            UpstreamError::Unreachable { .. } | UpstreamError::Unauthorized { .. } => {
                answer(S::BAD_GATEWAY, "UNAVAILABLE", msg)
            }
            UpstreamError::Stalled { .. } => answer(S::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", msg),
            // A google.rpc.Status is answered verbatim by `status_response`; anything else in these words.
            UpstreamError::Status { status, .. } => {
                let status = S::from_u16(*status).unwrap_or(S::BAD_GATEWAY);
                answer(status, code_of_status(status), msg)
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

fn limit_reason(limit: Limit) -> &'static str {
    match limit {
        Limit::Files { .. } => "TOO_MANY_FILES",
        Limit::OpenUploads { .. } => "TOO_MANY_UPLOADS",
        Limit::ActiveImports { .. } => "TOO_MANY_IMPORTS",
        Limit::RunningBatches { .. } => "TOO_MANY_BATCHES",
        Limit::SecretRotations { .. } => "TOO_MANY_ROTATIONS",
    }
}

/// The HTTP status this surface answers `err` with (for the OpenAPI description).
pub(crate) fn status_of(err: &Error) -> StatusCode {
    classify(err).status
}

impl RouteRejection {
    fn answer(self) -> Answer {
        match self {
            Self::UnknownRoute => Answer::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.".into()),
            Self::MethodNotAllowed => Answer::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNIMPLEMENTED",
                "The HTTP method is not allowed on this path.".into(),
            ),
        }
    }

    /// The HTTP status of the rejection (for the OpenAPI description).
    pub(crate) fn status(self) -> StatusCode {
        self.answer().status
    }
}

fn rpc_reply(answer: Answer) -> Response {
    let details = answer.details();
    let Answer { status, code, message, .. } = answer;
    let body = ErrorEnvelope { error: RpcStatus { code: status.as_u16(), message, status: code.into(), details } };
    (status, Json(body)).into_response()
}

/// The google.rpc.Status response for `err`, which it carries for the access log (`AnsweredError`).
pub fn status_response(err: Error) -> Response {
    let mut response = match &err {
        Error::Upstream(upstream) => match upstream.as_ref() {
            UpstreamError::Status { status, rpc_body: Some(body), retry_after, .. } => {
                upstream_reply(*status, body, retry_after.as_deref())
            }
            _ => rpc_reply(classify(&err)),
        },
        Error::RangeNotSatisfiable { size } => {
            let mut response = rpc_reply(classify(&err));
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        Error::Unavailable(why) => {
            let mut response = rpc_reply(classify(&err));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(why.retry_after_seconds()));
            response
        }
        _ => rpc_reply(classify(&err)),
    };
    response.extensions_mut().insert(AnsweredError::new(err));
    response
}

impl IntoResponse for RouteRejection {
    fn into_response(self) -> Response {
        rpc_reply(self.answer())
    }
}

impl IntoResponse for GeminiError {
    fn into_response(self) -> Response {
        match self {
            Self::Failed(err) => status_response(err),
            Self::Route(rejection) => rejection.into_response(),
        }
    }
}

impl IntoResponse for UploadUrlError {
    fn into_response(self) -> Response {
        let upload_status = self.0.upload_status();
        let mut response = status_response(self.0);
        if let Some(status) = upload_status {
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
        let answer = classify(&Error::FileNotFound("abc".into()));
        assert_eq!((answer.status, answer.code), (StatusCode::FORBIDDEN, "PERMISSION_DENIED"));
        assert_eq!(answer.message, "You do not have permission to access the File abc or it may not exist.");
        assert_eq!(answer.details()[0]["reason"], "FILE_NOT_FOUND", "the CLI tells it from a missing key by this");
        assert_eq!(classify(&Error::MissingApiKey).details()[0]["reason"], "CREDENTIALS_MISSING");
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
        let answer = classify(&Error::internal("disk /secret/path exploded"));
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!answer.message.contains("secret"));
    }
}
