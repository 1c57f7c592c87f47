//! Operations endpoints: health, metrics, the OpenAPI description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;

/// 200 when the metadata store answers; 503 otherwise, so a load balancer stops sending traffic.
pub async fn healthz(State(app): State<AppState>) -> Response {
    match app.meta.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response()
        }
    }
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    app.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

/// The OpenAPI 3.1 description of every route, built from the code (`http/openapi.rs`).
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::DOCUMENT.as_str()).into_response()
}
