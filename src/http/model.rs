//! The model routes: `POST /{v}/models/{model}:{generateContent|streamGenerateContent|countTokens}` as the
//! Gemini SDKs send them, and `POST /v1/chat/completions` as the `openai` SDKs do. Both authenticate with
//! filegate keys and hand the call to `services::model`; replies stream back as they arrive.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::Value;

use super::dialect::google::{self, GPath, GeminiError};
use super::dialect::openai::{ChatCaller, ChatError};
use crate::error::Error;
use crate::http::state::HttpState;
use crate::services::model::chat::ChatReply;
use crate::services::model::responses::ResponsesReply;
use crate::services::model::{ModelCall, ModelMethod, ModelReply, REQUEST_MAX_BYTES, body_too_large};
use crate::wire::openai::ChatRequest;

/// `POST /{v}/models/{model}:{method}`: the body passes through untouched but for file references.
pub async fn native(
    State(app): State<HttpState>,
    GPath((version, target)): GPath<(String, String)>,
    req: Request,
) -> Response {
    let checked = google::check_version(&version);
    forward(app, checked, &target, req).await.unwrap_or_else(IntoResponse::into_response)
}

/// The path parameters of the Vertex AI shaped model routes.
#[derive(serde::Deserialize)]
pub struct VertexModelPath {
    version: String,
    target: String,
}

/// `POST /{v}/publishers/google/models/{model}:{method}`, and the same under
/// `/{v}/projects/{project}/locations/{location}/`: the paths google-genai and @google/genai build in Vertex
/// AI mode (`vertexai=True`), express mode (an API key) and with a project and location. Served like
/// [`native`]: the caller's project and location are the caller's idea of Google's, not filegate's
/// upstream settings, and never replace them; the call goes wherever `FILEGATE_UPSTREAM` says.
pub async fn vertex_native(
    State(app): State<HttpState>,
    GPath(path): GPath<VertexModelPath>,
    req: Request,
) -> Response {
    let checked = google::check_vertex_version(&path.version);
    forward(app, checked, &path.target, req).await.unwrap_or_else(IntoResponse::into_response)
}

/// A model call. (`:batchGenerateContent` on the Gemini paths is a batch, routed to the batches surface by
/// `routes.rs`; on the Vertex AI shaped paths it is no method filegate knows: Vertex AI's batch jobs are
/// another resource, not served.)
async fn forward(
    app: HttpState,
    version: Result<(), GeminiError>,
    target: &str,
    req: Request,
) -> Result<Response, GeminiError> {
    version?;
    if let Some(refusal) = target.split_once(':').and_then(|(_, method)| unserved_method(method)) {
        return Err(Error::NotImplemented(refusal).into());
    }
    let (model, method) = target
        .split_once(':')
        .and_then(|(model, method)| Some((model, ModelMethod::parse(method)?)))
        .ok_or_else(google::not_found)?;
    let (parts, body) = req.into_parts();
    let project = crate::http::auth::gemini_project(&app, &parts).await?;
    let sse = parts
        .uri
        .query()
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "alt" && v == "sse"));
    let body = google::read_json_object(body).await?;
    let call = ModelCall { project, model: model.to_owned(), method, sse, body, readable_only: false };
    let reply = app.models.call(call).await?;
    Ok(streaming(reply, "application/json"))
}

/// Model methods of Google's that the SDKs reach and filegate does not forward, with what to use instead.
fn unserved_method(method: &str) -> Option<String> {
    let (what, instead) = match method {
        "embedContent" | "batchEmbedContents" => ("Embeddings", "call the Gemini API or Vertex AI directly"),
        "asyncBatchEmbedContent" => (
            "Batch embeddings (client.batches.create_embeddings)",
            "call the Gemini API directly; batches of generateContent requests are served (client.batches.create)",
        ),
        "predict" | "predictLongRunning" => {
            ("Vertex AI's predict methods (embeddings, images, video)", "call Vertex AI directly")
        }
        "generateImages" | "editImage" | "upscaleImage" | "generateVideos" => {
            ("Image and video generation", "call the Gemini API or Vertex AI directly")
        }
        _ => return None,
    };
    Some(format!(
        "{what} are not forwarded by filegate ({method}): {instead}. filegate forwards generateContent, \
         streamGenerateContent and countTokens (docs/models.md)."
    ))
}

/// A reply streamed as it arrives. A failure mid-stream ends the response abruptly: the client sees a
/// truncated body, never a complete-looking one.
fn streaming(reply: ModelReply, default_type: &'static str) -> Response {
    let content_type = reply.content_type.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
    let event_stream = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut response = Response::new(Body::from_stream(reply.body.map(|chunk| chunk.map_err(std::io::Error::other))));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static(default_type)));
    if event_stream {
        sse_headers(&mut response);
    }
    response
}

/// Events are not to be cached, nor held back by a buffering proxy (nginx honours `X-Accel-Buffering`).
fn sse_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(app): State<HttpState>, ChatCaller(project): ChatCaller, req: Request) -> Response {
    let answer = async {
        let bytes = super::body::read_to_limit(req.into_body(), REQUEST_MAX_BYTES as usize, body_too_large).await?;
        let request: ChatRequest = super::body::parse_json(&bytes)
            .map_err(|e| Error::invalid(format!("The request body is not a valid chat completion request: {e}")))?;
        Ok::<_, ChatError>(match app.models.chat(project, request).await? {
            ChatReply::Whole(completion) => Json(completion).into_response(),
            ChatReply::Events(events) => {
                let mut response = Response::new(Body::from_stream(events));
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                sse_headers(&mut response);
                response
            }
        })
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/responses/input_tokens` (`client.responses.input_tokens.count`).
pub async fn count_response_tokens(
    State(app): State<HttpState>,
    ChatCaller(project): ChatCaller,
    req: Request,
) -> Response {
    let answer = async {
        let bytes = super::body::read_to_limit(req.into_body(), REQUEST_MAX_BYTES as usize, body_too_large).await?;
        let request: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("The request body is not valid JSON: {e}")))?;
        Ok::<_, ChatError>(Json(app.models.count_input_tokens(project, request).await?).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/responses` (OpenAI's Responses API), translated like chat completions.
pub async fn responses(State(app): State<HttpState>, ChatCaller(project): ChatCaller, req: Request) -> Response {
    let answer = async {
        let bytes = super::body::read_to_limit(req.into_body(), REQUEST_MAX_BYTES as usize, body_too_large).await?;
        let request: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("The request body is not valid JSON: {e}")))?;
        Ok::<_, ChatError>(match app.models.respond(project, request).await? {
            ResponsesReply::Whole(response) => Json(response).into_response(),
            ResponsesReply::Events(events) => {
                let mut response = Response::new(Body::from_stream(events));
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                sse_headers(&mut response);
                response
            }
        })
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
