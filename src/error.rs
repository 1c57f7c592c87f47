//! The one domain error. Services return it; each API surface maps it once to its own wire format
//! (`http::dialect::google` for google.rpc.Status, `http::dialect::openai` for the OpenAI-style body).

use std::fmt;

use crate::domain::{FieldCode, Limit};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from below the domain (database, disk, network), kept whole for the server log.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message says which field and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// Missing, expired or another project's file: callers cannot tell these apart, on purpose.
    #[error("file {0} not found")]
    FileNotFound(String),
    /// Missing, expired or another project's context cache, alike.
    #[error("cached content {0} not found")]
    CacheNotFound(String),
    /// Missing or another project's batch job, alike.
    #[error("batch {0} not found")]
    BatchNotFound(String),
    /// Missing or another project's webhook, alike.
    #[error("{0} not found")]
    WebhookNotFound(String),
    /// One field of a request is invalid; `code` names the problem for machines (`invalid_source_url`).
    #[error("{message}")]
    InvalidField { code: FieldCode, message: String },
    /// A user-chosen file name is already taken in the project.
    #[error("files/{0} already exists")]
    AlreadyExists(String),
    #[error("the file is {size} bytes, over the limit of {limit} bytes per file")]
    FileTooLarge { size: u64, limit: u64 },
    #[error("project quota exceeded: {requested} bytes requested, {available} bytes available of {quota}")]
    QuotaExceeded { requested: u64, available: u64, quota: u64 },
    /// An Idempotency-Key reused with a different request.
    #[error("the Idempotency-Key \"{0}\" was already used with a different request")]
    IdempotencyConflict(String),
    /// A per-project limit other than the quota is reached.
    #[error("{0}")]
    LimitReached(Limit),
    /// The request is valid but the resource is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the request carries no API key")]
    MissingApiKey,
    #[error("the API key is not valid")]
    InvalidApiKey,
    /// A valid key that may not do this (the console's operator view for a key that is not an operator's).
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A model call the upstream (Vertex AI, the Gemini API) could not serve (boxed: it may carry the
    /// upstream's reply, and every `Result` of the crate should stay small).
    #[error(transparent)]
    Upstream(Box<UpstreamError>),
    #[error("the requested range is not satisfiable for a file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    NotImplemented(String),
    /// The client stopped sending its request body, or sends it too slowly to be worth a connection.
    #[error("{0}")]
    BodyStalled(Stall),
    /// A dependency failed in a way worth retrying (database busy, disk full, another request holding an
    /// upload).
    #[error("temporarily unavailable: {0}")]
    Unavailable(Unavailable),
    #[error("internal error: {0}")]
    Internal(#[source] Source),
}

/// Logs, once, as its reply is written, an error that is the server's side of things: a bug (with its
/// cause, which the client never sees) or a dependency that is failing (which the operator must know of).
/// Errors of the client's making are in the access log's status already.
pub fn log_server_side(err: &Error) {
    match err {
        Error::Internal(source) => tracing::error!(error = %source, "internal error"),
        Error::Unavailable(why) => tracing::warn!(reason = %why, "answering 503"),
        Error::BodyStalled(_) => {}
        Error::Upstream(err) => match err.as_ref() {
            UpstreamError::Status { status, .. } if *status < 500 => {}
            err => tracing::warn!(error = %err, "model upstream failed"),
        },
        _ => {}
    }
}

impl From<UpstreamError> for Error {
    fn from(err: UpstreamError) -> Self {
        Self::Upstream(Box::new(err))
    }
}

impl Error {
    pub fn internal(err: impl Into<Source>) -> Self {
        Self::Internal(err.into())
    }

    /// A retryable condition the caller may be told as it is.
    pub fn retry(words: impl Into<String>) -> Self {
        Self::Unavailable(Unavailable::Retry(words.into()))
    }

    /// What a caller is told: the error's own words, except where they would carry internals (a path, a
    /// URL, a driver's message), which only the log gets.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "Internal error encountered.".into(),
            Self::Unavailable(unavailable) => unavailable.public_message(),
            Self::Upstream(upstream) => upstream.public_message(),
            other => other.to_string(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    pub fn invalid_field(code: FieldCode, message: impl Into<String>) -> Self {
        Self::InvalidField { code, message: message.into() }
    }
}

/// What is unavailable. Callers are told which dependency, never its details (paths, URLs, driver
/// messages): those go to the log, once, with the request id the answer carries.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The metadata database (busy, full, read-only, unreachable); the detail is for the log.
    #[error("the metadata database: {0}")]
    Database(String),
    /// Blob storage (a full or read-only disk, a bucket unreachable or throttling); the detail is for the log.
    #[error("blob storage: {0}")]
    Storage(String),
    /// A condition the caller may be told as it is (another request is writing the upload, say).
    #[error("{0}")]
    Retry(String),
}

impl Unavailable {
    /// How soon a caller should retry (`Retry-After`, in seconds): a dependency's outage is found and
    /// ended within seconds (the database's prober asks every second), a busy upload in less.
    pub const fn retry_after_seconds(&self) -> u32 {
        match self {
            Self::Database(_) | Self::Storage(_) => 2,
            Self::Retry(_) => 1,
        }
    }

    /// What a caller is told.
    pub fn public_message(&self) -> String {
        match self {
            Self::Database(_) => "The metadata database is temporarily unavailable; retry the request.".into(),
            Self::Storage(_) => "File storage is temporarily unavailable; retry the request.".into(),
            Self::Retry(words) => words.clone(),
        }
    }
}

/// How a client failed to send its request body in time (`http/body.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stall {
    /// Nothing arrived for the request idle timeout.
    #[error("The request body sent nothing for {} s.", .0.as_secs())]
    Silent(std::time::Duration),
    /// Less than the minimum rate arrived over a window of waiting for it.
    #[error("The request body arrived at less than {min_bytes_per_second} bytes per second over {} s.", .window.as_secs())]
    TooSlow { min_bytes_per_second: u64, window: std::time::Duration },
}

