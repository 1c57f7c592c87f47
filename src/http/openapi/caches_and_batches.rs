//! The descriptions of the context cache and batch job operations (`http/caches.rs`, `http/batches.rs`).

use axum::http::StatusCode;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{ContentBuilder, Required};

use super::Surface::Gemini;
use super::{Route, gemini_common, integer_param, model_errors, param, reply, version, with};
use crate::error::Error;

/// The `{id}` of `cachedContents/{id}`.
fn cache_id() -> utoipa::openapi::path::Parameter {
    param("id", ParameterIn::Path, true, "The cache's id (the part after `cachedContents/`)")
}

pub(super) fn any_object() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new().into()
}

pub(super) fn object_body() -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content("application/json", ContentBuilder::new().schema(Some(ObjectBuilder::new())).build())
        .required(Some(Required::True))
        .build()
}

fn cache_errors() -> Vec<(super::Surface, super::Refusal)> {
    let mut errors = model_errors();
    errors.push(Error::CacheNotFound(String::new()));
    with(gemini_common(), Gemini, errors)
}

const VERTEX_CACHES: &str = "Also served at `/{v1,v1beta1}/projects/{project}/locations/{location}/cachedContents…`, \
    as the SDKs send it in Vertex AI mode (the caller's project and location are ignored).";

/// `POST /{version}/cachedContents`
pub fn create_cache() -> Route {
    Route {
        path: "/{version}/cachedContents",
        summary: "Create a context cache from contents that may reference filegate files",
        description: "Forwarded to the configured upstream with file references rewritten as for generateContent \
            (on the Gemini API always as a Files API copy). The cache is the caller's project's: it answers as \
            `cachedContents/{id}`, and the copies it was made from are kept until it expires.",
        parameters: vec![version()],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The cache", "application/json", any_object())],
        errors: cache_errors(),
        authenticated: true,
    }
}

/// `GET /{version}/cachedContents`
pub fn list_caches() -> Route {
    Route {
        path: "/{version}/cachedContents",
        summary: "List the project's live context caches",
        description: VERTEX_CACHES,
        parameters: vec![
            version(),
            integer_param("pageSize", ParameterIn::Query, "Default 100, at most 1000", None),
            param("pageToken", ParameterIn::Query, false, "A nextPageToken, unchanged"),
        ],
        body: None,
        ok: vec![reply(StatusCode::OK, "A page (`cachedContents`, `nextPageToken`)", "application/json", any_object())],
        errors: cache_errors(),
        authenticated: true,
    }
}

/// `GET /{version}/cachedContents/{id}`
pub fn get_cache() -> Route {
    Route {
        path: "/{version}/cachedContents/{id}",
        summary: "Get a context cache",
        description: VERTEX_CACHES,
        parameters: vec![version(), cache_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The cache", "application/json", any_object())],
        errors: cache_errors(),
        authenticated: true,
    }
}

/// `PATCH /{version}/cachedContents/{id}`
pub fn update_cache() -> Route {
    Route {
        path: "/{version}/cachedContents/{id}",
        summary: "Change a context cache's expiry (`ttl` or `expireTime`, nothing else)",
        description: VERTEX_CACHES,
        parameters: vec![version(), cache_id()],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The cache", "application/json", any_object())],
        errors: cache_errors(),
        authenticated: true,
    }
}

/// `DELETE /{version}/cachedContents/{id}`
pub fn delete_cache() -> Route {
    Route {
        path: "/{version}/cachedContents/{id}",
        summary: "Delete a context cache",
        description: "Answers `{}`.",
        parameters: vec![version(), cache_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{}`", "application/json", any_object())],
        errors: cache_errors(),
        authenticated: true,
    }
}

fn batch_errors() -> Vec<(super::Surface, super::Refusal)> {
    let mut errors = model_errors();
    errors.push(Error::BatchNotFound(String::new()));
    with(gemini_common(), Gemini, errors)
}

fn batch_id() -> utoipa::openapi::path::Parameter {
    param("id", ParameterIn::Path, true, "The batch's id (the part after `batches/`)")
}

/// `GET /{version}/batches`
pub fn list_batches() -> Route {
    Route {
        path: "/{version}/batches",
        summary: "List the project's batch jobs, as last seen",
        description: "Batches are created with `POST /{version}/models/{model}:batchGenerateContent` (see the model \
            call) and answer as long-running operations whose `metadata` is the batch.",
        parameters: vec![
            version(),
            integer_param("pageSize", ParameterIn::Query, "Default 50, at most 1000", None),
            param("pageToken", ParameterIn::Query, false, "A nextPageToken, unchanged"),
        ],
        body: None,
        ok: vec![reply(StatusCode::OK, "A page (`operations`, `nextPageToken`)", "application/json", any_object())],
        errors: batch_errors(),
        authenticated: true,
    }
}

/// `GET /{version}/batches/{id}`
pub fn get_batch() -> Route {
    Route {
        path: "/{version}/batches/{id}",
        summary: "Get a batch job: its state now, and its results file once it succeeded",
        description: "A job the upstream finished shows BATCH_STATE_RUNNING until its results are a filegate file \
            (`metadata.output.responsesFile`, source GENERATED).",
        parameters: vec![version(), batch_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The batch", "application/json", any_object())],
        errors: batch_errors(),
        authenticated: true,
    }
}

/// `POST /{version}/batches/{id}:cancel`
pub fn cancel_batch() -> Route {
    Route {
        path: "/{version}/batches/{id}:cancel",
        summary: "Cancel a batch job",
        description: "",
        parameters: vec![version(), batch_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The batch", "application/json", any_object())],
        errors: batch_errors(),
        authenticated: true,
    }
}

/// `DELETE /{version}/batches/{id}`
pub fn delete_batch() -> Route {
    Route {
        path: "/{version}/batches/{id}",
        summary: "Delete a batch job (its results file stays)",
        description: "",
        parameters: vec![version(), batch_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{\"name\", \"done\": true}`", "application/json", any_object())],
        errors: batch_errors(),
        authenticated: true,
    }
}
