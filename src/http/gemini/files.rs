//! Get, list, delete and download on `/{v}/files…`.

use axum::Json;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::{FileId, ProjectId};
use crate::error::Error;
use crate::http::dialect::google::GeminiError;
use crate::http::download::file_bytes;
use crate::http::state::Handles;
use crate::wire::gemini::ListFilesResponse;

type Result<T> = std::result::Result<T, GeminiError>;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

pub async fn list(app: &Handles, project: ProjectId, parts: &Parts) -> Result<Response> {
    let query: ListQuery = query_params(parts)?;
    let page_size = query
        .page_size
        .map(|s| s.parse::<i64>().map_err(|_| Error::invalid(format!("Invalid value for pageSize: \"{s}\""))))
        .transpose()?;
    let (files, next_page_token) = app.files.list(&project, page_size, query.page_token.as_deref()).await?;
    let files = files.iter().map(|f| crate::http::dialect::google::view::gemini_file(app, f)).collect();
    Ok(Json(ListFilesResponse { files, next_page_token }).into_response())
}

pub async fn get(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    let file = app.files.get(&project, &FileId::from_path(id)).await?;
    Ok(Json(crate::http::dialect::google::view::gemini_file(app, &file)).into_response())
}

/// Replies `{}` with 200: the Python SDK parses the body and rejects a 204.
pub async fn delete(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    app.files.delete(&project, &FileId::from_path(id)).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// The bytes of an ACTIVE file, whole (200) or one `Range` (206).
pub async fn download(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::gemini_project(app, parts).await?;
    Ok(file_bytes(app, &project, parts, &FileId::from_path(id)).await?)
}

/// `files:register {"uris": ["gs://…"]}` → `{"files": [File…]}`: objects in the caller's bucket become files
/// without a copy (the SDK also sends a Google token, for Google's service; filegate reads the objects with
/// its own credentials, from the buckets its operator allows).
pub async fn register(app: &Handles, project: ProjectId, body: axum::body::Body) -> Result<Response> {
    #[derive(Deserialize)]
    struct RegisterRequest {
        uris: Vec<String>,
    }
    let bytes = crate::http::body::read_to_limit(body, 256 * 1024, || {
        Error::invalid("The request is larger than 256 KiB; register at most 100 objects per call.")
    })
    .await?;
    let request: RegisterRequest = crate::http::body::parse_json(&bytes).map_err(|e| {
        Error::invalid(format!("Invalid JSON payload received: expected {{\"uris\": [\"gs://…\"]}} ({e})."))
    })?;
    let files = app.registrar.register(&project, request.uris).await?;
    let files: Vec<_> = files.iter().map(|f| crate::http::dialect::google::view::gemini_file(app, f)).collect();
    Ok(Json(serde_json::json!({ "files": files })).into_response())
}

fn query_params<T: serde::de::DeserializeOwned + Default>(parts: &Parts) -> Result<T> {
    match parts.uri.query() {
        None => Ok(T::default()),
        Some(_) => axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|e| Error::invalid(format!("Invalid query string: {}", e.body_text())).into()),
    }
}
