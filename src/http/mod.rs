//! The HTTP layer: one route list, thin handlers, and the layers every request passes through.

mod auth;
pub mod gemini;
pub mod import;
mod ops;
mod serve;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::app::AppState;
use crate::domain::random_alphanumeric;
use crate::error::Error;
use crate::telemetry::metric;

pub use auth::presented_key;
pub use serve::serve;

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

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/upload/{version}/files", post(gemini::upload::upload).put(gemini::upload::upload))
        .route(
            "/{prefix}/upload/{version}/files",
            post(gemini::upload::upload_aliased).put(gemini::upload::upload_aliased),
        )
        .route("/{version}/files", get(gemini::list).post(create_file))
        .route("/{version}/files:register", post(gemini::register))
        .route("/{version}/files/{segment}", get(get_file).delete(delete_file))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { gemini::GeminiError(Error::UnknownRoute) })
        .method_not_allowed_fallback(|| async { gemini::GeminiError(Error::MethodNotAllowed) })
        .layer(middleware::from_fn(track_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // The path only: query strings carry API keys (`?key=`) and upload capabilities.
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(CatchPanicLayer::custom(|_| {
            gemini::error::status_response(&Error::internal("a request handler panicked"))
        }))
        .layer(cors())
        .with_state(app)
}

/// `POST /v1/files` is the import surface's create; the Gemini surface creates files by uploading.
async fn create_file(State(app): State<AppState>, Path(version): Path<String>, req: Request) -> Response {
    if version != "v1" {
        return gemini::create_without_bytes(&version).into_response();
    }
    let (parts, body) = req.into_parts();
    import::create(&app, &parts, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /{v}/files/{segment}`: an import (`v1`, `qfile-…`) or a Gemini file (or its `:download`).
async fn get_file(
    State(app): State<AppState>,
    Path((version, segment)): Path<(String, String)>,
    req: Request,
) -> Response {
    if import::is_import(&version, &segment) {
        return import::get(&app, &req.into_parts().0, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    gemini::get(State(app), Path((version, segment)), req).await
}

async fn delete_file(
    State(app): State<AppState>,
    Path((version, segment)): Path<(String, String)>,
    req: Request,
) -> Response {
    if import::is_import(&version, &segment) {
        return import::delete(&app, &req.into_parts().0, &segment).await.unwrap_or_else(IntoResponse::into_response);
    }
    gemini::delete(State(app), Path((version, segment)), req).await
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
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

async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(metric::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(metric::HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}
