//! A Gemini `generateContent` reply → an OpenAI chat completion, or a stream of its server-sent events →
//! `chat.completion.chunk` events ending in `data: [DONE]`.
//!
//! Candidates become choices (thought parts left out), `finishReason` becomes `finish_reason`,
//! `usageMetadata` becomes `usage`. Upstream events are parsed by `eventsource-stream`, behind a guard
//! that refuses an event larger than [`MAX_EVENT_BYTES`] rather than buffering it without end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt as _};
use serde_json::json;

use super::tools;
use crate::error::{Error, Result};
use crate::services::model::usage::Tokens;
use crate::wire::generate::{Candidate, GenerateContentResponse, UsageMetadata};
use crate::wire::openai::{AssistantMessage, ChatChunk, ChatCompletion, Choice, ChunkChoice, Delta, ToolCall, Usage};

/// Events longer than this in an upstream stream are refused rather than buffered without end.
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ => "stop",
    }
}

pub(in crate::services::model) fn usage(metadata: &UsageMetadata) -> Usage {
    let tokens = Tokens::from(metadata);
    Usage { prompt_tokens: tokens.prompt, completion_tokens: tokens.completion, total_tokens: tokens.total }
}

/// The text of a candidate, thoughts left out.
pub(in crate::services::model) fn candidate_text(candidate: &Candidate) -> String {
    let parts = candidate.content.iter().flat_map(|content| &content.parts);
    parts.filter(|p| !p.thought).filter_map(|p| p.text.as_deref()).collect()
}

/// The function calls of a candidate, as OpenAI's tool calls (`index` set for stream deltas).
fn candidate_calls(candidate: &Candidate, numbered: bool) -> Vec<ToolCall> {
    let parts = candidate.content.iter().flat_map(|content| &content.parts);
    let calls = parts.filter_map(|p| p.function_call.as_ref());
    calls.enumerate().map(|(i, call)| tools::tool_call(call, numbered.then_some(i as u32))).collect()
}

/// `finish_reason` of a candidate: `tool_calls` when it called tools and stopped to hear back.
fn candidate_finish(candidate: &Candidate, called: bool) -> &'static str {
    match candidate.finish_reason.as_deref().map_or("stop", finish_reason) {
        "stop" if called => "tool_calls",
        other => other,
    }
}

/// OpenAI's `logprobs` for a candidate's `logprobsResult`: each chosen token with its log probability, its
/// UTF-8 bytes, and the alternatives Gemini listed at that step.
fn logprobs(candidate: &Candidate) -> Option<serde_json::Value> {
    let result = candidate.logprobs_result.as_ref()?;
    let entry = |token: &crate::wire::generate::TokenLogprob| json!({"token": token.token, "logprob": token.log_probability, "bytes": token.token.as_bytes()});
    let content: Vec<serde_json::Value> = result
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(step, chosen)| {
            let mut token = entry(chosen);
            let top = result.top_candidates.get(step).map(|top| top.candidates.iter().map(entry).collect::<Vec<_>>());
            token["top_logprobs"] = json!(top.unwrap_or_default());
            token
        })
        .collect();
    Some(json!({"content": content, "refusal": null}))
}

/// Candidates with their index (the upstream's, else their position).
fn indexed(response: &GenerateContentResponse) -> impl Iterator<Item = (u32, &Candidate)> {
    response.candidates.iter().enumerate().map(|(i, c)| (c.index.unwrap_or(u32::try_from(i).unwrap_or(0)), c))
}

/// The identity of one completion: its id, creation time and model, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    pub created: i64,
    pub model: String,
}

impl Completion {
    pub fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", crate::domain::random_alphanumeric(24)),
            created: crate::domain::Timestamp::now().unix_seconds(),
            model: model.to_owned(),
        }
    }

    /// The completion for a whole `generateContent` response.
    pub fn from_response(&self, response: &GenerateContentResponse) -> ChatCompletion {
        let mut choices: Vec<Choice> = indexed(response)
            .map(|(index, c)| {
                let calls = candidate_calls(c, false);
                let text = candidate_text(c);
                Choice {
                    index,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        content: (!text.is_empty() || calls.is_empty()).then_some(text),
                        tool_calls: (!calls.is_empty()).then_some(calls.clone()),
                    },
                    finish_reason: Some(candidate_finish(c, !calls.is_empty()).into()),
                    logprobs: logprobs(c),
                }
            })
            .collect();
        if choices.is_empty() {
            // A blocked prompt has no candidates, only `promptFeedback.blockReason`.
            let blocked = response.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some());
            choices.push(Choice {
                index: 0,
                message: AssistantMessage { role: "assistant".into(), content: Some(String::new()), tool_calls: None },
                finish_reason: Some(if blocked { "content_filter" } else { "stop" }.into()),
                logprobs: None,
            });
        }
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: response.usage_metadata.as_ref().map(usage),
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }
}

