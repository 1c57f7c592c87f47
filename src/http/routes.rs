//! The one list of endpoints: each pairs a method and a path with its handler and with the operations
//! the OpenAPI document describes for it. The router and the document are both built from this list, so
//! an endpoint cannot be served undocumented, or documented and not served.

use std::sync::LazyLock;

use axum::extract::{FromRequestParts as _, Request, State};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use super::dialect::google::{self, GPath};
use super::dialect::openai as openai_dialect;
use super::openapi::{self, Route, operations as doc};
use super::state::HttpState;
use super::{batches, caches, console, gemini, import, model, openai, ops, webhooks};

/// The OpenAPI document of every endpoint, rendered once.
static OPENAPI: LazyLock<String> = LazyLock::new(|| {
    let endpoints = endpoints(true, true);
    let document = openapi::document(endpoints.iter().map(|e| (&e.method, e.operations)));
    document.to_pretty_json().expect("the OpenAPI document serializes")
});

/// `GET /openapi.json`: the OpenAPI 3.1 description of every route, built from this table.
async fn serve_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI.as_str()).into_response()
}

/// One method on one path.
pub struct Endpoint {
    pub method: Method,
    /// The path as the router matches it.
    pub mount: &'static str,
    pub handler: MethodRouter<HttpState>,
    /// What it serves, as the document describes it: usually one operation; several where the handler
    /// dispatches on a path segment (`{name}`, `{name}:download` and `qfile-…` share one segment); none for
    /// an alias, which its original's description mentions.
    pub operations: &'static [fn() -> Route],
}

impl Endpoint {
    fn new<H, T>(method: Method, mount: &'static str, handler: H, operations: &'static [fn() -> Route]) -> Self
    where
        H: Handler<T, HttpState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        Self { method, mount, handler: on(filter, handler), operations }
    }
}

/// Routes whose path carries a capability (whoever knows it may use it): logs and traces show their
/// template, never the path as sent.
pub const CAPABILITY_ROUTES: [&str; 4] =
    ["/console/download/{token}", "/v1/uploads/{id}/parts", "/v1/uploads/{id}/complete", "/v1/uploads/{id}/cancel"];

/// The caches as the SDKs name them in Vertex AI mode with a project and location.
const VERTEX_CACHES: &str = "/{version}/projects/{project}/locations/{location}/cachedContents";
const VERTEX_CACHE: &str = "/{version}/projects/{project}/locations/{location}/cachedContents/{id}";

