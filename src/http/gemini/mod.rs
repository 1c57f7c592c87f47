//! The Gemini Files API surface, as the official SDKs speak it (where filegate differs from Google:
//! `docs/api-quirks.md`).

pub mod error;
mod files;
mod multipart;
mod session;
pub mod upload;
pub mod view;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

pub use error::{GeminiError, UploadUrlError};

use crate::app::AppState;
use crate::error::Error;
use crate::http::extract::GPath;

pub use crate::domain::API_VERSIONS as VERSIONS;

/// An unknown version answers like an unknown route.
pub fn check_version(version: &str) -> Result<(), GeminiError> {
    if VERSIONS.contains(&version) { Ok(()) } else { Err(not_found()) }
}

pub fn not_found() -> GeminiError {
    GeminiError(Error::UnknownRoute)
}

/// `GET /{v}/files`
pub async fn list(State(app): State<AppState>, GPath(version): GPath<String>, req: Request) -> Response {
    respond(async {
        check_version(&version)?;
        files::list(&app, &req.into_parts().0).await
    })
    .await
}

/// `POST /{v}/files` on the Gemini surface: Google's "metadata-only create", which the SDKs never use.
pub fn create_without_bytes(version: &str) -> GeminiError {
    if let Err(e) = check_version(version) {
        return e;
    }
    GeminiError(Error::NotImplemented(format!(
        "Creating a file without its bytes is not supported: upload it with POST /upload/{version}/files, \
         or import a URL with POST /v1/files {{\"source_url\": …}}."
    )))
}

/// `POST /{v}/files:register`
pub async fn register(State(app): State<AppState>, GPath(version): GPath<String>, req: Request) -> Response {
    respond(async {
        check_version(&version)?;
        let (parts, body) = req.into_parts();
        files::register(&app, &parts, body).await
    })
    .await
}

/// `GET /{v}/files/{id}` and `GET /{v}/files/{id}:download`. The colon form is one path segment, so it
/// is split here rather than routed.
pub async fn get(
    State(app): State<AppState>,
    GPath((version, segment)): GPath<(String, String)>,
    req: Request,
) -> Response {
    respond(async {
        check_version(&version)?;
        let parts = req.into_parts().0;
        match segment.split_once(':') {
            None => files::get(&app, &parts, &segment).await,
            Some((id, "download")) => files::download(&app, &parts, id).await,
            Some(_) => Err(not_found()),
        }
    })
    .await
}

/// `DELETE /{v}/files/{id}`
pub async fn delete(
    State(app): State<AppState>,
    GPath((version, id)): GPath<(String, String)>,
    req: Request,
) -> Response {
    respond(async {
        check_version(&version)?;
        files::delete(&app, &req.into_parts().0, &id).await
    })
    .await
}

async fn respond(result: impl Future<Output = Result<Response, GeminiError>>) -> Response {
    result.await.unwrap_or_else(IntoResponse::into_response)
}
