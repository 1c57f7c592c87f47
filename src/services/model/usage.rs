//! Metrics of model calls: calls by model and outcome, their duration, and tokens per project from the
//! `usageMetadata` the upstream reports, read from the reply as it streams past (nothing is held back).
//!
//! Labels come from closed sets: the project is one of the server's own, and the model is the upstream
//! model only once the upstream has answered something other than 404 (it knows the name), else `unknown`;
//! a client inventing model names cannot create time series.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;

use crate::domain::ProjectId;
use crate::error::{Error, UpstreamError};
use crate::telemetry::metric;
use crate::wire::generate::{GenerateContentResponse, UsageMetadata};

/// A reply body is inspected for `usageMetadata` up to this many bytes (a JSON reply is parsed whole if it
/// fits; of a stream only the newest event matters, which is within its last bytes).
const TAP_BYTES: usize = 1024 * 1024;

/// Token counts of a `usageMetadata`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    /// Candidates and thoughts: what the model produced.
    pub completion: u64,
    pub total: u64,
}

impl From<&UsageMetadata> for Tokens {
    fn from(usage: &UsageMetadata) -> Self {
        let prompt = usage.prompt_token_count;
        let completion = usage.candidates_token_count + usage.thoughts_token_count;
        Self { prompt, completion, total: usage.total_token_count.unwrap_or(prompt + completion) }
    }
}

/// A reply as far as its usage goes: one response, or (a stream without `alt=sse`) a JSON array of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Replies {
    Many(Vec<GenerateContentResponse>),
    One(GenerateContentResponse),
}

/// The `usageMetadata` of the newest response in `body`: one JSON object, a JSON array of them, or SSE
/// `data:` lines.
pub fn last_usage(body: &[u8]) -> Option<Tokens> {
    let usage = |r: &GenerateContentResponse| r.usage_metadata.as_ref().map(Tokens::from);
    match serde_json::from_slice::<Replies>(body) {
        Ok(Replies::Many(responses)) => responses.iter().rev().find_map(usage),
        Ok(Replies::One(response)) => usage(&response),
        Err(_) => String::from_utf8_lossy(body)
            .lines()
            .rev()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<GenerateContentResponse>(data.trim()).ok())
            .find_map(|r| usage(&r)),
    }
}

/// One model call being measured, with its span (OpenTelemetry's GenAI conventions: the operation, the
/// provider, the model, and the tokens once the reply has ended).
pub struct CallMeter {
    project: ProjectId,
    model: String,
    method: &'static str,
    started: Instant,
    pub span: tracing::Span,
}

