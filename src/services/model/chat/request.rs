//! An OpenAI chat completion request → a Gemini `generateContent` request.
//!
//! System and developer messages become `systemInstruction`; user and assistant messages become
//! `contents` (roles `user` and `model`); content parts map to Gemini parts: `text`; `image_url` (a string
//! or `{url, format}`; a `data:` URL goes inline); `input_audio` (inline); `file` (`file_id` of a filegate
//! file — `file-…` as the OpenAI Files surface names it, `qfile-…`, `files/…` — or a `file_data` `data:` URL), with the MIME type from `format` or
//! `mime_type` when given, else filled from the file. Sampling settings map to `generationConfig`.
//! Parameters are taken from a closed list ([`IGNORED`], [`REFUSED`], the typed fields of
//! [`ChatRequest`]); anything else is refused by name rather than silently dropped.

use std::collections::HashMap;

use serde_json::Value;

use super::tools;

use crate::domain::{FileId, IMPORT_ID_PREFIX};
use crate::error::{Error, Result};
use crate::wire::generate::{Content, GenerateContentRequest, GenerationConfig, Part};
use crate::wire::openai::{ChatMessage, ChatRequest};

/// Parameters accepted and without effect: they change nothing the model answers (`user`, `store`,
/// `metadata` and `service_tier` are OpenAI's bookkeeping; `parallel_tool_calls` means nothing without
/// tools).
pub const IGNORED: [&str; 7] =
    ["user", "store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "parallel_tool_calls"];

/// Parameters whose meaning filegate cannot keep, with what to do instead. Refused when set (a `null`,
/// `false`, empty list or `tool_choice: "none"` is not a request for the feature).
pub const REFUSED: [(&str, &str); 8] = [
    ("functions", "the deprecated functions parameter is not translated: use tools"),
    ("function_call", "the deprecated function_call parameter is not translated: use tool_choice"),
    ("logit_bias", "Gemini has no logit bias"),
    ("audio", "audio output is not translated"),
    ("modalities", "only text output is translated"),
    ("prediction", "predicted outputs are not supported by Gemini"),
    ("web_search_options", "web search is not translated: use the googleSearch tool on the native route"),
    ("reasoning_effort", "thinking settings are not translated: use thinkingConfig on the native route"),
];

/// The `generateContent` request for a chat request.
pub fn to_generate_content(request: &ChatRequest) -> Result<GenerateContentRequest> {
    check_parameters(request)?;
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Each tool call's name by its id: a `tool` message answers by id, Gemini by name.
    let mut call_names = HashMap::new();
    for (index, message) in request.messages.iter().enumerate() {
        let at = format!("messages[{index}]");
        match message.role.as_str() {
            "system" | "developer" => system.extend(message_parts(message, index)?),
            "user" => contents.push(Content { role: Some("user"), parts: message_parts(message, index)? }),
            "assistant" => {
                let calls = message.tool_calls.as_deref().unwrap_or_default();
                let mut parts = match (&message.content, calls.is_empty()) {
                    (None | Some(Value::Null), false) => Vec::new(),
                    _ => message_parts(message, index)?,
                };
                parts.extend(tools::calls(calls, &at, &mut call_names)?);
                contents.push(Content { role: Some("model"), parts });
            }
            "tool" => {
                let answer =
                    tools::response(message.tool_call_id.as_deref(), message.content.as_ref(), &at, &call_names)?;
                // Answers to one turn's calls go back together, in one user turn.
                match contents.last_mut() {
                    Some(last) if last.parts.iter().all(|p| matches!(p, Part::FunctionResponse { .. })) => {
                        last.parts.push(answer);
                    }
                    _ => contents.push(Content { role: Some("user"), parts: vec![answer] }),
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "{at}: the role \"{other}\" is not supported (use system, developer, user, assistant or tool)."
                )));
            }
        }
    }
    if contents.is_empty() {
        return Err(Error::invalid("messages must contain at least one user or assistant message."));
    }
    let declared = tools::declarations(request.tools.as_deref().unwrap_or_default())?;
    let tool_config = tools::tool_config(declared.is_some(), request.tool_choice.as_ref())?;
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content { role: None, parts: system }),
        generation_config: generation_config(request)?,
        tools: declared,
        tool_config,
    })
}

