//! What a source's answers mean to an import, for the single fetch and the ranged one alike: why an
//! attempt failed, and the `Content-Range` both read.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};

use crate::domain::{FailureCode, FileError};
use crate::services::egress::ForbiddenHost;

/// Why an attempt ended without a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot help: the task fails with this error.
    Permanent(FileError),
    /// Worth another attempt (after `retry_after` if the source asked for it); the error is what the
    /// task fails with when the attempts run out.
    Transient { error: FileError, retry_after: Option<Duration> },
}

impl Failure {
    pub fn permanent(code: FailureCode, message: impl Into<String>) -> Self {
        Self::Permanent(FileError { code, message: message.into() })
    }

    pub fn transient(code: FailureCode, message: impl Into<String>) -> Self {
        Self::Transient { error: FileError { code, message: message.into() }, retry_after: None }
    }
}

/// A connection-level failure: a refused resolution (SSRF guard) is final, anything else transient.
pub fn connect_failure(error: &reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(forbidden) = e.downcast_ref::<ForbiddenHost>() {
            return Failure::permanent(FailureCode::ForbiddenAddress, forbidden.to_string());
        }
        source = e.source();
    }
    let what = if error.is_connect() { "could not connect to the source" } else { "the request to the source failed" };
    Failure::transient(FailureCode::SourceUnreachable, format!("{what}: {}", root_cause(error)))
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL if known).
pub fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}
