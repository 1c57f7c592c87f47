//! What a failure of the blob store means, whatever the store: an object that is not there, a store that
//! cannot serve now (full, read-only, unreachable, throttling: worth a retry), or anything else.

use crate::error::{Error, Unavailable};
use crate::outage::Outage;

pub type BlobResult<T> = Result<T, BlobError>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no object {key}")]
    NotFound { key: String },
    /// The store cannot take or give bytes now; it clears by itself once the operator fixes it.
    #[error("{0}")]
    Unavailable(String),
    /// A bug, a refused key, a configuration the store rejects.
    #[error("{0}")]
    Other(String),
}

impl BlobError {
    pub fn other(err: impl std::fmt::Display) -> Self {
        Self::Other(err.to_string())
    }
}

impl From<object_store::Error> for BlobError {
    fn from(err: object_store::Error) -> Self {
        use object_store::Error as E;
        match err {
            E::NotFound { path, .. } => Self::NotFound { key: path },
            E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => Self::Other(err.to_string()),
            E::UnknownConfigurationKey { .. } | E::JoinError { .. } => Self::Other(err.to_string()),
            // The network, the provider's 5xx after retries, throttling, credentials that stopped working,
            // and a local file system that cannot write.
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<Outage> for BlobError {
    fn from(outage: Outage) -> Self {
        match outage {
            Outage::Down => Self::Unavailable("the blob store is not answering (its host stopped responding)".into()),
            Outage::Deadline(deadline) => {
                Self::Unavailable(format!("the blob store did not answer within {deadline:?}"))
            }
        }
    }
}

/// Storage that cannot take writes now (full, read-only, failing) is worth a retry; anything else (a
/// permission, a bug) is not.
impl From<std::io::Error> for BlobError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        const EIO: i32 = 5;
        match err.kind() {
            K::NotFound => Self::NotFound { key: err.to_string() },
            K::StorageFull | K::QuotaExceeded => Self::Unavailable("the disk is full".into()),
            K::ReadOnlyFilesystem => Self::Unavailable("the disk is read-only".into()),
            K::TimedOut | K::Interrupted | K::ResourceBusy => Self::Unavailable(err.to_string()),
            _ if err.raw_os_error() == Some(EIO) => Self::Unavailable(err.to_string()),
            _ => Self::Other(err.to_string()),
        }
    }
}

/// The domain meaning: an object the database names but the store lacks is lost data (500); a store
/// that cannot serve is a 503 naming only "file storage" to the caller.
impl From<BlobError> for Error {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::Unavailable(why) => Self::Unavailable(Unavailable::Storage(why)),
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_that_cannot_take_writes_is_unavailable_and_a_missing_object_is_lost_data() {
        use std::io::{Error as Io, ErrorKind as K};
        for err in [Io::from(K::StorageFull), Io::from(K::ReadOnlyFilesystem), Io::from_raw_os_error(5)] {
            assert!(matches!(Error::from(BlobError::from(err)), Error::Unavailable(Unavailable::Storage(_))));
        }
        assert!(matches!(BlobError::from(Io::from(K::NotFound)), BlobError::NotFound { .. }));
        assert!(matches!(Error::from(BlobError::from(Io::from(K::NotFound))), Error::Internal(_)));
        assert!(matches!(Error::from(BlobError::from(Io::from(K::PermissionDenied))), Error::Internal(_)));
    }
}
