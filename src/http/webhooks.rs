//! Webhooks as the Gemini API names them, on filegate's keys: `/{v}/webhooks[/{id}[:ping|:rotateSigningSecret]]`
//! and `/{v}/webhooks:rotateProjectSigningSecret` (the secret of per-request webhooks). Handlers only read
//! the request and render the resource; `services::webhooks` does the rest.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dialect::google::{self, GPath, GQuery, GeminiCaller, GeminiError, PageQuery, Version};
use super::state::HttpState;
use crate::domain::FileRecord;
use crate::error::Error;
use crate::meta::Webhook;
use crate::services::webhooks::{RenderFile, WebhookChange};

/// Largest request body: a URI and a few event names.
const MAX_BODY_BYTES: usize = 64 * 1024;

async fn answer(result: impl Future<Output = Result<Response, GeminiError>>) -> Response {
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The resource as the API shows it; the signing secret only when it was just made.
fn view(webhook: &Webhook, new_secret: bool) -> Value {
    let mut view = json!({
        "name": format!("webhooks/{}", webhook.id),
        "uri": webhook.uri,
        "subscribedEvents": webhook.events,
        "state": webhook.state.as_str(),
        "createTime": webhook.created_at.to_rfc3339(),
        "updateTime": webhook.updated_at.to_rfc3339(),
    });
    if new_secret {
        view["newSigningSecret"] = json!(webhook.secrets.current);
    }
    view
}

/// A JSON object body (an empty body is `{}`).
async fn read_object(req: Request) -> Result<serde_json::Map<String, Value>, GeminiError> {
    let too_large = || Error::invalid(format!("The request body is larger than {MAX_BODY_BYTES} bytes."));
    let bytes = super::body::read_to_limit(req.into_body(), MAX_BODY_BYTES, too_large).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(Error::invalid("Invalid JSON payload received: the body must be an object.").into()),
        Err(e) => Err(Error::invalid(format!("Invalid JSON payload received. {e}")).into()),
    }
}

fn string_field(fields: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, GeminiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(format!("{name} must be a string.")).into()),
    }
}

fn events_field(fields: &serde_json::Map<String, Value>) -> Result<Option<Vec<String>>, GeminiError> {
    match fields.get("subscribedEvents") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|_| Error::invalid("subscribedEvents must be a list of event names.").into()),
    }
}

/// `POST /{v}/webhooks`
pub async fn create(
    State(app): State<HttpState>,
    _: Version,
    GeminiCaller(project): GeminiCaller,
    req: Request,
) -> Response {
    answer(async {
        let fields = read_object(req).await?;
        let events = events_field(&fields)?.unwrap_or_default();
        let webhook = app.webhooks.create(&project, string_field(&fields, "uri")?, events).await?;
        Ok(Json(view(&webhook, true)).into_response())
    })
    .await
}

/// `GET /{v}/webhooks`
pub async fn list(
    State(app): State<HttpState>,
    _: Version,
    GeminiCaller(project): GeminiCaller,
    GQuery(query): GQuery<PageQuery>,
) -> Response {
    answer(async {
        let (page, next) = app.webhooks.list(&project, query.page_size, query.page_token.as_deref()).await?;
        let mut body = json!({ "webhooks": page.iter().map(|w| view(w, false)).collect::<Vec<_>>() });
        if let Some(token) = next {
            body["nextPageToken"] = json!(token);
        }
        Ok(Json(body).into_response())
    })
    .await
}

/// `GET /{v}/webhooks/{id}`
pub async fn get(
    State(app): State<HttpState>,
    GPath((version, id)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        Ok(Json(view(&app.webhooks.get(&project, &id).await?, false)).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateQuery {
    update_mask: Option<String>,
}

/// `PATCH /{v}/webhooks/{id}[?updateMask=uri,subscribedEvents,state]`: the fields the mask names (all
/// those the body has, without one).
pub async fn update(
    State(app): State<HttpState>,
    GPath((version, id)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
    GQuery(query): GQuery<UpdateQuery>,
    req: Request,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        let fields = read_object(req).await?;
        let masked: Option<Vec<&str>> =
            query.update_mask.as_deref().map(|mask| mask.split(',').map(str::trim).filter(|f| !f.is_empty()).collect());
        if let Some(unknown) = masked.iter().flatten().find(|f| !["uri", "subscribedEvents", "state"].contains(f)) {
            return Err(Error::invalid(format!("updateMask: {unknown} cannot be changed.")).into());
        }
        let wanted = |name: &str| masked.as_ref().is_none_or(|mask| mask.contains(&name));
        let change = WebhookChange {
            uri: if wanted("uri") { string_field(&fields, "uri")? } else { None },
            events: if wanted("subscribedEvents") { events_field(&fields)? } else { None },
            state: if wanted("state") { string_field(&fields, "state")? } else { None },
        };
        Ok(Json(view(&app.webhooks.update(&project, &id, change).await?, false)).into_response())
    })
    .await
}

/// `DELETE /{v}/webhooks/{id}`
pub async fn delete(
    State(app): State<HttpState>,
    GPath((version, id)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        app.webhooks.delete(&project, &id).await?;
        Ok(Json(json!({})).into_response())
    })
    .await
}

/// `POST /{v}/webhooks/{id}:ping` and `POST /{v}/webhooks/{id}:rotateSigningSecret` (one path segment).
pub async fn act(
    State(app): State<HttpState>,
    GPath((version, segment)): GPath<(String, String)>,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        google::check_version(&version)?;
        if let Some(id) = segment.strip_suffix(":ping") {
            let message = app.webhooks.ping(&project, id).await?;
            return Ok(Json(json!({ "webhookId": message })).into_response());
        }
        let id = segment.strip_suffix(":rotateSigningSecret").ok_or_else(google::not_found)?;
        Ok(Json(view(&app.webhooks.rotate(&project, id).await?, true)).into_response())
    })
    .await
}

/// `POST /{v}/webhooks:rotateProjectSigningSecret`
pub async fn rotate_project_secret(
    State(app): State<HttpState>,
    _: Version,
    GeminiCaller(project): GeminiCaller,
) -> Response {
    answer(async {
        let secret = app.webhooks.rotate_project_secret(&project).await?;
        Ok(Json(json!({ "newSigningSecret": secret })).into_response())
    })
    .await
}

/// An event's `data`: the file as `files.get` shows it, and for an import its import view too.
pub fn file_views(app: HttpState) -> RenderFile {
    std::sync::Arc::new(move |file: &FileRecord| {
        let mut data = json!({ "file": google::view::gemini_file(&app, file) });
        if file.import.is_some() {
            data["import"] = json!(super::dialect::openai::view::import_file(&app, file));
        }
        data
    })
}
