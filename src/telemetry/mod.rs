//! Logs, traces and metrics. Log lines go to stderr (`RUST_LOG` filters, `FILEGATE_LOG_FORMAT=json` for
//! machines); traces go to an OTLP collector when one is configured ([`traces`]); metrics are Prometheus
//! text at `GET /metrics` (or on `FILEGATE_METRICS_LISTEN`). Metric names live here, in one place.

pub mod traces;

pub use traces::TraceSettings;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

/// How log lines are written: for people, or one JSON object per line for collectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err(()),
        }
    }
}

/// Metric names, each described once in [`init_metrics`].
pub mod metric {
    pub const HTTP_REQUESTS: &str = "filegate_http_requests_total";
    pub const HTTP_DURATION: &str = "filegate_http_request_duration_seconds";
    pub const UPLOAD_BYTES: &str = "filegate_upload_bytes_total";
    pub const DOWNLOAD_BYTES: &str = "filegate_download_bytes_total";
    pub const UPLOADS_STARTED: &str = "filegate_uploads_started_total";
    pub const UPLOADS_FINALIZED: &str = "filegate_uploads_finalized_total";
    pub const FILES_EXPIRED: &str = "filegate_files_expired_total";
    pub const BLOBS_RECLAIMED: &str = "filegate_blobs_reclaimed_total";
    pub const IMPORTS_CREATED: &str = "filegate_imports_created_total";
    pub const IMPORTS_FINISHED: &str = "filegate_imports_finished_total";
    pub const IMPORT_BYTES: &str = "filegate_import_bytes_total";
    pub const MODEL_CALLS: &str = "filegate_model_calls_total";
    pub const MODEL_CALL_DURATION: &str = "filegate_model_call_duration_seconds";
    pub const MODEL_TOKENS: &str = "filegate_model_tokens_total";
    pub const MODEL_FILE_COPIES: &str = "filegate_model_file_copies_total";
    pub const UPSTREAM_REQUESTS: &str = "filegate_upstream_requests_total";
    pub const UPSTREAM_TOKENS: &str = "filegate_upstream_tokens_total";
    pub const MODEL_BYTES: &str = "filegate_model_bytes_total";
    pub const STORE_PART_SECONDS: &str = "filegate_store_part_seconds";
    pub const DATABASE_CONNECTIONS: &str = "filegate_database_connections";
    pub const WEBHOOK_DELIVERIES: &str = "filegate_webhook_deliveries_total";
    pub const WEBHOOK_LATENCY: &str = "filegate_webhook_delivery_latency_seconds";
    pub const WEBHOOK_PENDING: &str = "filegate_webhook_pending_deliveries";
    pub const WEBHOOK_OLDEST: &str = "filegate_webhook_oldest_pending_seconds";
}

/// Installs the log (and, with `traces`, the OpenTelemetry) subscriber.
pub fn init_tracing(format: LogFormat, traces: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let logs: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
    };
    // filegate's own spans only: the exporter's HTTP client (hyper, reqwest) would otherwise trace itself.
    let spans =
        traces.map(|provider| traces::layer(provider).with_filter(EnvFilter::new("off,filegate=info,tower_http=info")));
    let _ = tracing_subscriber::registry().with(logs).with(spans).try_init();
}

/// Installs the global Prometheus recorder and describes every metric.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])?
        .install_recorder()?;
    metrics::describe_counter!(metric::HTTP_REQUESTS, "HTTP requests answered, by method, route and status");
    metrics::describe_histogram!(metric::HTTP_DURATION, metrics::Unit::Seconds, "HTTP request duration");
    metrics::describe_counter!(metric::UPLOAD_BYTES, metrics::Unit::Bytes, "bytes committed by uploads");
    metrics::describe_counter!(metric::DOWNLOAD_BYTES, metrics::Unit::Bytes, "bytes sent by downloads");
    metrics::describe_counter!(metric::UPLOADS_STARTED, "upload sessions started");
    metrics::describe_counter!(metric::UPLOADS_FINALIZED, "uploads finalized");
    metrics::describe_counter!(metric::FILES_EXPIRED, "files removed by expiry");
    metrics::describe_counter!(metric::BLOBS_RECLAIMED, "blobs and staging areas deleted by garbage collection");
    metrics::describe_counter!(metric::IMPORTS_CREATED, "URL import tasks created");
    metrics::describe_counter!(metric::IMPORTS_FINISHED, "URL import tasks finished, by status (ready, failed)");
    metrics::describe_counter!(metric::IMPORT_BYTES, metrics::Unit::Bytes, "bytes committed by URL imports");
    metrics::describe_counter!(metric::MODEL_CALLS, "model calls forwarded, by model, method and outcome");
    metrics::describe_histogram!(
        metric::MODEL_CALL_DURATION,
        metrics::Unit::Seconds,
        "model call duration until the reply ended, by model and method"
    );
    metrics::describe_counter!(metric::MODEL_TOKENS, "tokens the upstream counted, by project, model and kind");
    metrics::describe_counter!(metric::MODEL_FILE_COPIES, "files copied so that an upstream can read them, by target");
    metrics::describe_counter!(
        metric::UPSTREAM_REQUESTS,
        "requests to the model upstream, by model (unknown until the upstream knows it) and HTTP status (error: none)"
    );
    metrics::describe_counter!(
        metric::UPSTREAM_TOKENS,
        "tokens the upstream counted, by model and kind (input, output)"
    );
    metrics::describe_counter!(
        metric::MODEL_BYTES,
        metrics::Unit::Bytes,
        "file bytes sent to the model upstream, by how (inline, copy)"
    );
    metrics::describe_histogram!(
        metric::STORE_PART_SECONDS,
        metrics::Unit::Seconds,
        "time to store one part in a bucket, by provider"
    );
    metrics::describe_gauge!(
        metric::DATABASE_CONNECTIONS,
        "the metadata database pool's connections, by state (idle, in_use)"
    );
    metrics::describe_counter!(
        metric::WEBHOOK_DELIVERIES,
        "webhook delivery attempts, by outcome (delivered, failed, abandoned, deferred)"
    );
    metrics::describe_histogram!(
        metric::WEBHOOK_LATENCY,
        metrics::Unit::Seconds,
        "from the change an event reports to the receiver's 2xx"
    );
    metrics::describe_gauge!(metric::WEBHOOK_PENDING, "webhook deliveries not yet delivered (all nodes)");
    metrics::describe_gauge!(
        metric::WEBHOOK_OLDEST,
        metrics::Unit::Seconds,
        "age of the oldest webhook delivery not yet delivered (0 when none)"
    );
    Ok(handle)
}
