//! Health, metrics, OpenAPI and CORS.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn healthz_and_metrics_answer_without_a_key() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(json_of(health, StatusCode::OK).await, json!({"status": "ok", "database": "ok", "blob_store": "ok"}));
    server.gemini(ALPHA_KEY).upload(&data(100, 1), json!({})).await;
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("filegate_http_requests_total{"), "{metrics}");
    assert!(metrics.contains("filegate_upload_bytes_total 100"), "{metrics}");
    assert!(metrics.contains("filegate_uploads_finalized_total 1"), "{metrics}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let server = Server::start();
    let resp = reqwest::get(format!("{}/openapi.json", server.url)).await.unwrap();
    let spec = json_of(resp, StatusCode::OK).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/upload/{version}/files",
        "/{version}/files",
        "/{version}/files/{name}",
        "/{version}/files/{name}:download",
        "/{version}/files:register",
        "/v1/files/{import_id}",
        "/healthz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
}

#[tokio::test]
async fn a_browser_may_run_the_upload_protocol() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/upload/v1beta/files", server.url))
        .header("Origin", "https://app.example.test")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "x-goog-api-key, x-goog-upload-protocol, x-goog-upload-command, x-goog-upload-header-content-length",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = header(&preflight, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-goog-upload-command") && allowed.contains("x-goog-api-key"), "{allowed}");
    let start = server.gemini(ALPHA_KEY).start(1, json!({})).await;
    let exposed = header(&start, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["x-goog-upload-url", "x-goog-upload-status", "x-goog-upload-size-received"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}
