//! OpenTelemetry traces over OTLP (`http/protobuf`), configured by the standard variables and off unless an
//! endpoint is set:
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) | the collector; unset: no traces |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (or `…_TRACES_PROTOCOL`) | `http/protobuf` (the default; the only one built in) |
//! | `OTEL_SERVICE_NAME` | default `filegate` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | as the specification says (default `parentbased_always_on`) |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, … | read by the OpenTelemetry SDK itself |
//!
//! Spans are `tracing` spans bridged by `tracing-opentelemetry`: one per request (`{method} {route}`), and
//! children for the ingest of bytes, metadata store calls, bucket calls, an import's fetch and model calls
//! (GenAI attributes). Context travels in W3C `traceparent` headers: an incoming one becomes the request
//! span's parent, and model calls and import fetches carry the current one onward.

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The OTLP settings, if traces are on.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub service_name: String,
}

/// The tracer provider exporting to the collector (batched, on the SDK's own thread); the W3C trace context
/// is installed as the propagator.
pub fn provider(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(provider)
}

/// The `tracing` layer that turns spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("filegate"))
}

/// Makes the `traceparent` of `headers`, if any, the parent of `span`.
pub fn continue_from(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(context);
}

/// Adds the current span's `traceparent` to outgoing `headers` (nothing when traces are off).
pub fn inject_current(headers: &mut axum::http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The current span's `traceparent`, to be kept with work that continues later (an import task).
pub fn current_traceparent() -> Option<String> {
    let mut headers = axum::http::HeaderMap::new();
    inject_current(&mut headers);
    headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Makes a stored `traceparent` the parent of `span`.
pub fn continue_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = axum::http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
        continue_from(span, &headers);
    }
}