/// Turns the upstream's `generateContent` events into `chat.completion.chunk`s.
struct ChunkMapper {
    completion: Completion,
    include_usage: bool,
    role_sent: Vec<u32>,
    /// Choices that called a tool (their `finish_reason` is `tool_calls`).
    called: Vec<u32>,
    usage: Option<Usage>,
}

impl ChunkMapper {
    fn map(&mut self, response: &GenerateContentResponse) -> Vec<ChatChunk> {
        if let Some(metadata) = &response.usage_metadata {
            self.usage = Some(usage(metadata));
        }
        let mut chunks = Vec::new();
        for (index, candidate) in indexed(response) {
            let first = !self.role_sent.contains(&index);
            if first {
                self.role_sent.push(index);
            }
            let text = candidate_text(candidate);
            // Gemini sends each function call whole, in one event: it goes out whole, in one delta.
            let calls = candidate_calls(candidate, true);
            if !calls.is_empty() && !self.called.contains(&index) {
                self.called.push(index);
            }
            let delta = Delta {
                role: first.then(|| "assistant".into()),
                content: (!text.is_empty() || (first && calls.is_empty())).then_some(text),
                tool_calls: (!calls.is_empty()).then_some(calls),
            };
            let finish = candidate
                .finish_reason
                .is_some()
                .then(|| candidate_finish(candidate, self.called.contains(&index)).to_owned());
            let logprobs = logprobs(candidate);
            chunks
                .push(self.completion.chunk(vec![ChunkChoice { index, delta, finish_reason: finish, logprobs }], None));
        }
        chunks
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.include_usage {
            out.push(sse(&self.completion.chunk(Vec::new(), self.usage.clone())));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
}

fn sse(value: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\n"))
}

/// The error event for a failure after the reply began: logged whole here (the response is already
/// under way, so no surface will log it), told to the caller without internals (the `openai` SDKs raise
/// it).
fn failed_mid_stream(err: &Error) -> Bytes {
    tracing::warn!(error = %err, "a streamed model reply failed mid-way");
    sse(&json!({"error": {"message": err.public_message(), "type": "api_error", "code": "upstream_error"}}))
}

/// Maps an upstream SSE body to chat completion chunks, ending with `data: [DONE]`, or with an error
/// event if the upstream fails. Events that are not a `generateContent` response (comments, keep-alives)
/// are skipped.
pub fn chunks(
    upstream: BoxStream<'static, Result<Bytes>>,
    completion: Completion,
    include_usage: bool,
) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    let events = parsed_events(upstream);
    let mapper = ChunkMapper { completion, include_usage, role_sent: Vec::new(), called: Vec::new(), usage: None };
    stream::unfold(Some((events, mapper)), |state| async move {
        let (mut events, mut mapper) = state?;
        match events.next().await {
            Some(Ok(response)) => {
                let chunks = mapper.map(&response).iter().map(sse).collect();
                Some((chunks, Some((events, mapper))))
            }
            Some(Err(err)) => Some((vec![failed_mid_stream(&err)], None)),
            None => Some((mapper.finish(), None)),
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
    .boxed()
}

/// The `generateContent` responses of an upstream SSE body, as they come (events that are not one —
/// comments, keep-alives — skipped); a transport failure or an oversized event ends it with an error.
pub(in crate::services::model) fn parsed_events(
    upstream: BoxStream<'static, Result<Bytes>>,
) -> BoxStream<'static, Result<GenerateContentResponse>> {
    EventBound::new(upstream)
        .eventsource()
        .filter_map(|event| async move {
            match event {
                Ok(event) => serde_json::from_str::<GenerateContentResponse>(&event.data).ok().map(Ok),
                Err(eventsource_stream::EventStreamError::Transport(err)) => Some(Err(err)),
                Err(other) => Some(Err(Error::internal(other.to_string()))),
            }
        })
        .boxed()
}

/// Passes an SSE byte stream through unchanged, failing once more than [`MAX_EVENT_BYTES`] arrive without
/// the blank line that ends an event: the parser after it buffers a whole event, so this bounds it.
/// (`\r` is skipped: Google ends lines with `\n` or `\r\n`.)
struct EventBound {
    inner: BoxStream<'static, Result<Bytes>>,
    /// Bytes since the last blank line, line ends not counted.
    since_boundary: usize,
    /// Bytes of the current line.
    line: usize,
}

impl EventBound {
    fn new(inner: BoxStream<'static, Result<Bytes>>) -> Self {
        Self { inner, since_boundary: 0, line: 0 }
    }

    fn count(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match byte {
                b'\n' if self.line == 0 => self.since_boundary = 0,
                b'\n' => self.line = 0,
                b'\r' => {}
                _ => {
                    self.line += 1;
                    self.since_boundary += 1;
                }
            }
        }
    }
}

impl Stream for EventBound {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            this.count(bytes);
            if this.since_boundary > MAX_EVENT_BYTES {
                return Poll::Ready(Some(Err(Error::internal("an upstream event is larger than 64 MiB"))));
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt as _;
    use serde_json::Value;

    use super::*;

    fn completion() -> Completion {
        Completion { id: "chatcmpl-1".into(), created: 7, model: "m".into() }
    }

    async fn events_of(pieces: Vec<Result<Bytes>>, include_usage: bool) -> Vec<String> {
        let upstream = stream::iter(pieces).boxed();
        let events: Vec<Bytes> = chunks(upstream, completion(), include_usage).try_collect().await.unwrap();
        events.iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect()
    }

    fn chunk(event: &str) -> ChatChunk {
        serde_json::from_str(event.strip_prefix("data: ").unwrap().trim()).unwrap()
    }

    #[test]
    fn a_response_becomes_a_completion_without_thoughts() {
        let response: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"parts": [{"text": "thinking", "thought": true}, {"text": "Hello"}, {"text": " world"}]},
                            "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 1, "totalTokenCount": 6}
        }))
        .unwrap();
        let chat = completion().from_response(&response);
        assert_eq!(chat.choices[0].message.content.as_deref(), Some("Hello world"));
        assert_eq!(chat.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(chat.usage, Some(Usage { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 }));
        let blocked: GenerateContentResponse =
            serde_json::from_value(json!({"promptFeedback": {"blockReason": "SAFETY"}})).unwrap();
        assert_eq!(completion().from_response(&blocked).choices[0].finish_reason.as_deref(), Some("content_filter"));
    }

