//! A `generateContent` reply → an OpenAI Response object, or the upstream's events → the Responses event
//! stream (`response.created`, `response.output_item.added`, `response.output_text.delta`, …,
//! `response.completed` with usage), each event numbered.

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::{self, BoxStream};
use serde_json::{Map, Value, json};

use crate::domain::{Timestamp, random_alphanumeric};
use crate::error::{Error, Result};
use crate::services::model::chat::reply::{candidate_text, parsed_events, usage};
use crate::services::model::chat::tools::tool_call;
use crate::wire::generate::{Candidate, GenerateContentResponse};

/// The Response being built: its identity, the settings it echoes, and its output so far.
pub struct Building {
    id: String,
    created_at: i64,
    model: String,
    instructions: Option<String>,
    echo: Map<String, Value>,
    output: Vec<Value>,
    usage: Option<Value>,
    incomplete: Option<&'static str>,
}

fn usage_json(response: &GenerateContentResponse) -> Option<Value> {
    response.usage_metadata.as_ref().map(|metadata| {
        let usage = usage(metadata);
        json!({
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": metadata.thoughts_token_count},
            "total_tokens": usage.total_tokens,
        })
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn first_candidate(response: &GenerateContentResponse) -> Option<&Candidate> {
    response.candidates.first()
}

impl Building {
    pub fn new(model: &str, instructions: Option<String>, echo: Map<String, Value>) -> Self {
        Self {
            id: format!("resp_{}", random_alphanumeric(24)),
            created_at: Timestamp::now().unix_seconds(),
            model: model.to_owned(),
            instructions,
            echo,
            output: Vec::new(),
            usage: None,
            incomplete: None,
        }
    }

    /// The Response object as it stands (`status` given).
    fn object(&self, status: &str) -> Value {
        let text: String = self
            .output
            .iter()
            .filter(|item| item["type"] == "message")
            .filter_map(|item| item.pointer("/content/0/text").and_then(Value::as_str))
            .collect();
        let mut object = json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": self.model, "output": self.output, "output_text": text,
            "instructions": self.instructions, "error": null,
            "incomplete_details": self.incomplete.map(|reason| json!({"reason": reason})),
            "usage": self.usage, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "temperature": null, "top_p": null, "metadata": {},
        });
        for (name, value) in &self.echo {
            object[name] = value.clone();
        }
        object
    }

    fn note_finish(&mut self, candidate: &Candidate) {
        if candidate.finish_reason.as_deref() == Some("MAX_TOKENS") {
            self.incomplete = Some("max_output_tokens");
        } else if candidate.finish_reason.as_deref().is_some_and(|r| r != "STOP") {
            self.incomplete = Some("content_filter");
        }
    }

    /// The whole Response for a whole reply.
    pub fn from_response(mut self, response: &GenerateContentResponse) -> Value {
        self.usage = usage_json(response);
        if let Some(candidate) = first_candidate(response) {
            self.note_finish(candidate);
            let text = candidate_text(candidate);
            if !text.is_empty() {
                self.output.push(message_item(&format!("msg_{}", random_alphanumeric(24)), &text, "completed"));
            }
            for call in candidate.content.iter().flat_map(|c| &c.parts).filter_map(|p| p.function_call.as_ref()) {
                self.output.push(function_call_item(call));
            }
        }
        let status = if self.incomplete.is_some() { "incomplete" } else { "completed" };
        self.object(status)
    }
}

fn function_call_item(call: &crate::wire::generate::FunctionCall) -> Value {
    let call = tool_call(call, None);
    json!({"type": "function_call", "id": format!("fc_{}", random_alphanumeric(24)), "call_id": call.id,
           "name": call.function.name, "arguments": call.function.arguments, "status": "completed"})
}

/// The event stream's state: the Response, the message item being written (its id and text), the
/// events' numbering.
struct Events {
    building: Building,
    open_message: Option<(String, String)>,
    sequence: u64,
}

impl Events {
    fn event(&mut self, kind: &str, mut fields: Value) -> Bytes {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        Bytes::from(format!("event: {kind}\ndata: {fields}\n\n"))
    }

    fn start(&mut self) -> Vec<Bytes> {
        let created = self.building.object("in_progress");
        vec![
            self.event("response.created", json!({"response": created})),
            self.event("response.in_progress", json!({"response": created})),
        ]
    }

    fn close_message(&mut self, out: &mut Vec<Bytes>) {
        let Some((id, text)) = self.open_message.take() else { return };
        let index = self.building.output.len();
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        let item = message_item(&id, &text, "completed");
        out.push(self.event("response.output_item.done", json!({"output_index": index, "item": item})));
        self.building.output.push(item);
    }

    fn map(&mut self, response: &GenerateContentResponse) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some(usage) = usage_json(response) {
            self.building.usage = Some(usage);
        }
        let Some(candidate) = first_candidate(response) else { return out };
        self.building.note_finish(candidate);
        let text = candidate_text(candidate);
        if !text.is_empty() {
            let index = self.building.output.len();
            if self.open_message.is_none() {
                let id = format!("msg_{}", random_alphanumeric(24));
                let item =
                    json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                out.push(self.event("response.output_item.added", json!({"output_index": index, "item": item})));
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                out.push(self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                ));
                self.open_message = Some((id, String::new()));
            }
            let id = self.open_message.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
            out.push(self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text}),
            ));
            if let Some((_, written)) = &mut self.open_message {
                written.push_str(&text);
            }
        }
        for call in candidate.content.iter().flat_map(|c| &c.parts).filter_map(|p| p.function_call.as_ref()) {
            self.close_message(&mut out);
            let index = self.building.output.len();
            let item = function_call_item(call);
            let (id, arguments) = (item["id"].clone(), item["arguments"].clone());
            let mut started = item.clone();
            started["status"] = json!("in_progress");
            started["arguments"] = json!("");
            out.push(self.event("response.output_item.added", json!({"output_index": index, "item": started})));
            out.push(self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": arguments}),
            ));
            out.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "arguments": arguments}),
            ));
            out.push(self.event("response.output_item.done", json!({"output_index": index, "item": item})));
            self.building.output.push(item);
        }
        out
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.close_message(&mut out);
        let (kind, status) = if self.building.incomplete.is_some() {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let response = self.building.object(status);
        out.push(self.event(kind, json!({"response": response})));
        out
    }

    /// A failure after the stream began: logged here (no surface will), told to the caller as an `error`
    /// event and a failed Response.
    fn failed(&mut self, err: &Error) -> Vec<Bytes> {
        tracing::warn!(error = %err, "a streamed model reply failed mid-way");
        let message = err.public_message();
        let mut response = self.building.object("failed");
        response["error"] = json!({"code": "server_error", "message": message});
        vec![
            self.event("error", json!({"code": "upstream_error", "message": message, "param": null})),
            self.event("response.failed", json!({"response": response})),
        ]
    }
}

/// The Responses event stream for the upstream's SSE body.
pub fn events(
    upstream: BoxStream<'static, Result<Bytes>>,
    building: Building,
) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    let mut state = Events { building, open_message: None, sequence: 0 };
    let start = state.start();
    let parsed = parsed_events(upstream);
    let rest = stream::unfold(Some((parsed, state)), |current| async move {
        let (mut parsed, mut state) = current?;
        match parsed.next().await {
            Some(Ok(response)) => {
                let out = state.map(&response);
                Some((out, Some((parsed, state))))
            }
            Some(Err(err)) => Some((state.failed(&err), None)),
            None => Some((state.finish(), None)),
        }
    });
    stream::iter(vec![start]).chain(rest).flat_map(|events| stream::iter(events.into_iter().map(Ok))).boxed()
}
