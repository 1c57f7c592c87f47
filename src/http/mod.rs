//! The HTTP layer: one route list, thin handlers, and the layers every request passes through.

mod answered;
mod auth;
mod batches;
pub mod body;
mod caches;
mod console;
pub mod dialect;
mod download;
mod form;
pub mod gemini;
#[cfg(test)]
pub(crate) mod harness;
pub mod import;
mod model;
mod openai;
mod openapi;
mod ops;
mod routes;
mod serve;
pub mod state;
pub(crate) mod webhooks;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::domain::random_alphanumeric;
use crate::error::Error;
use crate::http::state::HttpState;
use crate::telemetry::metric;
use dialect::google::RouteRejection;

pub use answered::AnsweredError;
pub use auth::presented_key;
pub use serve::{ConnectionLimits, serve};
pub use state::ConsoleSettings;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Response headers a browser client must be able to read to run the upload protocol.
const EXPOSED_HEADERS: [&str; 6] = [
    "x-goog-upload-url",
    "x-goog-upload-status",
    "x-goog-upload-size-received",
    "x-goog-upload-chunk-granularity",
    "x-goog-upload-control-url",
    "x-request-id",
];

/// The routes of the public address; `/metrics` is among them unless it has an address of its own.
pub fn router(app: HttpState) -> Router {
    let routes = routes::endpoints(app.metrics_on_public, app.console.is_some())
        .into_iter()
        .fold(Router::new(), |router, endpoint| router.route(endpoint.mount, endpoint.handler));
    routes
        .fallback(|req: Request| async move { unrouted(req, RouteRejection::UnknownRoute) })
        .method_not_allowed_fallback(|req: Request| async move { unrouted(req, RouteRejection::MethodNotAllowed) })
        .layer(middleware::from_fn_with_state(app.body_limits, body::limit_idle_bodies))
        .layer(middleware::from_fn(track_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(|response: &Response, latency: Duration, span: &tracing::Span| {
                    let status = response.status().as_u16();
                    span.record("http.response.status_code", status);
                    if response.status().is_server_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                    tracing::info!(status, latency_ms = latency.as_millis() as u64, "answered");
                    if let Some(AnsweredError(err)) = response.extensions().get() {
                        crate::error::log_server_side(err);
                    }
                })
                // Errors are logged once, above, from the error the surface answered (`AnsweredError`).
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(CatchPanicLayer::custom(|_| {
            // Outside the trace layer (which a panic unwinds through): logged here.
            let err = Error::internal("a request handler panicked");
            crate::error::log_server_side(&err);
            dialect::google::status_response(err)
        }))
        .layer(cors())
        // No response of filegate is ever to be sniffed into another type (an error body into HTML, say).
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(app)
}

/// A request no route takes, answered in its client's format: OpenAI's on `/v1/` for an OpenAI client,
/// Google's otherwise.
fn unrouted(req: Request, rejection: RouteRejection) -> Response {
    let parts = req.into_parts().0;
    if openai::is_openai_request(&parts) {
        return openai::unserved(&parts, rejection);
    }
    axum::response::IntoResponse::into_response(rejection)
}

/// The routes of `FILEGATE_METRICS_LISTEN`: `/metrics` only.
pub fn metrics_router(app: HttpState) -> Router {
    Router::new().route("/metrics", get(ops::metrics)).with_state(app)
}

/// The span of one request: named by its route template (never the path a client chose, nor the query,
/// which carries API keys and upload capabilities), continuing the caller's trace when it sends a W3C
/// `traceparent`.
fn request_span(req: &Request) -> tracing::Span {
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    // A capability in the path (a console download link) is shown as its route, never as sent; any other
    // path is the client's choice, cut so that one request cannot write megabytes of log.
    let path = if routes::CAPABILITY_ROUTES.contains(&route) { route } else { truncated(req.uri().path(), 512) };
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", method_label(req.method())),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method_label(req.method()),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        url.path = %path,
        request_id = %id,
    );
    crate::telemetry::traces::continue_from(&span, req.headers());
    span
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        // Whatever the preflight asks for: the x-goog-upload-* family, x-goog-api-key, content types.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600))
}

#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&random_alphanumeric(16)).ok().map(RequestId::new)
    }
}

/// Every label comes from a closed set: a client chooses the method token and the path, so neither may
/// become a label as sent (a thousand invented methods would otherwise be a thousand time series).
/// Methods fold to the standard ones plus `other`, paths to their route template or `unmatched`, and the
/// status is one of hyper's three-digit codes.
async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method.to_owned()), ("route", route), ("status", status)];
    metrics::counter!(metric::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(metric::HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_for_methods_come_from_a_closed_set() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(&[b'X'; 60_000]).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::CONNECT), "other");
    }
}