    #[tokio::test]
    async fn a_stream_split_anywhere_becomes_chunks_then_usage_then_done() {
        let first = r#"data: {"candidates": [{"content": {"parts": [{"text": "Hél"}]}}]}"#;
        let last = r#"data: {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2}}"#;
        let whole = format!(": keep-alive\r\n\r\n{first}\r\n\r\n{last}\r\n\r\n");
        // Cut inside a line, inside a line end, inside a multi-byte character, and before the last byte.
        let inside_e_acute = whole.find('é').unwrap() + 1;
        let after_first = whole.find(first).unwrap() + first.len() + 1;
        for cut in [20, after_first, inside_e_acute, whole.len() - 1] {
            let (a, b) = whole.as_bytes().split_at(cut);
            let text = events_of(vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))], true).await;
            assert_eq!(text.len(), 4, "cut at {cut}: {text:?}");
            assert_eq!(
                chunk(&text[0]).choices[0].delta,
                Delta { role: Some("assistant".into()), content: Some("Hél".into()), tool_calls: None }
            );
            assert_eq!(
                chunk(&text[1]).choices[0].delta,
                Delta { role: None, content: Some("lo".into()), tool_calls: None }
            );
            assert_eq!(chunk(&text[1]).choices[0].finish_reason.as_deref(), Some("stop"));
            assert_eq!(chunk(&text[2]).usage, Some(Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }));
            assert!(chunk(&text[2]).choices.is_empty());
            assert_eq!(text[3], "data: [DONE]\n\n");
        }
    }

    #[tokio::test]
    async fn an_upstream_failure_or_an_endless_event_ends_the_stream_with_an_error_event() {
        let first =
            Ok(Bytes::from_static(b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}\n\n"));
        let text = events_of(vec![first, Err(Error::internal("connection reset"))], false).await;
        assert_eq!(text.len(), 2, "{text:?}");
        let error: Value = serde_json::from_str(text[1].strip_prefix("data: ").unwrap().trim()).unwrap();
        assert_eq!(error["error"]["code"], "upstream_error");
        assert!(!text[1].contains("connection reset"), "no internals: {}", text[1]);

        let line = Bytes::from(vec![b'x'; 1024 * 1024]);
        let endless: Vec<Result<Bytes>> =
            std::iter::once(Ok(Bytes::from_static(b"data: "))).chain((0..65).map(|_| Ok(line.clone()))).collect();
        let text = events_of(endless, false).await;
        assert_eq!(text.len(), 1, "the event is refused, not buffered");
        assert!(text[0].contains("\"error\""));
    }
}
