//! Domain types: identifiers, names and the file record, with the rules that make them valid.
//! Nothing here performs I/O; values are parsed once at the edge and trusted afterwards.

mod codes;
mod file;
mod glob;
mod ids;
pub mod mime;
mod storage;
mod time;

pub use codes::{FailureCode, FieldCode, Limit};
pub use file::{FileError, FileRecord, FileState, ImportInfo, Origin};
pub use glob::glob_matches;
pub use ids::{ApiKey, FileId, IMPORT_ID_PREFIX, OPENAI_ID_PREFIX, ProjectId, SecretToken, random_alphanumeric};
pub use mime::MediaTypePolicy;
pub use storage::{BlobKey, Staging, StorageKey, new_object_key, registered_key, staging_key};
pub use time::Timestamp;

/// The Gemini API versions the SDKs use: 3.x defaults to `v1`, 2.x uploads to `v1beta`.
/// The longest display name of a file or a batch, in characters (Google's limit), on every surface.
pub const MAX_DISPLAY_NAME_CHARS: usize = 512;

pub const API_VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];
