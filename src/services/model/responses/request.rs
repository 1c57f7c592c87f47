//! An OpenAI Responses request → `generateContent`, from a closed list of parameters and item types: none
//! is dropped silently (`docs/models.md` has the table).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::services::model::chat::request::{check_closed_list, file_id_uri, is_set, media, str_at};
use crate::services::model::chat::tools;
use crate::wire::generate::{Content, GenerateContentRequest, GenerationConfig, Part};

/// Accepted and without effect: OpenAI's bookkeeping, or settings Gemini decides for itself.
pub const IGNORED: [&str; 8] = [
    "user",
    "metadata",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "parallel_tool_calls",
    "truncation",
    "stream_options",
];

/// Refused when set, with what to do instead.
pub const REFUSED: [(&str, &str); 9] = [
    ("previous_response_id", "filegate keeps no conversation state: send the whole conversation in input"),
    ("conversation", "filegate keeps no conversation state: send the whole conversation in input"),
    ("store", "filegate stores no responses: leave store out or set it to false"),
    ("background", "background responses are not kept: call without background"),
    ("reasoning", "thinking settings are not translated: use thinkingConfig on the native generateContent route"),
    ("include", "extra output (logprobs, reasoning, search results) is not translated"),
    ("top_logprobs", "log probabilities are not translated: use logprobs on the native route"),
    ("max_tool_calls", "Gemini has no limit on tool calls per response"),
    ("prompt", "stored prompts are OpenAI's: send the input itself"),
];

/// What a Responses request asks beyond its `generateContent` body.
pub struct Asked {
    pub model: String,
    pub stream: bool,
    pub instructions: Option<String>,
    /// The request's settings echoed in the response object (`temperature`, `tools`, …).
    pub echo: Map<String, Value>,
}

/// The `generateContent` body for a Responses request.
pub fn to_generate_content(request: &Value) -> Result<(GenerateContentRequest, Asked)> {
    let Some(fields) = request.as_object() else {
        return Err(Error::invalid("The body must be a JSON object."));
    };
    let known = [
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "tools",
        "tool_choice",
        "stream",
    ];
    let untranslated = fields.iter().filter(|(name, _)| !known.contains(&name.as_str()));
    check_closed_list(untranslated, &IGNORED, &REFUSED, "responses")?;
    let model = str_at(request, "model").ok_or_else(|| Error::invalid("Missing required parameter: 'model'."))?;
    let instructions = match request.get("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(Error::invalid("instructions must be a string.")),
    };
    let (contents, mut system) = contents(request.get("input").unwrap_or(&Value::Null))?;
    if let Some(text) = &instructions {
        system.insert(0, Part::Text(text.clone()));
    }

    let number = |name: &str| match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or_else(|| Error::invalid(format!("{name} must be a number."))),
    };
    let mut config = GenerationConfig {
        max_output_tokens: match request.get("max_output_tokens") {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(value.as_u64().ok_or_else(|| Error::invalid("max_output_tokens must be a whole number."))?)
            }
        },
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        ..GenerationConfig::default()
    };
    let format = request.pointer("/text/format");
    if request.pointer("/text/verbosity").is_some_and(is_set) {
        return Err(Error::invalid(
            "text.verbosity is not supported by filegate's responses: Gemini has no verbosity setting.",
        ));
    }
    match format.map(|f| (f.get("type").and_then(Value::as_str), f)) {
        None | Some((Some("text"), _)) => {}
        Some((Some("json_object"), _)) => config.response_mime_type = Some("application/json"),
        Some((Some("json_schema"), format)) => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema = format.get("schema").cloned();
        }
        Some(_) => return Err(Error::invalid("text.format.type must be text, json_object or json_schema.")),
    }

    // Responses spells function tools flat (`{"type": "function", "name", …}`); chat nests them.
    let tools_in = request.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let nested: Vec<Value> = tools_in
        .iter()
        .map(|tool| match tool.get("type").and_then(Value::as_str) {
            Some("function") => json!({"type": "function", "function": {
                "name": tool.get("name"), "description": tool.get("description"), "parameters": tool.get("parameters")}}),
            _ => tool.clone(),
        })
        .collect();
    let declared = tools::declarations(&nested)?;
    let choice = request.get("tool_choice").map(|choice| match choice.get("type").and_then(Value::as_str) {
        Some("function") => json!({"type": "function", "function": {"name": choice.get("name")}}),
        _ => choice.clone(),
    });
    let tool_config = tools::tool_config(declared.is_some(), choice.as_ref())?;

    let mut echo = Map::new();
    for name in ["temperature", "top_p", "max_output_tokens", "tool_choice", "tools", "text", "metadata"] {
        if let Some(value) = request.get(name) {
            echo.insert(name.into(), value.clone());
        }
    }
    let asked = Asked {
        model: model.to_owned(),
        stream: request.get("stream").and_then(Value::as_bool).unwrap_or(false),
        instructions,
        echo,
    };
    let body = GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content { role: None, parts: system }),
        generation_config: config,
        tools: declared,
        tool_config,
    };
    Ok((body, asked))
}