impl CallMeter {
    pub fn start(project: &ProjectId, model: &str, method: &'static str, provider: &'static str) -> Self {
        let operation = if method == "countTokens" { "count_tokens" } else { "generate_content" };
        let span = tracing::info_span!(
            "gen_ai",
            otel.name = %format_args!("{operation} {model}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = operation,
            gen_ai.provider.name = provider,
            gen_ai.request.model = model,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        );
        Self { project: project.clone(), model: model.to_owned(), method, started: Instant::now(), span }
    }

    /// Records a call that ended before any reply body: refused by filegate or failed upstream.
    pub fn failed(self, err: &Error) {
        let upstream = match err {
            Error::Upstream(upstream) => Some(upstream.as_ref()),
            _ => None,
        };
        let outcome = match upstream {
            Some(UpstreamError::Status { status, .. }) if *status >= 500 => "upstream_5xx",
            Some(UpstreamError::Status { .. }) => "upstream_4xx",
            Some(UpstreamError::Credentials { .. } | UpstreamError::Unauthorized { .. }) => "credentials",
            Some(UpstreamError::Unreachable { .. }) => "unreachable",
            Some(UpstreamError::Stalled { .. }) => "stalled",
            None => "refused",
        };
        let known = matches!(upstream, Some(UpstreamError::Status { status, .. }) if *status != 404);
        self.span.record("otel.status_code", "ERROR");
        self.record(if known { self.model.clone() } else { "unknown".into() }, outcome, None);
    }

    fn record(&self, model: String, outcome: &'static str, tokens: Option<Tokens>) {
        let labels = [("model", model.clone()), ("method", self.method.to_owned()), ("outcome", outcome.to_owned())];
        metrics::counter!(metric::MODEL_CALLS, &labels).increment(1);
        metrics::histogram!(metric::MODEL_CALL_DURATION, &labels[..2]).record(self.started.elapsed().as_secs_f64());
        if let Some(tokens) = tokens {
            self.span.record("gen_ai.usage.input_tokens", tokens.prompt);
            self.span.record("gen_ai.usage.output_tokens", tokens.completion);
            for (kind, count) in [("prompt", tokens.prompt), ("completion", tokens.completion)] {
                let labels = [("project", self.project.to_string()), ("model", model.clone()), ("kind", kind.into())];
                metrics::counter!(metric::MODEL_TOKENS, &labels).increment(count);
            }
            for (kind, count) in [("input", tokens.prompt), ("output", tokens.completion)] {
                metrics::counter!(metric::UPSTREAM_TOKENS, "model" => model.clone(), "kind" => kind).increment(count);
            }
        }
    }

    /// Wraps a reply body: passes it on unchanged and records the call when it ends (`ok`), fails
    /// (`stream_error`) or is dropped unfinished (`cancelled`: the client went away, which also drops the
    /// upstream request).
    pub fn tap<S>(self, body: S) -> Tapped<S> {
        Tapped { inner: body, meter: Some(self), seen: Vec::new() }
    }
}

pub struct Tapped<S> {
    inner: S,
    meter: Option<CallMeter>,
    seen: Vec<u8>,
}

impl<S> Tapped<S> {
    fn finish(&mut self, outcome: &'static str) {
        if let Some(meter) = self.meter.take() {
            let tokens = if outcome == "ok" { last_usage(&self.seen) } else { None };
            meter.record(meter.model.clone(), outcome, tokens);
        }
    }

    /// Keeps the body's last bytes, cut at a line start once it is over [`TAP_BYTES`].
    fn keep(&mut self, chunk: &[u8]) {
        self.seen.extend_from_slice(chunk);
        if self.seen.len() > TAP_BYTES {
            let cut = self.seen.len() - TAP_BYTES / 2;
            let line_start = self.seen[cut..].iter().position(|&b| b == b'\n').map_or(self.seen.len(), |p| cut + p + 1);
            self.seen.drain(..line_start);
        }
    }
}

impl<S: Stream<Item = Result<Bytes, E>> + Unpin, E> Stream for Tapped<S> {
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let chunk = chunk.clone();
                self.keep(&chunk);
            }
            Poll::Ready(Some(Err(_))) => self.finish("stream_error"),
            Poll::Ready(None) => self.finish("ok"),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S> Drop for Tapped<S> {
    fn drop(&mut self) {
        self.finish("cancelled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_every_reply_shape() {
        let usage =
            r#"{"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 2, "totalTokenCount": 17}"#;
        let expected = Some(Tokens { prompt: 10, completion: 7, total: 17 });
        let object = format!(r#"{{"candidates": [], "usageMetadata": {usage}}}"#);
        assert_eq!(last_usage(object.as_bytes()), expected);
        let array = format!(r#"[{{"candidates": []}}, {{"usageMetadata": {usage}}}]"#);
        assert_eq!(last_usage(array.as_bytes()), expected);
        let sse = format!(
            "data: {{\"usageMetadata\": {{\"promptTokenCount\": 1}}}}\r\n\r\ndata: {{\"usageMetadata\": {usage}}}\r\n\r\n"
        );
        assert_eq!(last_usage(sse.as_bytes()), expected);
        assert_eq!(last_usage(b"data: {\"candidates\": []}\n\n"), None);
    }
}