fn check_parameters(request: &ChatRequest) -> Result<()> {
    check_closed_list(&request.other, &IGNORED, &REFUSED, "chat completions")
}

/// Checks the parameters an OpenAI surface does not translate against its closed lists: an ignored one
/// passes, a refused one is a 400 saying what to do instead, any other a 400 naming it — unless it asks for
/// nothing (a `null`, `false`, `[]` or `{}` is not a request for a feature).
pub(in crate::services::model) fn check_closed_list<'a>(
    parameters: impl IntoIterator<Item = (&'a String, &'a Value)>,
    ignored: &[&str],
    refused: &[(&str, &str)],
    surface: &str,
) -> Result<()> {
    for (name, value) in parameters {
        if ignored.contains(&name.as_str()) || !is_set(value) {
            continue;
        }
        return Err(match refused.iter().find(|(refused, _)| refused == name) {
            Some((_, why)) => Error::invalid(format!("{name} is not supported by filegate's {surface}: {why}.")),
            None => Error::invalid(format!(
                "Unrecognized request argument supplied: {name} (filegate's {surface} take the parameters listed \
                 in docs/models.md)."
            )),
        });
    }
    Ok(())
}

pub(in crate::services::model) fn is_set(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    }
}

fn generation_config(request: &ChatRequest) -> Result<GenerationConfig> {
    let stop_sequences = match &request.stop {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::invalid("stop must be a string or a list of strings."))?,
        ),
        Some(_) => return Err(Error::invalid("stop must be a string or a list of strings.")),
    };
    let mut config = GenerationConfig {
        max_output_tokens: request.max_completion_tokens.or(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        candidate_count: request.n.filter(|&n| n != 1),
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        stop_sequences,
        response_logprobs: request.logprobs.filter(|&asked| asked),
        logprobs: match (request.logprobs, request.top_logprobs) {
            (_, None | Some(0)) => None,
            (Some(true), Some(n)) if n <= 20 => Some(n),
            (Some(true), Some(n)) => return Err(Error::invalid(format!("top_logprobs must be at most 20, got {n}."))),
            (_, Some(_)) => return Err(Error::invalid("top_logprobs needs logprobs: true.")),
        },
        ..GenerationConfig::default()
    };
    match request.response_format.as_ref().map(|f| (f.get("type").and_then(Value::as_str), f)) {
        None | Some((Some("text"), _)) => {}
        Some((Some("json_object"), _)) => config.response_mime_type = Some("application/json"),
        Some((Some("json_schema"), format)) => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema = format.pointer("/json_schema/schema").cloned();
        }
        Some(_) => {
            return Err(Error::invalid("response_format.type must be text, json_object or json_schema."));
        }
    }
    Ok(config)
}

fn message_parts(message: &ChatMessage, index: usize) -> Result<Vec<Part>> {
    match &message.content {
        Some(Value::String(text)) => Ok(vec![Part::Text(text.clone())]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| content_part(part, &format!("messages[{index}].content[{i}]")))
            .collect(),
        None | Some(Value::Null) => Err(Error::invalid(format!("messages[{index}] has no content."))),
        Some(_) => Err(Error::invalid(format!("messages[{index}].content must be a string or a list of parts."))),
    }
}