/// Every endpoint of the public address; `/metrics` only when it has no address of its own, the console
/// only when it is on.
pub fn endpoints(metrics_on_public: bool, console_on: bool) -> Vec<Endpoint> {
    use Method as M;
    let mut all = vec![
        Endpoint::new(M::POST, "/upload/{version}/files", gemini::upload::upload, &[doc::upload]),
        Endpoint::new(M::PUT, "/upload/{version}/files", gemini::upload::upload, &[]),
        Endpoint::new(M::POST, "/{prefix}/upload/{version}/files", gemini::upload::upload_aliased, &[]),
        Endpoint::new(M::PUT, "/{prefix}/upload/{version}/files", gemini::upload::upload_aliased, &[]),
        Endpoint::new(M::GET, "/{version}/files", list_files, &[doc::list_files]),
        Endpoint::new(M::POST, "/{version}/files", create_file, &[doc::create_import]),
        Endpoint::new(M::POST, "/{version}/files:register", gemini::register, &[doc::register]),
        Endpoint::new(M::GET, "/{version}/files/{segment}", get_file, &[doc::get_file, doc::download, doc::get_import]),
        Endpoint::new(M::DELETE, "/{version}/files/{segment}", delete_file, &[doc::delete_file, doc::delete_import]),
        Endpoint::new(M::GET, "/{version}/files/{segment}/content", file_content, &[doc::file_content]),
        Endpoint::new(M::POST, "/{version}/models/{target}", model_method, &[doc::call_model]),
        Endpoint::new(M::POST, "/{version}/publishers/google/models/{target}", model::vertex_native, &[]),
        Endpoint::new(
            M::POST,
            "/{version}/projects/{project}/locations/{location}/publishers/google/models/{target}",
            model::vertex_native,
            &[],
        ),
        Endpoint::new(M::POST, "/{version}/cachedContents", caches::create, &[doc::create_cache]),
        Endpoint::new(M::GET, "/{version}/cachedContents", caches::list, &[doc::list_caches]),
        Endpoint::new(M::GET, "/{version}/cachedContents/{id}", caches::get, &[doc::get_cache]),
        Endpoint::new(M::PATCH, "/{version}/cachedContents/{id}", caches::update, &[doc::update_cache]),
        Endpoint::new(M::DELETE, "/{version}/cachedContents/{id}", caches::delete, &[doc::delete_cache]),
        Endpoint::new(M::POST, VERTEX_CACHES, caches::create, &[]),
        Endpoint::new(M::GET, VERTEX_CACHES, caches::list, &[]),
        Endpoint::new(M::GET, VERTEX_CACHE, caches::get, &[]),
        Endpoint::new(M::PATCH, VERTEX_CACHE, caches::update, &[]),
        Endpoint::new(M::DELETE, VERTEX_CACHE, caches::delete, &[]),
        Endpoint::new(M::GET, "/{version}/batches", batches::list, &[doc::list_batches]),
        Endpoint::new(M::GET, "/{version}/batches/{id}", batches::get, &[doc::get_batch]),
        Endpoint::new(M::POST, "/{version}/batches/{id}", batches::cancel, &[doc::cancel_batch]),
        Endpoint::new(M::DELETE, "/{version}/batches/{id}", batches::delete, &[doc::delete_batch]),
        Endpoint::new(M::POST, "/{version}/webhooks", webhooks::create, &[doc::create_webhook]),
        Endpoint::new(M::GET, "/{version}/webhooks", webhooks::list, &[doc::list_webhooks]),
        Endpoint::new(
            M::POST,
            "/{version}/webhooks:rotateProjectSigningSecret",
            webhooks::rotate_project_secret,
            &[doc::rotate_project_secret],
        ),
        Endpoint::new(M::GET, "/{version}/webhooks/{id}", webhooks::get, &[doc::get_webhook]),
        Endpoint::new(M::PATCH, "/{version}/webhooks/{id}", webhooks::update, &[doc::update_webhook]),
        Endpoint::new(M::DELETE, "/{version}/webhooks/{id}", webhooks::delete, &[doc::delete_webhook]),
        Endpoint::new(
            M::POST,
            "/{version}/webhooks/{id}",
            webhooks::act,
            &[doc::ping_webhook, doc::rotate_webhook_secret],
        ),
        Endpoint::new(M::POST, "/v1/chat/completions", model::chat_completions, &[doc::chat_completions]),
        Endpoint::new(M::POST, "/v1/responses", model::responses, &[doc::responses]),
        Endpoint::new(
            M::POST,
            "/v1/responses/input_tokens",
            model::count_response_tokens,
            &[doc::count_response_tokens],
        ),
        Endpoint::new(M::POST, "/v1/uploads", openai::uploads::create, &[doc::create_upload]),
        Endpoint::new(M::POST, "/v1/uploads/{id}/parts", openai::uploads::add_part, &[doc::add_upload_part]),
        Endpoint::new(M::POST, "/v1/uploads/{id}/complete", openai::uploads::complete, &[doc::complete_upload]),
        Endpoint::new(M::POST, "/v1/uploads/{id}/cancel", openai::uploads::cancel, &[doc::cancel_upload]),
        Endpoint::new(M::GET, "/healthz", ops::healthz, &[doc::healthz]),
        Endpoint::new(M::GET, "/readyz", ops::readyz, &[doc::readyz]),
        Endpoint::new(M::GET, "/openapi.json", serve_openapi, &[doc::openapi]),
    ];
    if metrics_on_public {
        all.push(Endpoint::new(M::GET, "/metrics", ops::public_metrics, &[doc::metrics]));
    }
    if console_on {
        all.extend([
            Endpoint::new(M::GET, "/console", console::index, &[doc::console_page]),
            Endpoint::new(M::GET, "/console/{asset}", console::asset, &[doc::console_asset]),
            Endpoint::new(M::GET, "/console/api/project", console::project, &[doc::console_project]),
            Endpoint::new(M::POST, "/console/api/files/{segment}", console::link, &[doc::console_link]),
            Endpoint::new(M::GET, "/console/download/{token}", console::download, &[doc::console_download]),
            Endpoint::new(M::GET, "/console/api/projects", console::projects, &[doc::console_projects]),
            Endpoint::new(M::GET, "/console/api/keys", console::keys, &[doc::console_keys]),
            Endpoint::new(M::POST, "/console/api/keys", console::create_key, &[doc::console_create_key]),
            Endpoint::new(M::DELETE, "/console/api/keys/{id}", console::revoke_key, &[doc::console_revoke_key]),
        ]);
    }
    all
}

/// Whether a request on `v1`'s shared file paths is the OpenAI surface's (`http/openai/mod.rs`).
fn openai_on(version: &str, parts: &axum::http::request::Parts) -> bool {
    version == "v1" && !openai::from_gemini_client(parts)
}

