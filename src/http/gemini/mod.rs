//! The Gemini Files API surface, as the official SDKs speak it (where filegate differs from Google:
//! `docs/api-quirks.md`).

pub(crate) mod files;
mod headers;
mod multipart;
#[cfg(test)]
mod protocol_tests;
mod session;
pub mod upload;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

pub use crate::http::dialect::google::{GeminiError, UploadUrlError, check_version, not_found};

use crate::error::Error;
use crate::http::dialect::google::{GPath, GeminiCaller, Version};
use crate::http::state::HttpState;

/// `GET /{v}/files` (the route shares `v1` with the OpenAI surface: `http/routes.rs` picks).
pub(crate) async fn list_for(app: &HttpState, project: crate::domain::ProjectId, parts: &Parts) -> Response {
    respond(files::list(app, project, parts)).await
}

/// `POST /{v}/files` on the Gemini surface: Google's "metadata-only create", which the SDKs never use.
pub fn create_without_bytes(version: &str) -> GeminiError {
    if let Err(e) = check_version(version) {
        return e;
    }
    GeminiError::Failed(Error::NotImplemented(format!(
        "Creating a file without its bytes is not supported: upload it with POST /upload/{version}/files, \
         or import a URL with POST /v1/files {{\"source_url\": …}}."
    )))
}

/// `POST /{v}/files:register`
pub(crate) async fn register(
    State(app): State<HttpState>,
    _: Version,
    GeminiCaller(project): GeminiCaller,
    req: Request,
) -> Response {
    respond(files::register(&app, project, req.into_body())).await
}

/// `GET /{v}/files/{id}` and `GET /{v}/files/{id}:download`. The colon form is one path segment, so it
/// is split here rather than routed.
pub async fn get(
    State(app): State<HttpState>,
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
    State(app): State<HttpState>,
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
