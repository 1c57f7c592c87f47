//! Context caches as the Gemini SDKs speak to them (`client.caches.*`): `/{v}/cachedContents[/{id}]` in
//! Gemini API mode (and Vertex AI express mode), and `/{v}/projects/{p}/locations/{l}/cachedContents[/{id}]`
//! in Vertex AI mode with a project (whose project and location are the caller's idea of Google's, never
//! filegate's upstream settings). Handlers only read the request; `services::model::caches` does the rest.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::dialect::google::{self, GPath, GQuery, GeminiCaller, GeminiError, PageQuery};
use super::state::HttpState;

/// The path parameters of every cache route (the Vertex AI shaped ones carry a project and location too,
/// which are ignored).
#[derive(Deserialize)]
pub struct CachePath {
    version: String,
    id: Option<String>,
}

impl CachePath {
    /// The version must be one of Google's for either API; a cache is named by its id alone.
    fn check(&self) -> Result<String, GeminiError> {
        if !google::VERSIONS.contains(&self.version.as_str()) {
            google::check_vertex_version(&self.version)?;
        }
        Ok(format!("cachedContents/{}", self.id.as_deref().unwrap_or_default()))
    }
}

async fn answer(result: impl Future<Output = Result<Response, GeminiError>>) -> Response {
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST …/cachedContents`
pub async fn create(
    State(app): State<HttpState>,
    GPath(path): GPath<CachePath>,
    GeminiCaller(project): GeminiCaller,
    req: Request,
) -> Response {
    answer(async {
        path.check()?;
        let body = google::read_json_object(req.into_body()).await?;
        Ok(Json(app.models.create_cache(project, body).await?).into_response())
    })
    .await
}

/// `GET …/cachedContents`
pub async fn list(
    State(app): State<HttpState>,
    GPath(path): GPath<CachePath>,
    GeminiCaller(project): GeminiCaller,
    GQuery(query): GQuery<PageQuery>,
) -> Response {
    answer(async {
        path.check()?;
        let list = app.models.list_caches(&project, query.page_size, query.page_token.as_deref()).await?;
        Ok(Json(list).into_response())
    })
    .await
}

/// `GET …/cachedContents/{id}`
pub async fn get(
    State(app): State<HttpState>,
    GPath(path): GPath<CachePath>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        let name = path.check()?;
        Ok(Json(app.models.get_cache(&project, &name).await?).into_response())
    })
    .await
}

/// `PATCH …/cachedContents/{id}` (`ttl` or `expireTime` only; an `updateMask` is not needed).
pub async fn update(
    State(app): State<HttpState>,
    GPath(path): GPath<CachePath>,
    GeminiCaller(project): GeminiCaller,
    req: Request,
) -> Response {
    answer(async {
        let name = path.check()?;
        let body = google::read_json_object(req.into_body()).await?;
        Ok(Json(app.models.update_cache(&project, &name, body).await?).into_response())
    })
    .await
}

/// `DELETE …/cachedContents/{id}`
pub async fn delete(
    State(app): State<HttpState>,
    GPath(path): GPath<CachePath>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        let name = path.check()?;
        app.models.delete_cache(&project, &name).await?;
        Ok(Json(json!({})).into_response())
    })
    .await
}