pub(in crate::services::model) fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn content_part(part: &Value, at: &str) -> Result<Part> {
    let missing = |what: &str| Error::invalid(format!("{at}: {what}"));
    match str_at(part, "type") {
        Some("text") => Ok(Part::Text(str_at(part, "text").unwrap_or_default().to_owned())),
        Some("image_url") => {
            let image = part.get("image_url").ok_or_else(|| missing("image_url is missing"))?;
            let (url, mime) = match image {
                Value::String(url) => (url.as_str(), None),
                _ => (
                    str_at(image, "url").ok_or_else(|| missing("image_url.url is missing"))?,
                    str_at(image, "format").or_else(|| str_at(image, "mime_type")),
                ),
            };
            media(url, mime, Some("image/jpeg"), at)
        }
        Some("input_audio") => {
            let audio = part.get("input_audio").ok_or_else(|| missing("input_audio is missing"))?;
            let data = str_at(audio, "data").ok_or_else(|| missing("input_audio.data is missing"))?;
            let format = str_at(audio, "format").unwrap_or("wav");
            let mime_type = if format.contains('/') { format.to_owned() } else { format!("audio/{format}") };
            Ok(Part::InlineData { mime_type, data: data.to_owned() })
        }
        Some("file") => {
            let file = part.get("file").ok_or_else(|| missing("file is missing"))?;
            let mime = str_at(file, "format").or_else(|| str_at(file, "mime_type"));
            if let Some(id) = str_at(file, "file_id") {
                return media(&file_id_uri(id), mime, None, at);
            }
            let data = str_at(file, "file_data").ok_or_else(|| missing("file needs file_id or file_data"))?;
            if data.starts_with("data:") {
                return media(data, mime, None, at);
            }
            let mime_type = mime
                .map(str::to_owned)
                .or_else(|| {
                    str_at(file, "filename").and_then(|n| mime_guess::from_path(n).first()).map(|m| m.to_string())
                })
                .ok_or_else(|| missing("file.file_data needs a format (its MIME type) or a filename"))?;
            Ok(Part::InlineData { mime_type, data: data.to_owned() })
        }
        Some(other) => Err(Error::invalid(format!("{at}: the part type \"{other}\" is not supported."))),
        None => Err(missing("type is missing")),
    }
}

/// The reference an OpenAI `file_id` makes: an OpenAI id (`file-{id}`, as `POST /v1/files` hands out) or
/// a bare filegate id is `files/{id}`; `qfile-…` and anything with a scheme pass as they are.
pub(in crate::services::model) fn file_id_uri(id: &str) -> String {
    if id.contains(':') || id.contains('/') || id.starts_with(IMPORT_ID_PREFIX) {
        id.to_owned()
    } else {
        format!("files/{}", FileId::from_openai(id))
    }
}

