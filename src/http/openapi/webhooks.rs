//! The descriptions of the webhook operations (`http/webhooks.rs`).

use axum::http::StatusCode;
use utoipa::openapi::path::ParameterIn;

use super::Surface::Gemini;
use super::caches_and_batches::{any_object, object_body};
use super::{Route, gemini_common, integer_param, param, reply, version, with};
use crate::error::Error;

fn errors() -> Vec<(super::Surface, super::Refusal)> {
    with(
        gemini_common(),
        Gemini,
        [
            Error::invalid(""),
            Error::invalid_field(crate::domain::FieldCode::InvalidWebhookUri, ""),
            Error::FailedPrecondition(String::new()),
            Error::WebhookNotFound(String::new()),
        ],
    )
}

/// A rotation may also find ten replaced secrets still signing (429).
fn rotation_errors() -> Vec<(super::Surface, super::Refusal)> {
    with(errors(), Gemini, [Error::LimitReached(crate::domain::Limit::SecretRotations { live: 10 })])
}

fn webhook_id() -> utoipa::openapi::path::Parameter {
    param("id", ParameterIn::Path, true, "The webhook's id (the part after `webhooks/`)")
}

const EVENTS: &str = "Events: `file.active`, `file.failed`, `file.deleted`, `file.expired`, `batch.succeeded`, \
    `batch.failed`, `batch.cancelled`, `batch.expired`. Deliveries are signed \
    per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff for \
    24 h with the same `webhook-id`; a webhook whose deliveries fail for that long becomes \
    `disabled_due_to_failed_deliveries`. See docs/webhooks.md.";

/// `POST /{version}/webhooks`
pub fn create_webhook() -> Route {
    Route {
        path: "/{version}/webhooks",
        summary: "Register a webhook: {\"uri\", \"subscribedEvents\"}; its signing secret is shown once",
        description: EVENTS,
        parameters: vec![version()],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The webhook, with `newSigningSecret`", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `GET /{version}/webhooks`
pub fn list_webhooks() -> Route {
    Route {
        path: "/{version}/webhooks",
        summary: "List the project's webhooks",
        description: "",
        parameters: vec![
            version(),
            integer_param("pageSize", ParameterIn::Query, "Default and at most 20", None),
            param("pageToken", ParameterIn::Query, false, "A nextPageToken, unchanged"),
        ],
        body: None,
        ok: vec![reply(StatusCode::OK, "A page (`webhooks`, `nextPageToken`)", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `GET /{version}/webhooks/{id}`
pub fn get_webhook() -> Route {
    Route {
        path: "/{version}/webhooks/{id}",
        summary: "Get a webhook",
        description: "",
        parameters: vec![version(), webhook_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The webhook", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `PATCH /{version}/webhooks/{id}`
pub fn update_webhook() -> Route {
    Route {
        path: "/{version}/webhooks/{id}",
        summary: "Change a webhook's uri, subscribedEvents or state (enabled, disabled)",
        description: "Disabling a webhook drops its pending deliveries.",
        parameters: vec![
            version(),
            webhook_id(),
            param("updateMask", ParameterIn::Query, false, "Fields to change, comma-separated (default: those given)"),
        ],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The webhook", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `DELETE /{version}/webhooks/{id}`
pub fn delete_webhook() -> Route {
    Route {
        path: "/{version}/webhooks/{id}",
        summary: "Delete a webhook and its pending deliveries",
        description: "Answers `{}`.",
        parameters: vec![version(), webhook_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{}`", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `POST /{version}/webhooks/{id}:ping`
pub fn ping_webhook() -> Route {
    Route {
        path: "/{version}/webhooks/{id}:ping",
        summary: "Send a signed `webhook.ping` event to the webhook",
        description: "Queued like any event; answers its `webhookId`.",
        parameters: vec![version(), webhook_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{\"webhookId\"}`", "application/json", any_object())],
        errors: errors(),
        authenticated: true,
    }
}

/// `POST /{version}/webhooks/{id}:rotateSigningSecret`
pub fn rotate_webhook_secret() -> Route {
    Route {
        path: "/{version}/webhooks/{id}:rotateSigningSecret",
        summary: "Give the webhook a new signing secret (shown once); the old one signs beside it for 24 h",
        description: "",
        parameters: vec![version(), webhook_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The webhook, with `newSigningSecret`", "application/json", any_object())],
        errors: rotation_errors(),
        authenticated: true,
    }
}

/// `POST /{version}/webhooks:rotateProjectSigningSecret`
pub fn rotate_project_secret() -> Route {
    Route {
        path: "/{version}/webhooks:rotateProjectSigningSecret",
        summary: "Make (or replace) the secret that signs the project's per-request webhooks (shown once)",
        description: "Per-request webhooks are an import's `webhook_config.uris`. A replaced secret signs beside \
            the new one for 24 h.",
        parameters: vec![version()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{\"newSigningSecret\"}`", "application/json", any_object())],
        errors: rotation_errors(),
        authenticated: true,
    }
}
