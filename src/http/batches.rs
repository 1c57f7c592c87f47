//! The Batch API as google-genai and @google/genai speak it in Gemini API mode (`client.batches.*`):
//! `POST /{v}/models/{model}:batchGenerateContent` (routed from the model route), and
//! `/{v}/batches[/{id}[:cancel]]`. Handlers only read the request; `services::batches` does the rest.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::dialect::google::{self, GPath, GQuery, GeminiCaller, GeminiError, PageQuery, Version};
use super::state::HttpState;

async fn answer(result: impl Future<Output = Result<Response, GeminiError>>) -> Response {
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /{v}/models/{model}:batchGenerateContent` (routed here by `routes.rs`).
pub async fn create(app: HttpState, version: &str, model: &str, req: Request) -> Response {
    answer(async {
        google::check_version(version)?;
        let (parts, body) = req.into_parts();
        let project = crate::http::auth::gemini_project(&app, &parts).await?;
        let body = google::read_json_object(body).await?;
        Ok(Json(app.batches.create(project, model, body).await?).into_response())
    })
    .await
}

/// `GET /{v}/batches`
pub async fn list(
    State(app): State<HttpState>,
    _: Version,
    GeminiCaller(project): GeminiCaller,
    GQuery(query): GQuery<PageQuery>,
) -> Response {
    answer(async {
        let list = app.batches.list(&project, query.page_size, query.page_token.as_deref()).await?;
        Ok(Json(list).into_response())
    })
    .await
}

/// `GET /{v}/batches/{id}`
pub async fn get(
    State(app): State<HttpState>,
    GPath((version, id)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        Ok(Json(app.batches.get(&project, &id).await?).into_response())
    })
    .await
}

/// `POST /{v}/batches/{id}:cancel` (the colon form is one path segment).
pub async fn cancel(
    State(app): State<HttpState>,
    GPath((version, segment)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        let id = segment.strip_suffix(":cancel").ok_or_else(google::not_found)?;
        Ok(Json(app.batches.cancel(&project, id).await?).into_response())
    })
    .await
}

/// `DELETE /{v}/batches/{id}`
pub async fn delete(
    State(app): State<HttpState>,
    GPath((version, id)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        Ok(Json(app.batches.delete(&project, &id).await?).into_response())
    })
    .await
}
