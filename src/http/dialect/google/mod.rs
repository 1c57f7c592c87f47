//! Google's API conventions, shared by every surface that speaks them (Files, models, caches, batches,
//! webhooks, the console): its error format, API versions, extractors that reject in its words, the caller's
//! project, the view of a file. Surfaces import this; it imports no surface.

mod error;
mod extract;
pub mod view;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub(crate) use error::status_of;
pub use error::{GeminiError, RouteRejection, UPLOAD_STATUS, UploadUrlError, status_response};
pub(crate) use extract::GeminiCaller;
pub use extract::{GPath, GQuery, PageQuery, read_json_object};

pub use crate::domain::API_VERSIONS as VERSIONS;

/// An unknown version answers like an unknown route.
pub fn check_version(version: &str) -> Result<(), GeminiError> {
    if VERSIONS.contains(&version) { Ok(()) } else { Err(not_found()) }
}

/// The versions of Vertex AI's API the SDKs use in Vertex mode (`v1beta1` by default, `v1`).
pub const VERTEX_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// An unknown version of a Vertex AI shaped route answers like an unknown route.
pub fn check_vertex_version(version: &str) -> Result<(), GeminiError> {
    if VERTEX_VERSIONS.contains(&version) { Ok(()) } else { Err(not_found()) }
}

pub fn not_found() -> GeminiError {
    GeminiError::Route(RouteRejection::UnknownRoute)
}

/// The `{version}` of a Gemini route: `v1`, `v1beta` or `v1alpha`; any other answers like an unknown
/// route (before the key is looked at, as Google's front end does).
pub struct Version(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Version {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GeminiError> {
        #[derive(serde::Deserialize)]
        struct Params {
            version: String,
        }
        let GPath(Params { version }) = GPath::from_request_parts(parts, state).await?;
        check_version(&version)?;
        Ok(Self(version))
    }
}
