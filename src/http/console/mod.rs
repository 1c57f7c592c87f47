//! The web console at `/console`: a page of filegate's own origin (HTML, one script, one style sheet,
//! compiled into the binary: nothing is built or fetched at run time, nothing comes from another origin),
//! and the few routes it needs beyond the public API, under `/console/api` and `/console/download`.
//!
//! The page keeps the API key in the tab's `sessionStorage` and sends it as `x-goog-api-key`; it speaks the
//! same Files, upload and import APIs as the SDKs. Its safety rests on its headers: a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline script, no `eval`, no
//! framing), and every value shown is set as text, never as HTML (`assets/app.js`). Files are never shown
//! on this origin: downloads are attachments through a one-minute link (`Files::download_link`), which a
//! browser streams to disk.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dialect::google::{self, GPath, GeminiError};
use super::state::ConsoleSettings;
use super::state::HttpState;
use crate::domain::{FileId, ProjectId};
use crate::error::Error;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The console's policy: everything from this origin only, nothing inline, never framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /console`
pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/{asset}`: the script and the style sheet.
pub async fn asset(GPath(name): GPath<String>) -> Response {
    match name.as_str() {
        "app.js" => page(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => page(STYLE, "text/css; charset=utf-8"),
        _ => google::not_found().into_response(),
    }
}

async fn answer(result: impl Future<Output = Result<Response, GeminiError>>) -> Response {
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn settings(app: &HttpState) -> Result<&ConsoleSettings, GeminiError> {
    app.console.as_ref().ok_or_else(google::not_found)
}

/// The caller's project, and whether its key is an operator's.
async fn caller(app: &HttpState, headers: &HeaderMap) -> Result<(ProjectId, bool), GeminiError> {
    settings(app)?;
    let presented = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    let (project, id) = app.auth.key_id_of(presented).await?;
    Ok((project, app.operator_key_ids.contains(&id)))
}

async fn operator(app: &HttpState, headers: &HeaderMap) -> Result<(), GeminiError> {
    match caller(app, headers).await? {
        (_, true) => Ok(()),
        (_, false) => {
            Err(Error::PermissionDenied("This key is not an operator's (FILEGATE_ADMIN_KEYS).".into()).into())
        }
    }
}

fn usage_view(usage: &crate::meta::ProjectUsage) -> Value {
    json!({
        "usedBytes": usage.used_bytes,
        "files": usage.files,
        "openUploads": usage.open_uploads,
        "activeImports": usage.active_imports,
    })
}

/// `GET /console/api/project`: who the key is, and the project's usage against its limits.
pub async fn project(State(app): State<HttpState>, headers: HeaderMap) -> Response {
    answer(async {
        let (project, operator) = caller(&app, &headers).await?;
        let limits = &settings(&app)?.limits;
        let usage = app.files.usage(&project).await?;
        Ok(Json(json!({
            "project": project.as_str(),
            "operator": operator,
            "usage": usage_view(&usage),
            "limits": {
                "quotaBytes": usage.quota_bytes.unwrap_or(limits.project_quota_bytes),
                "maxFiles": limits.project_max_files,
                "maxOpenUploads": limits.project_max_open_uploads,
                "maxFileBytes": limits.max_file_bytes,
            },
        }))
        .into_response())
    })
    .await
}

/// `POST /console/api/files/{id}:link`: a one-minute link that downloads the file without the key.
pub async fn link(State(app): State<HttpState>, GPath(segment): GPath<String>, headers: HeaderMap) -> Response {
    answer(async {
        let (project, _) = caller(&app, &headers).await?;
        let id = segment.strip_suffix(":link").ok_or_else(google::not_found)?;
        let token = app.files.download_link(&project, &FileId::from_path(id)).await?;
        Ok(Json(json!({ "url": format!("/console/download/{token}") })).into_response())
    })
    .await
}

/// `GET /console/download/{token}`: the file as an attachment, whole or a range.
pub async fn download(State(app): State<HttpState>, GPath(token): GPath<String>, req: Request) -> Response {
    answer(async {
        settings(&app)?;
        let (project, id) = app.files.resolve_download_link(&token).await?;
        let parts = req.into_parts().0;
        Ok(super::download::file_bytes(&app, &project, &parts, &id).await?)
    })
    .await
}

/// `GET /console/api/projects` (operators): every project's usage.
pub async fn projects(State(app): State<HttpState>, headers: HeaderMap) -> Response {
    answer(async {
        operator(&app, &headers).await?;
        let projects: Vec<Value> = app
            .auth
            .projects()
            .await?
            .iter()
            .map(|report| json!({ "project": report.project.as_str(), "usage": usage_view(&report.usage) }))
            .collect();
        Ok(Json(json!({ "projects": projects })).into_response())
    })
    .await
}

fn key_view(key: &crate::meta::ApiKeyInfo) -> Value {
    json!({
        "id": key.id,
        "project": key.project.as_str(),
        "label": key.label,
        "createTime": key.created_at.to_rfc3339(),
        "lastUsedTime": key.last_used_at.map(|t| t.to_rfc3339()),
        "revokeTime": key.revoked_at.map(|t| t.to_rfc3339()),
    })
}

/// `GET /console/api/keys` (operators)
pub async fn keys(State(app): State<HttpState>, headers: HeaderMap) -> Response {
    answer(async {
        operator(&app, &headers).await?;
        let keys: Vec<Value> = app.auth.keys().await?.iter().map(key_view).collect();
        Ok(Json(json!({ "keys": keys })).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct NewKey {
    project: String,
    #[serde(default)]
    label: String,
}

/// `POST /console/api/keys {"project", "label"}` (operators): the key, shown this once.
pub async fn create_key(State(app): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    answer(async {
        operator(&app, &headers).await?;
        let bytes = super::body::read_to_limit(body, 4096, || Error::invalid("The body is too large.")).await?;
        let request: NewKey = super::body::parse_json(&bytes)
            .map_err(|e| Error::invalid(format!("Expected {{\"project\": \"…\", \"label\": \"…\"}}: {e}")))?;
        let project = ProjectId::parse(request.project.trim())?;
        let label = request.label.trim().chars().take(200).collect::<String>();
        let (key, id) = app.auth.create(&project, &label).await?;
        Ok(Json(json!({ "id": id, "project": project.as_str(), "key": key.expose() })).into_response())
    })
    .await
}

/// `DELETE /console/api/keys/{id}` (operators)
pub async fn revoke_key(State(app): State<HttpState>, GPath(id): GPath<String>, headers: HeaderMap) -> Response {
    answer(async {
        operator(&app, &headers).await?;
        let key = app.auth.revoke(&id).await?;
        Ok(Json(key_view(&key)).into_response())
    })
    .await
}
