//! Machine codes: the closed sets of reasons a request or a file can fail for. They are part of the
//! contract — the import surface sends them as `error.code`, the Gemini surface as the `reason` of an
//! `ErrorInfo` detail, a failed file keeps one in the database — so each set is an enum, spelled once,
//! and the compiler finds every place that must handle a new one.

/// An enum of unit variants, each with its wire spelling, and the way back from that spelling.
macro_rules! codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Which field of a request is wrong, and how (`Error::InvalidField`).
    pub enum FieldCode {
        InvalidJson => "invalid_json",
        InvalidType => "invalid_type",
        BodyTooLarge => "body_too_large",
        MissingSourceUrl => "missing_source_url",
        InvalidSourceUrl => "invalid_source_url",
        /// The URL names an address imports may not reach (SSRF guard).
        ForbiddenAddress => "forbidden_address",
        MissingModel => "missing_model",
        InvalidModel => "invalid_model",
        ModelNotAllowed => "model_not_allowed",
        InvalidExpiresIn => "invalid_expires_in",
        InvalidDisplayName => "invalid_display_name",
        InvalidSha256 => "invalid_sha256",
        InvalidIdempotencyKey => "invalid_idempotency_key",
        InvalidWait => "invalid_wait",
        /// A webhook receiver's URI is malformed, not https, or carries credentials.
        InvalidWebhookUri => "invalid_webhook_uri",
    }
}

codes! {
    /// Why a file failed (an import, so far). Stored with the file, so a spelling never changes.
    pub enum FailureCode {
        /// The source could not be reached, or the connection broke.
        SourceUnreachable => "source_unreachable",
        /// The source answered an HTTP error.
        SourceHttpStatus => "source_http_status",
        TooManyRedirects => "too_many_redirects",
        /// The source (or a redirect) resolved to an address imports may not reach.
        ForbiddenAddress => "forbidden_address",
        /// The file is larger than the per-file limit.
        TooLarge => "too_large",
        /// The project's quota cannot hold the file.
        QuotaExceeded => "quota_exceeded",
        UnsupportedMimeType => "unsupported_mime_type",
        /// The bytes do not have the SHA-256 the request promised.
        ChecksumMismatch => "checksum_mismatch",
        /// The import ran out of its total time.
        Timeout => "timeout",
        /// filegate itself failed (storage, database) until the attempts ran out.
        Internal => "internal",
        /// A code this build does not know: written by a newer filegate sharing the database.
        Unknown => "unknown",
    }
}

impl FailureCode {
    /// Reads a stored code; one this build does not know is kept as `Unknown` rather than refused, so
    /// that a node of an older version can still list the files a newer one failed.
    pub fn from_stored(text: &str) -> Self {
        Self::parse(text).unwrap_or(Self::Unknown)
    }
}

/// A per-project limit other than the byte quota, with what the project holds of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Files {
        held: u64,
    },
    OpenUploads {
        open: u64,
    },
    ActiveImports {
        active: u64,
    },
    /// Batch jobs not yet ended (`FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT`).
    RunningBatches {
        running: u64,
    },
    /// Signing secrets replaced within a day that still sign (`services::webhooks`).
    SecretRotations {
        live: u64,
    },
}

impl Limit {
    pub const fn code(self) -> &'static str {
        match self {
            Self::Files { .. } => "too_many_files",
            Self::OpenUploads { .. } => "too_many_uploads",
            Self::ActiveImports { .. } => "too_many_imports",
            Self::RunningBatches { .. } => "too_many_batches",
            Self::SecretRotations { .. } => "too_many_rotations",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files { held } => write!(
                f,
                "The project holds {held} files, the most allowed (FILEGATE_PROJECT_MAX_FILES); delete some or let \
                 them expire."
            ),
            Self::OpenUploads { open } => write!(
                f,
                "The project has {open} open upload sessions, the most allowed (FILEGATE_PROJECT_MAX_OPEN_UPLOADS); \
                 finish or cancel some first."
            ),
            Self::ActiveImports { active } => write!(
                f,
                "The project has {active} imports in flight, the most allowed \
                 (FILEGATE_IMPORT_MAX_ACTIVE_PER_PROJECT); retry when some have finished."
            ),
            Self::RunningBatches { running } => write!(
                f,
                "The project has {running} batch jobs running, the most allowed \
                 (FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT); retry when some have ended, or cancel some."
            ),
            Self::SecretRotations { live } => write!(
                f,
                "This signing secret was rotated {live} times within 24 hours and every replaced secret still \
                 signs until its day is over; rotate again once the oldest has ended."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself_and_spellings_are_unique() {
        for code in FieldCode::ALL {
            assert_eq!(FieldCode::parse(code.as_str()), Some(*code));
        }
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::from_stored(code.as_str()), *code);
        }
        let mut spellings: Vec<_> = FailureCode::ALL.iter().map(|c| c.as_str()).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(spellings.len(), FailureCode::ALL.len());
        assert_eq!(FailureCode::from_stored("written_by_a_newer_version"), FailureCode::Unknown);
    }
}
