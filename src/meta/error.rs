//! What a failure of the metadata store means, whatever the engine.

use crate::error::{Error, Source, Unavailable};

pub type MetaResult<T> = Result<T, MetaError>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A uniqueness rule refused the write: the row exists (a name taken meanwhile, say).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database is busy (locked, a deadlock broken, no free connection): retrying soon will work.
    #[error("the metadata database is busy: {0}")]
    Busy(String),
    /// The database cannot serve (full, read-only, its file gone, unreachable): requests fail with 503
    /// until it can again, which needs no restart.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, a schema mismatch, corrupt data.
    #[error("metadata store error: {0}")]
    Other(#[source] Source),
}

impl MetaError {
    pub fn other(err: impl Into<Source>) -> Self {
        Self::Other(err.into())
    }

    pub fn corrupt(what: &str, value: &str) -> Self {
        Self::other(format!("the metadata store holds an invalid {what}: {value:?}"))
    }
}

/// The domain meaning: busy and unavailable are worth a retry (503); a conflict reaching this far is one no
/// service expected, like any other failure (500).
impl From<MetaError> for Error {
    fn from(err: MetaError) -> Self {
        match err {
            MetaError::Busy(_) | MetaError::Unavailable(_) => Self::Unavailable(Unavailable::Database(err.to_string())),
            MetaError::Conflict(_) | MetaError::Other(_) => Self::Internal(Box::new(err)),
        }
    }
}