/// `GET /{v}/files`: the Gemini list, or on `v1` the OpenAI list for an OpenAI client.
async fn list_files(State(app): State<HttpState>, GPath(version): GPath<String>, req: Request) -> Response {
    let mut parts = req.into_parts().0;
    if openai_on(&version, &parts) {
        return openai::files::list(&app, &parts).await.unwrap_or_else(IntoResponse::into_response);
    }
    let answer = async {
        let google::Version(_) = google::Version::from_request_parts(&mut parts, &app).await?;
        let google::GeminiCaller(project) = google::GeminiCaller::from_request_parts(&mut parts, &app).await?;
        Ok::<_, gemini::GeminiError>(gemini::list_for(&app, project, &parts).await)
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/files/{id}/content`: an OpenAI client's download.
async fn file_content(
    State(app): State<HttpState>,
    GPath((version, segment)): GPath<(String, String)>,
    req: Request,
) -> Response {
    if version != "v1" {
        return google::not_found().into_response();
    }
    openai::files::content(&app, &req.into_parts().0, &segment).await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/files` is the import surface's create, or with a form an OpenAI upload; the Gemini surface
/// creates files by uploading.
async fn create_file(State(app): State<HttpState>, GPath(version): GPath<String>, req: Request) -> Response {
    if version != "v1" {
        return gemini::create_without_bytes(&version).into_response();
    }
    let (mut parts, body) = req.into_parts();
    if openai::is_form_upload(&parts) {
        return openai::files::create(&app, &parts, body).await.unwrap_or_else(IntoResponse::into_response);
    }
    let created = async {
        let openai_dialect::ImportCaller(project) =
            openai_dialect::ImportCaller::from_request_parts(&mut parts, &app).await?;
        import::create(&app, project, &parts, body).await
    };
    created.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /{v}/files/{segment}`: an import (`v1`, `qfile-…`) or a Gemini file (or its `:download`).
async fn get_file(
    State(app): State<HttpState>,
    GPath((version, segment)): GPath<(String, String)>,
    req: Request,
) -> Response {
    if import::is_import(&version, &segment) {
        return import::get(&app, &req.into_parts().0, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    let (parts, body) = req.into_parts();
    if openai_on(&version, &parts) && !segment.contains(':') {
        return openai::files::retrieve(&app, &parts, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    gemini::get(State(app), GPath((version, segment)), Request::from_parts(parts, body)).await
}

/// `POST /{v}/models/{target}`: `{model}:batchGenerateContent` creates a batch, any other method is a model
/// call.
async fn model_method(
    State(app): State<HttpState>,
    GPath((version, target)): GPath<(String, String)>,
    req: Request,
) -> Response {
    match target.strip_suffix(":batchGenerateContent") {
        Some(model) => batches::create(app, &version, model, req).await,
        None => model::native(State(app), GPath((version, target)), req).await,
    }
}

/// `DELETE /{v}/files/{segment}`: an import (`v1`, `qfile-…`) or a Gemini file.
async fn delete_file(
    State(app): State<HttpState>,
    GPath((version, segment)): GPath<(String, String)>,
    req: Request,
) -> Response {
    if import::is_import(&version, &segment) {
        return import::delete(&app, &req.into_parts().0, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    let (parts, body) = req.into_parts();
    if openai_on(&version, &parts) {
        return openai::files::delete(&app, &parts, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    gemini::delete(State(app), GPath((version, segment)), Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an OpenAPI path is one the router's pattern takes: literal segments equal, a `{param}`
    /// segment of the pattern taking any one segment (`{name}:download` included).
    fn served_at(mount: &str, documented: &str) -> bool {
        let (mount, documented): (Vec<_>, Vec<_>) = (mount.split('/').collect(), documented.split('/').collect());
        mount.len() == documented.len()
            && mount.iter().zip(&documented).all(|(m, d)| m == d || (m.starts_with('{') && m.ends_with('}')))
    }

    #[test]
    fn every_operation_is_served_by_its_endpoint_and_documented_once() {
        let mut documented = std::collections::HashSet::new();
        for endpoint in endpoints(true, true) {
            for operation in endpoint.operations {
                let route = operation();
                assert!(served_at(endpoint.mount, route.path), "{} is not served at {}", route.path, endpoint.mount);
                assert!(documented.insert((route.path, endpoint.method.clone())), "{} documented twice", route.path);
            }
        }
        let undocumented: Vec<_> = endpoints(true, true)
            .into_iter()
            .filter(|e| e.operations.is_empty())
            .map(|e| (e.method, e.mount))
            .collect();
        assert_eq!(undocumented.len(), 10, "only the upload and Vertex aliases go undocumented: {undocumented:?}");
    }

    #[test]
    fn statuses_come_from_the_error_mapping() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI).unwrap();
        let import_get = &doc["paths"]["/v1/files/{import_id}"]["get"]["responses"];
        for status in ["200", "400", "401", "403", "404", "503"] {
            assert!(import_get.get(status).is_some(), "GET /v1/files/{{import_id}} lacks {status}: {import_get}");
        }
        let download = &doc["paths"]["/{version}/files/{name}:download"]["get"]["responses"];
        for status in ["200", "206", "400", "403", "404", "416", "503"] {
            assert!(download.get(status).is_some(), "download lacks {status}");
        }
        assert_eq!(
            doc["paths"]["/{version}/files"]["get"]["parameters"][0]["schema"]["enum"],
            serde_json::json!(["v1", "v1beta", "v1alpha"])
        );
    }
}