/// A part for a URL: `data:` URLs inline, anything else by reference (filegate files are resolved later,
/// with their MIME type filled in when none is given here).
pub(in crate::services::model) fn media(
    url: &str,
    mime: Option<&str>,
    fallback: Option<&str>,
    at: &str,
) -> Result<Part> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| Error::invalid(format!("{at}: malformed data: URL")))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| Error::invalid(format!("{at}: only base64 data: URLs are supported")))?;
        let media_type = mime.unwrap_or(if media_type.is_empty() { "application/octet-stream" } else { media_type });
        return Ok(Part::InlineData { mime_type: media_type.to_owned(), data: data.to_owned() });
    }
    let guessed = || {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        mime_guess::from_path(path).first().map(|m| m.to_string())
    };
    let is_filegate = url.starts_with("files/") || url.starts_with(IMPORT_ID_PREFIX);
    let mime_type = match mime {
        Some(m) => Some(m.to_owned()),
        None if is_filegate => None,
        None => guessed().or_else(|| fallback.map(str::to_owned)),
    };
    Ok(Part::FileData { file_uri: url.to_owned(), mime_type })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(value: Value) -> ChatRequest {
        serde_json::from_value(value).unwrap()
    }

    fn translated(value: Value) -> Value {
        serde_json::to_value(to_generate_content(&request(value)).unwrap()).unwrap()
    }

    #[test]
    fn a_chat_request_becomes_generate_content() {
        let body = translated(json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "file", "file": {"file_id": "qfile-abc", "format": "video/mp4"}},
                    {"type": "file", "file": {"file_id": "def"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                    {"type": "image_url", "image_url": "gs://bucket/cat.webp"},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
                    {"type": "file", "file": {"file_id": "file-ghi"}}
                ]},
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "And?"}
            ],
            "max_tokens": 100, "max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "user": "someone", "tools": [], "logprobs": false, "tool_choice": "none"
        }));
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        let parts = &body["contents"][0]["parts"];
        assert_eq!(parts[1], json!({"fileData": {"fileUri": "qfile-abc", "mimeType": "video/mp4"}}));
        assert_eq!(parts[2], json!({"fileData": {"fileUri": "files/def"}}), "the MIME type is filled from the file");
        assert_eq!(parts[3], json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}}));
        assert_eq!(parts[4], json!({"fileData": {"fileUri": "gs://bucket/cat.webp", "mimeType": "image/webp"}}));
        assert_eq!(parts[5], json!({"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}}));
        assert_eq!(parts[6], json!({"fileData": {"fileUri": "files/ghi"}}), "OpenAI's id of files/ghi");
        assert_eq!(body["contents"][1], json!({"role": "model", "parts": [{"text": "A cat."}]}));
        assert_eq!(
            body["generationConfig"],
            json!({"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
                   "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}})
        );
    }

    #[test]
    fn a_tool_calling_conversation_becomes_function_calls_and_responses() {
        let body = translated(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Oslo and Bergen?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Bergen\"}"}}]},
                {"role": "tool", "tool_call_id": "call_a", "content": "12 C"},
                {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "9 C"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "auto"
        }));
        assert_eq!(body["contents"][1]["role"], "model");
        assert_eq!(
            body["contents"][1]["parts"][1],
            json!({"functionCall": {"name": "weather", "args": {"city": "Bergen"}}})
        );
        assert_eq!(
            body["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"content": "12 C"}}},
                {"functionResponse": {"name": "weather", "response": {"content": "9 C"}}}]})
        );
        assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "weather");
        assert_eq!(body["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        let err = |v: Value| to_generate_content(&request(v)).unwrap_err().to_string();
        let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        assert!(err(user(json!([{"type": "video"}]))).contains("messages[0].content[0]: the part type \"video\""));
        assert!(
            err(user(json!([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]))).contains("base64")
        );
        assert!(err(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})).contains("tool_call_id"));
        assert!(err(json!({"model": "m", "messages": [{"role": "critic", "content": "x"}]})).contains("\"critic\""));
        assert!(err(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]})).contains("at least one"));
        assert!(
            err(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}))
                .contains("tools[0].function needs a name")
        );
        for (name, value) in [
            ("functions", json!([{"name": "f"}])),
            ("audio", json!({"voice": "alloy"})),
            ("function_call", json!("auto")),
            ("logit_bias", json!({"50256": -100})),
        ] {
            let mut refused = user(json!("hi"));
            refused[name] = value;
            assert!(err(refused).starts_with(&format!("{name} is not supported")), "{name}");
        }
        let mut unknown = user(json!("hi"));
        unknown["temprature"] = json!(0.5);
        assert!(err(unknown).contains("Unrecognized request argument supplied: temprature"));
        let mut top_alone = user(json!("hi"));
        top_alone["top_logprobs"] = json!(3);
        assert!(err(top_alone).contains("top_logprobs needs logprobs: true"));
        let mut asked = user(json!("hi"));
        asked["logprobs"] = json!(true);
        asked["top_logprobs"] = json!(3);
        let config =
            serde_json::to_value(to_generate_content(&request(asked)).unwrap()).unwrap()["generationConfig"].clone();
        assert_eq!((&config["responseLogprobs"], &config["logprobs"]), (&json!(true), &json!(3)));
    }
}
