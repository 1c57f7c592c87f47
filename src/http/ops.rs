//! Operations endpoints: health, metrics, the OpenAPI description.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::state::HttpState;
use crate::telemetry::metric;

/// `GET /healthz`, liveness: 200 while this process serves requests, whatever its dependencies do. An
/// orchestrator that restarts nodes on a failed liveness probe would otherwise restart every node when the
/// database goes away; whether a node should get traffic is `/readyz`'s to say.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`, readiness: 200 when both write paths work — the metadata store commits a small write
/// and the blob store makes a small file durable, each within a second — else 503 with what failed (a
/// full disk, a read-only or vanished database, an unreachable PostgreSQL or bucket), so that a load
/// balancer stops sending traffic until it works again. Keyless: `ok` or `failing` per dependency and
/// nothing more; why a dependency fails goes to the log.
pub async fn readyz(State(app): State<HttpState>) -> Response {
    let report = app.health.check().await;
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let body = json!({
        "status": if report.healthy() { "ok" } else { "unavailable" },
        "database": word(report.database.is_ok()),
        "blob_store": word(report.blob_store.is_ok()),
    });
    if report.healthy() {
        return Json(body).into_response();
    }
    let why = |result: &Result<(), String>| result.as_ref().err().cloned().unwrap_or_else(|| "ok".into());
    tracing::warn!(database = %why(&report.database), blob_store = %why(&report.blob_store), "not ready");
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(2u32));
    response
}

/// `GET /metrics` on `FILEGATE_METRICS_LISTEN`, an address only the monitoring network reaches: all of it.
pub async fn metrics(State(app): State<HttpState>) -> Response {
    text(rendered(&app))
}

/// `GET /metrics` on the public address (when `FILEGATE_METRICS_LISTEN` is not set): all of it for an
/// operator's key (`FILEGATE_ADMIN_KEYS`, sent as `Authorization: Bearer` or `x-goog-api-key`); without
/// one, every series that names a project is left out, so that nobody learns from it which projects
/// there are or what they use.
pub async fn public_metrics(State(app): State<HttpState>, parts: Parts) -> Response {
    let presented = super::auth::presented_key(&parts, false);
    let operator = match app.auth.key_id_of(presented.as_deref()).await {
        Ok((_, id)) => app.operator_key_ids.contains(&id),
        Err(_) => false,
    };
    let all = rendered(&app);
    if operator {
        return text(all);
    }
    text(all.lines().filter(|line| !line.contains("project=\"")).flat_map(|line| [line, "\n"]).collect())
}

fn rendered(app: &HttpState) -> String {
    let (open, idle) = app.health.connections();
    let in_use = f64::from(open) - idle as f64;
    metrics::gauge!(metric::DATABASE_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(metric::DATABASE_CONNECTIONS, "state" => "in_use").set(in_use);
    app.metrics.run_upkeep();
    app.metrics.render()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
