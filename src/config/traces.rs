//! The `OTEL_*` variables filegate reads for traces (`telemetry/traces.rs` exports them).

use super::{Problems, TraceSettings};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the `OTEL_*` variables: `None` when no endpoint is set; problems for what filegate cannot do.
pub fn trace_settings(problems: &mut Problems) -> Option<TraceSettings> {
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    if var("OTEL_TRACES_EXPORTER").is_some_and(|e| e == "none") {
        return None;
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(other) = protocol.filter(|p| p != "http/protobuf") {
        problems
            .push(format!("OTEL_EXPORTER_OTLP_PROTOCOL \"{other}\": filegate exports traces with http/protobuf only"));
    }
    Some(TraceSettings { service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "filegate".into()) })
}