/// `input` (a string, or items) → contents, and the system parts of `system`/`developer` messages.
fn contents(input: &Value) -> Result<(Vec<Content>, Vec<Part>)> {
    let items = match input {
        Value::String(text) => {
            return Ok((vec![Content { role: Some("user"), parts: vec![Part::Text(text.clone())] }], Vec::new()));
        }
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err(Error::invalid("input must be a string or a non-empty list of items.")),
    };
    let (mut contents, mut system): (Vec<Content>, Vec<Part>) = (Vec::new(), Vec::new());
    let mut call_names = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item.get("type").and_then(Value::as_str).unwrap_or("message") {
            "message" => {
                let parts = message_parts(item.get("content").unwrap_or(&Value::Null), &at)?;
                match item.get("role").and_then(Value::as_str) {
                    Some("user") => contents.push(Content { role: Some("user"), parts }),
                    Some("assistant") => contents.push(Content { role: Some("model"), parts }),
                    Some("system" | "developer") => system.extend(parts),
                    other => {
                        return Err(Error::invalid(format!(
                            "{at}.role must be user, assistant, system or developer (got {other:?})."
                        )));
                    }
                }
            }
            "function_call" => {
                let call = json!({"id": item.get("call_id"), "function": {"name": item.get("name"), "arguments": item.get("arguments")}});
                let parts = tools::calls(&[call], &at, &mut call_names)?;
                match contents.last_mut() {
                    Some(last) if last.role == Some("model") => last.parts.extend(parts),
                    _ => contents.push(Content { role: Some("model"), parts }),
                }
            }
            "function_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str);
                let answer = tools::response(call_id, item.get("output"), &at, &call_names)?;
                match contents.last_mut() {
                    Some(last) if last.parts.iter().all(|p| matches!(p, Part::FunctionResponse { .. })) => {
                        last.parts.push(answer);
                    }
                    _ => contents.push(Content { role: Some("user"), parts: vec![answer] }),
                }
            }
            other => return Err(Error::invalid(format!("{at}: the item type \"{other}\" is not supported."))),
        }
    }
    if contents.is_empty() {
        return Err(Error::invalid("input must contain at least one user or assistant message."));
    }
    Ok((contents, system))
}

fn message_parts(content: &Value, at: &str) -> Result<Vec<Part>> {
    match content {
        Value::String(text) => Ok(vec![Part::Text(text.clone())]),
        Value::Array(parts) => {
            parts.iter().enumerate().map(|(i, part)| content_part(part, &format!("{at}.content[{i}]"))).collect()
        }
        _ => Err(Error::invalid(format!("{at}.content must be a string or a list of parts."))),
    }
}

fn content_part(part: &Value, at: &str) -> Result<Part> {
    let missing = |what: &str| Error::invalid(format!("{at}: {what}"));
    match str_at(part, "type") {
        Some("input_text" | "output_text") => Ok(Part::Text(str_at(part, "text").unwrap_or_default().to_owned())),
        Some("input_image") => match (str_at(part, "file_id"), str_at(part, "image_url")) {
            (Some(id), _) => media(&file_id_uri(id), None, None, at),
            (None, Some(url)) => media(url, None, Some("image/jpeg"), at),
            (None, None) => Err(missing("input_image needs file_id or image_url")),
        },
        Some("input_file") => {
            if let Some(id) = str_at(part, "file_id") {
                return media(&file_id_uri(id), None, None, at);
            }
            if let Some(url) = str_at(part, "file_url") {
                return media(url, None, None, at);
            }
            let data =
                str_at(part, "file_data").ok_or_else(|| missing("input_file needs file_id, file_url or file_data"))?;
            if data.starts_with("data:") {
                return media(data, None, None, at);
            }
            let mime_type = str_at(part, "filename")
                .and_then(|n| mime_guess::from_path(n).first())
                .map(|m| m.to_string())
                .ok_or_else(|| missing("input_file.file_data needs a data: URL or a filename with an extension"))?;
            Ok(Part::InlineData { mime_type, data: data.to_owned() })
        }
        Some(other) => Err(Error::invalid(format!("{at}: the content type \"{other}\" is not supported."))),
        None => Err(missing("type is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(request: Value) -> Value {
        serde_json::to_value(to_generate_content(&request).unwrap().0).unwrap()
    }

    #[test]
    fn items_become_contents_and_settings_a_generation_config() {
        let body = translated(json!({
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "Compare"},
                    {"type": "input_file", "file_id": "file-abc"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
                    {"type": "input_file", "file_url": "qfile-def"}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{\"q\": 1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "found"}
            ],
            "max_output_tokens": 50, "temperature": 0.3,
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "lookup"},
            "store": false, "user": "u"
        }));
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        let parts = &body["contents"][0]["parts"];
        assert_eq!(parts[1], json!({"fileData": {"fileUri": "files/abc"}}));
        assert_eq!(parts[2], json!({"inlineData": {"mimeType": "image/png", "data": "iVBO"}}));
        assert_eq!(parts[3], json!({"fileData": {"fileUri": "qfile-def"}}));
        assert_eq!(
            body["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": 1}}}]})
        );
        assert_eq!(body["contents"][2]["parts"][0]["functionResponse"]["response"], json!({"content": "found"}));
        assert_eq!(body["generationConfig"]["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "lookup");
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"], json!(["lookup"]));
    }

    #[test]
    fn state_and_unknown_arguments_are_refused_by_name() {
        let err = |extra: Value| {
            let mut request = json!({"model": "m", "input": "hi"});
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            to_generate_content(&request).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(err(json!({"previous_response_id": "resp_1"})).contains("conversation state"));
        assert!(err(json!({"store": true})).starts_with("store is not supported"));
        assert!(err(json!({"temperatur": 1})).contains("Unrecognized request argument supplied: temperatur"));
        assert!(err(json!({"input": [{"type": "reasoning"}]})).contains("\"reasoning\""));
        assert!(err(json!({"store": false, "include": []})).is_empty(), "unset settings ask for nothing");
    }
}