/// Errors of the resumable upload protocol. Each knows whether it ends the session for the client
/// (`x-goog-upload-status: final` or `cancelled`), see [`UploadError::client_status`].
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload session does not exist or has expired")]
    SessionNotFound,
    #[error("the upload was cancelled")]
    Cancelled,
    #[error("the upload is already finalized")]
    AlreadyFinalized,
    #[error(
        "X-Goog-Upload-Offset is {got}, but the server has {expected} bytes; resume at offset {expected} (send a 'query' command to read it)"
    )]
    OffsetMismatch { expected: u64, got: u64 },
    #[error("the chunk at offset {offset} ({len} bytes) was already received with different bytes")]
    ResendMismatch { offset: u64, len: u64 },
    #[error("the chunk at offset {offset} would exceed the declared size of {declared} bytes")]
    TooManyBytes { declared: u64, offset: u64 },
    #[error("finalize after {received} bytes, but the upload declared {declared} bytes")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("{0}")]
    BadRequest(String),
}

/// Why a model call failed beyond filegate. Each meaning has its own status on every surface, so that an
/// operator can tell a credentials problem (filegate's own) from an upstream that is down or slow, and a
/// client can tell either from its own mistake (the upstream's 4xx, passed on).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// filegate could not obtain an access token (its service account, workload identity or metadata
    /// server): nothing was sent upstream.
    #[error("filegate could not obtain Google credentials for {upstream}: {detail}")]
    Credentials { upstream: &'static str, detail: String },
    /// No connection, TLS failure, or the connection broke before a reply.
    #[error("{upstream} is unreachable: {detail}")]
    Unreachable { upstream: &'static str, detail: String },
    /// The upstream sent nothing for the idle timeout.
    #[error("{upstream} sent nothing for {} s", .after.as_secs())]
    Stalled { upstream: &'static str, after: std::time::Duration },
    /// The upstream refused filegate's own credentials (401): the operator's problem, not the caller's.
    #[error("{upstream} refused filegate's credentials: {message}")]
    Unauthorized { upstream: &'static str, message: String },
    /// The upstream answered an error status.
    #[error("{upstream} answered {status}: {message}")]
    Status {
        upstream: &'static str,
        status: u16,
        /// The google.rpc.Status code name (`NOT_FOUND`, `PERMISSION_DENIED`), when the body had one.
        code: Option<String>,
        /// The body's `error.message`, or a description of a body that was not a google.rpc.Status.
        message: String,
        /// The body when it is a google.rpc.Status (JSON), kept verbatim for the Gemini surfaces; an HTML
        /// page or other text is never passed on.
        rpc_body: Option<bytes::Bytes>,
        retry_after: Option<String>,
    },
}

impl UpstreamError {
    /// What a caller is told: which upstream and what went wrong, without filegate's endpoints or the
    /// transport's details.
    pub fn public_message(&self) -> String {
        match self {
            Self::Credentials { upstream, .. } => {
                format!("filegate could not obtain Google credentials for {upstream}.")
            }
            Self::Unreachable { upstream, .. } => format!("{upstream} is unreachable."),
            Self::Unauthorized { upstream, .. } => format!("{upstream} refused filegate's credentials."),
            Self::Stalled { .. } | Self::Status { .. } => self.to_string(),
        }
    }
}

/// The `x-goog-upload-status` a client should see with an error on an upload URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    Active,
    Final,
    Cancelled,
}

impl UploadStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Final => "final",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The upload status to send with this error on an upload URL; `None` for transient failures, whose
    /// reply must lack the header so that the Python SDK resends the same chunk.
    pub fn upload_status(&self) -> Option<UploadStatus> {
        match self {
            Self::Upload(UploadError::Cancelled) => Some(UploadStatus::Cancelled),
            Self::Unavailable(_) | Self::Internal(_) | Self::BodyStalled(_) => None,
            _ => Some(UploadStatus::Final),
        }
    }
}

/// Storage that cannot take writes now (full, read-only, failing) is a 503 that clears by itself once the
/// operator fixes the disk; anything else (a missing object, a permission) is a bug or lost data: 500.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        const EIO: i32 = 5;
        match err.kind() {
            K::StorageFull | K::QuotaExceeded => Self::Unavailable(Unavailable::Storage("full".into())),
            K::ReadOnlyFilesystem => Self::Unavailable(Unavailable::Storage("read-only".into())),
            K::TimedOut | K::Interrupted | K::ResourceBusy => Self::Unavailable(Unavailable::Storage(err.to_string())),
            _ if err.raw_os_error() == Some(EIO) => Self::Unavailable(Unavailable::Storage(err.to_string())),
            _ => Self::internal(err),
        }
    }
}

/// An error with its causes: reqwest's own message ("error sending request") says little by itself.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_that_cannot_take_writes_is_unavailable_not_internal() {
        use std::io::{Error as Io, ErrorKind as K};
        for err in [Io::from(K::StorageFull), Io::from(K::ReadOnlyFilesystem), Io::from_raw_os_error(5)] {
            assert!(matches!(Error::from(err), Error::Unavailable(_)));
        }
        assert!(matches!(Error::from(Io::from(K::NotFound)), Error::Internal(_)), "a missing object is lost data");
    }
}
