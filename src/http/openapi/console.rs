//! The descriptions of the web console's routes (`http/console`): its page and assets, and the few routes
//! it needs beyond the public API.

use axum::http::StatusCode;
use utoipa::openapi::path::ParameterIn;

use super::Surface::Gemini;
use super::caches_and_batches::{any_object, object_body};
use super::{Route, gemini_common, param, reply, with};
use crate::error::Error;
use crate::http::dialect::google::RouteRejection;

fn errors(more: impl IntoIterator<Item = Error>) -> Vec<(super::Surface, super::Refusal)> {
    with(gemini_common(), Gemini, more)
}

fn html() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).into()
}

/// `GET /console`
pub fn console_page() -> Route {
    Route {
        path: "/console",
        summary: "The web console (off with FILEGATE_CONSOLE=off)",
        description: "A page of this origin under a strict Content-Security-Policy; sign in with an API key.",
        parameters: vec![],
        body: None,
        ok: vec![reply(StatusCode::OK, "The page", "text/html", html())],
        errors: vec![],
        authenticated: false,
    }
}

/// `GET /console/{asset}`
pub fn console_asset() -> Route {
    Route {
        path: "/console/{asset}",
        summary: "The console's script (app.js) and style sheet (app.css)",
        description: "",
        parameters: vec![param("asset", ParameterIn::Path, true, "app.js or app.css")],
        body: None,
        ok: vec![reply(StatusCode::OK, "The asset", "text/javascript", html())],
        errors: vec![(Gemini, RouteRejection::UnknownRoute.into())],
        authenticated: false,
    }
}

/// `GET /console/api/project`
pub fn console_project() -> Route {
    Route {
        path: "/console/api/project",
        summary: "The caller's project, whether its key is an operator's, and its usage against its limits",
        description: "",
        parameters: vec![],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{project, operator, usage, limits}`", "application/json", any_object())],
        errors: errors([]),
        authenticated: true,
    }
}

/// `POST /console/api/files/{id}:link`
pub fn console_link() -> Route {
    Route {
        path: "/console/api/files/{id}:link",
        summary: "A one-minute link that downloads an ACTIVE file without the API key",
        description: "The console's downloads: a browser's own download streams to disk but cannot send a header.",
        parameters: vec![param("id", ParameterIn::Path, true, "The file's id")],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{url}`", "application/json", any_object())],
        errors: errors([Error::FileNotFound(String::new()), Error::FailedPrecondition(String::new())]),
        authenticated: true,
    }
}

/// `GET /console/download/{token}`
pub fn console_download() -> Route {
    Route {
        path: "/console/download/{token}",
        summary: "Download through a link made by `:link` (an attachment; `Range` honoured)",
        description: "",
        parameters: vec![param("token", ParameterIn::Path, true, "The link's token")],
        body: None,
        ok: vec![
            reply(StatusCode::OK, "The bytes", "application/octet-stream", html()),
            reply(StatusCode::PARTIAL_CONTENT, "A range of them", "application/octet-stream", html()),
        ],
        errors: errors([
            Error::FileNotFound(String::new()),
            Error::FailedPrecondition(String::new()),
            Error::invalid(""),
            Error::RangeNotSatisfiable { size: 0 },
        ]),
        authenticated: false,
    }
}

fn operator(path: &'static str, summary: &'static str, body: bool, more: Vec<Error>) -> Route {
    let mut refusals = vec![Error::PermissionDenied(String::new())];
    refusals.extend(more);
    Route {
        path,
        summary,
        description: "For keys in FILEGATE_ADMIN_KEYS only.",
        parameters: vec![],
        body: body.then(object_body),
        ok: vec![reply(StatusCode::OK, "JSON", "application/json", any_object())],
        errors: errors(refusals),
        authenticated: true,
    }
}

/// `GET /console/api/projects`
pub fn console_projects() -> Route {
    operator("/console/api/projects", "Every project's usage (operators)", false, vec![])
}

/// `GET /console/api/keys`
pub fn console_keys() -> Route {
    operator("/console/api/keys", "The keys in the database, revoked ones included (operators)", false, vec![])
}

/// `POST /console/api/keys`
pub fn console_create_key() -> Route {
    operator(
        "/console/api/keys",
        "Create a key for a project: {project, label}; the key is shown once (operators)",
        true,
        vec![Error::invalid("")],
    )
}

/// `DELETE /console/api/keys/{id}`
pub fn console_revoke_key() -> Route {
    let mut route = operator("/console/api/keys/{id}", "Revoke a key (operators)", false, vec![Error::invalid("")]);
    route.parameters = vec![param("id", ParameterIn::Path, true, "The key's id")];
    route
}
