//! OpenTelemetry traces: a small OTLP receiver (`http/protobuf`, decoded with the protocol's own generated
//! types) sees one trace from a caller's `traceparent` through filegate's request span, its metadata calls
//! and the model call (GenAI attributes with tokens), which carries the trace on to the upstream; an
//! import's fetch continues the trace of the request that created it, and tells the source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::sources::{Reply, Scripted};
use crate::support::*;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with protobuf bodies.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(|kv| value(kv.value.as_ref()))
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.lock().unwrap().push(Span {
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent_span_id: hex::encode(&span.parent_span_id),
                                name: span.name,
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                    ([("content-type", "application/x-protobuf")], Vec::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, spans }
    }

    /// The spans of `trace_id`, once at least `names` are among them (ten seconds at most).
    async fn trace(&self, trace_id: &str, names: &[&str]) -> Vec<Span> {
        for _ in 0..100 {
            let spans: Vec<Span> =
                self.spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect();
            if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all: Vec<String> =
            self.spans.lock().unwrap().iter().map(|s| format!("{} {}", s.trace_id, s.name)).collect();
        panic!("trace {trace_id} never had {names:?}; received: {all:#?}");
    }
}

fn value(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn one_trace_runs_from_the_caller_through_filegate_to_the_upstream_and_the_import_source() {
    let receiver = Receiver::start().await;
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = Server::builder()
        .env("FILEGATE_UPSTREAM", "gemini")
        .env("FILEGATE_GEMINI_ENDPOINT", &fake.url)
        .env("FILEGATE_GEMINI_API_KEY", GEMINI_KEY)
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_SERVICE_NAME", "filegate-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", 100)
        .start();
    let bytes = data(2000, 7);
    let file = server.gemini(ALPHA_KEY).upload(&bytes, json!({"file": {"mimeType": "text/plain"}})).await;

    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let body =
        json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": file["uri"]}}, {"text": "Hi"}]}]});
    let response = reqwest::Client::new()
        .post(format!("{}/v1beta/models/gemini-test:generateContent", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("traceparent", &traceparent)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.bytes().await.unwrap();

    // The upstream got the same trace, with a parent of filegate's.
    let call = fake.model_calls().pop().unwrap();
    let sent = call["headers"]["traceparent"].as_str().expect("a traceparent went upstream").to_owned();
    assert!(sent.starts_with(&format!("00-{TRACE}-")) && !sent.contains(CALLER_SPAN), "{sent}");

    let spans = receiver.trace(TRACE, &["POST /{version}/models/{target}", "generate_content gemini-test"]).await;
    let request = spans.iter().find(|s| s.name == "POST /{version}/models/{target}").unwrap();
    assert_eq!(request.parent_span_id, CALLER_SPAN, "the caller's span is the request's parent");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.attributes["http.route"], "/{version}/models/{target}");
    assert_eq!(request.service, "filegate-under-test");
    let model = spans.iter().find(|s| s.name == "generate_content gemini-test").unwrap();
    assert_eq!(model.parent_span_id, request.span_id);
    assert_eq!(model.attributes["gen_ai.provider.name"], "gcp.gemini");
    assert_eq!(model.attributes["gen_ai.request.model"], "gemini-test");
    assert!(model.attributes["gen_ai.usage.input_tokens"].parse::<u64>().unwrap() > 0, "{model:?}");
    assert!(sent.contains(&model.span_id), "the upstream's parent is the model call's span: {sent}");
    assert!(
        spans.iter().any(|s| s.attributes.get("db.system.name").is_some_and(|d| d == "sqlite" || d == "postgresql")),
        "a metadata store call is in the trace: {spans:#?}"
    );

    // An import continues the trace of the request that created it, and tells the source.
    let import_trace = "0af7651916cd43dd8448eb211c80319c";
    let source = Scripted::start(|_, _| Reply::new(200, b"traced bytes".to_vec())).await;
    let created = reqwest::Client::new()
        .post(format!("{}/v1/files", server.url))
        .header("Authorization", ALPHA_KEY)
        .header("traceparent", format!("00-{import_trace}-b7ad6b7169203331-01"))
        .json(&json!({"source_url": format!("{}/doc.txt", source.url), "model": "m"}))
        .send()
        .await
        .unwrap();
    let id = json_of(created, StatusCode::OK).await["id"].as_str().unwrap().to_owned();
    assert_eq!(server.importer(ALPHA_KEY).settle(&id).await["status"], "ready");
    let seen = source.requests();
    let header = seen[0].headers.get("traceparent").expect("the source was told the trace");
    assert!(header.starts_with(&format!("00-{import_trace}-")), "{header}");
    let spans = receiver.trace(import_trace, &["POST /{version}/files", "import fetch"]).await;
    assert!(spans.iter().any(|s| s.name == "ingest"), "the ingest is in the import's trace: {spans:#?}");
}
