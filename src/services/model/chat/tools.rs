//! Function calling, both ways, between OpenAI's chat completions and Gemini:
//!
//! | OpenAI | Gemini |
//! |---|---|
//! | `tools: [{"type": "function", "function": {"name", "description", "parameters"}}]` | `tools: [{"functionDeclarations": [{"name", "description", "parametersJsonSchema"}]}]` |
//! | `tool_choice`: `none` / `auto` / `required` / `{"type": "function", "function": {"name"}}` | `toolConfig.functionCallingConfig.mode`: `NONE` / `AUTO` / `ANY` / `ANY` with `allowedFunctionNames` |
//! | an assistant message's `tool_calls` (`arguments` as JSON text) | `model` parts `{"functionCall": {"name", "args"}}` |
//! | `role: "tool"` messages (`tool_call_id`, `content`) | one `user` turn of `{"functionResponse": {"name", "response": {"content"}}}` parts, the name found from the call's id |
//! | a reply's `functionCall` parts | `message.tool_calls` (ids `call_…`), `finish_reason: "tool_calls"` |

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::wire::generate::{FunctionCall, Part};
use crate::wire::openai::{FunctionCallText, ToolCall};

/// Gemini's `tools` for OpenAI's.
pub fn declarations(tools: &[Value]) -> Result<Option<Vec<Value>>> {
    if tools.is_empty() {
        return Ok(None);
    }
    let mut declared = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Error::invalid(format!(
                "tools[{i}]: only tools of type \"function\" are supported (Gemini's own tools are on the native route)."
            )));
        }
        let function = tool.get("function").filter(|f| f.is_object());
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty());
        let (Some(function), Some(name)) = (function, name) else {
            return Err(Error::invalid(format!("tools[{i}].function needs a name.")));
        };
        let mut declaration = json!({"name": name});
        if let Some(description) = function.get("description").and_then(Value::as_str) {
            declaration["description"] = json!(description);
        }
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            declaration["parametersJsonSchema"] = parameters.clone();
        }
        declared.push(declaration);
    }
    Ok(Some(vec![json!({"functionDeclarations": declared})]))
}

/// Gemini's `toolConfig` for OpenAI's `tool_choice`, given whether any tool is declared: without tools,
/// `none` and `auto` ask for nothing, and anything else asks for a tool there is not.
pub fn tool_config(declared: bool, choice: Option<&Value>) -> Result<Option<Value>> {
    let config = choice_config(choice)?;
    let mode = config.as_ref().and_then(|c| c.pointer("/functionCallingConfig/mode")).and_then(Value::as_str);
    match (declared, mode) {
        (true, _) => Ok(config),
        (false, None | Some("NONE" | "AUTO")) => Ok(None),
        (false, Some(_)) => Err(Error::invalid("tool_choice asks for a tool call, but tools declares none.")),
    }
}

fn choice_config(choice: Option<&Value>) -> Result<Option<Value>> {
    let config = |mode: &str| json!({"functionCallingConfig": {"mode": mode}});
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => Ok(Some(config("NONE"))),
            "auto" => Ok(Some(config("AUTO"))),
            "required" => Ok(Some(config("ANY"))),
            other => Err(Error::invalid(format!("tool_choice \"{other}\" is not one of none, auto, required."))),
        },
        Some(choice) => {
            let name = choice.pointer("/function/name").and_then(Value::as_str).filter(|n| !n.is_empty());
            match (choice.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => {
                    Ok(Some(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}})))
                }
                _ => Err(Error::invalid(
                    "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}.",
                )),
            }
        }
    }
}

/// The `functionCall` parts of an assistant message's `tool_calls`, remembering each call's name by id
/// (a later `tool` message answers by id, Gemini by name).
pub fn calls(tool_calls: &[Value], at: &str, names: &mut HashMap<String, String>) -> Result<Vec<Part>> {
    tool_calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let at = format!("{at}.tool_calls[{i}]");
            let name = call.pointer("/function/name").and_then(Value::as_str).filter(|n| !n.is_empty());
            let name = name.ok_or_else(|| Error::invalid(format!("{at}.function.name is missing.")))?;
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            let args: Value = serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments })
                .map_err(|e| Error::invalid(format!("{at}.function.arguments is not JSON: {e}")))?;
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                names.insert(id.to_owned(), name.to_owned());
            }
            Ok(Part::FunctionCall { name: name.to_owned(), args })
        })
        .collect()
}

/// The `functionResponse` part of a `tool` message.
pub fn response(
    call_id: Option<&str>,
    content: Option<&Value>,
    at: &str,
    names: &HashMap<String, String>,
) -> Result<Part> {
    let id = call_id.ok_or_else(|| Error::invalid(format!("{at}: a tool message needs tool_call_id.")))?;
    let name = names.get(id).ok_or_else(|| {
        Error::invalid(format!("{at}: tool_call_id \"{id}\" answers no tool call of an earlier assistant message."))
    })?;
    let content = match content {
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(parts)) => Value::String(
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""),
        ),
        None | Some(Value::Null) => Value::String(String::new()),
        Some(_) => return Err(Error::invalid(format!("{at}.content must be a string or a list of text parts."))),
    };
    Ok(Part::FunctionResponse { name: name.clone(), response: json!({"content": content}) })
}

/// OpenAI's tool call for a Gemini function call, numbered within its choice.
pub fn tool_call(call: &FunctionCall, index: Option<u32>) -> ToolCall {
    let arguments = if call.args.is_null() { "{}".to_owned() } else { call.args.to_string() };
    ToolCall {
        index,
        id: format!("call_{}", crate::domain::random_alphanumeric(24)),
        kind: "function".into(),
        function: FunctionCallText { name: call.name.clone(), arguments },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_and_choices_translate_and_bad_ones_are_named() {
        let tools = [json!({"type": "function", "function": {"name": "weather", "description": "d",
                                                             "parameters": {"type": "object"}}})];
        assert_eq!(
            declarations(&tools).unwrap().unwrap(),
            [json!({"functionDeclarations": [{"name": "weather", "description": "d",
                                               "parametersJsonSchema": {"type": "object"}}]})]
        );
        assert!(declarations(&[json!({"type": "web_search"})]).unwrap_err().to_string().contains("tools[0]"));
        assert_eq!(
            tool_config(true, Some(&json!("required"))).unwrap().unwrap()["functionCallingConfig"]["mode"],
            "ANY"
        );
        let named = tool_config(true, Some(&json!({"type": "function", "function": {"name": "weather"}})));
        assert_eq!(named.unwrap().unwrap()["functionCallingConfig"]["allowedFunctionNames"], json!(["weather"]));
        assert!(tool_config(true, Some(&json!("sometimes"))).is_err());
        assert_eq!(tool_config(false, Some(&json!("none"))).unwrap(), None, "no tools, nothing to configure");
        assert!(tool_config(false, Some(&json!("required"))).is_err());

        let mut names = HashMap::new();
        let call = json!({"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}});
        let parts = calls(&[call], "messages[1]", &mut names).unwrap();
        assert_eq!(parts, [Part::FunctionCall { name: "weather".into(), args: json!({"city": "Oslo"}) }]);
        let answer = response(Some("call_1"), Some(&json!("12 C")), "messages[2]", &names).unwrap();
        assert_eq!(answer, Part::FunctionResponse { name: "weather".into(), response: json!({"content": "12 C"}) });
        assert!(response(Some("call_9"), None, "messages[2]", &names).unwrap_err().to_string().contains("call_9"));
    }
}
