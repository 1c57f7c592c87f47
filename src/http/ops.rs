//! Operations endpoints: health, metrics, the OpenAPI description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::domain::Timestamp;

/// 200 when both write paths work: the metadata store commits a small write and the blob store makes a
/// small file durable. Otherwise 503 with what failed (a full disk, a read-only or vanished database, an
/// unreachable PostgreSQL), so that a load balancer stops sending traffic until it works again.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let database = app.meta.probe_write(Timestamp::now()).await.map_err(|e| e.to_string());
    let blobs = app.blobs.probe().await.map_err(|e| e.to_string());
    let check = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_owned(),
        Err(why) => why.clone(),
    };
    let body = json!({
        "status": if database.is_ok() && blobs.is_ok() { "ok" } else { "unavailable" },
        "database": check(&database),
        "blob_store": check(&blobs),
    });
    if database.is_ok() && blobs.is_ok() {
        Json(body).into_response()
    } else {
        tracing::warn!(database = %body["database"], blob_store = %body["blob_store"], "health check failed");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
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
