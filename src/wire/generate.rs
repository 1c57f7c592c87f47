//! The parts of Gemini's `generateContent` that filegate itself writes or reads: the request its chat
//! completions build, and the fields of a response it translates back (candidates' text, finish reasons,
//! token counts, a blocked prompt). Requests on the native route pass through as JSON and are never parsed
//! into these, so fields filegate does not know survive untouched there.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig,
    /// `[{"functionDeclarations": [...]}]`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `{"functionCallingConfig": {"mode", "allowedFunctionNames"}}`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Content {
    /// `user` or `model`; none for a system instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    pub parts: Vec<Part>,
}

/// One part of a request: `{"text": …}`, `{"inlineData": {…}}` or `{"fileData": {…}}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Part {
    Text(String),
    InlineData {
        mime_type: String,
        /// Base64, as the caller sent it.
        data: String,
    },
    FileData {
        file_uri: String,
        /// Left out for a filegate file: the reference rewriter fills it from the file.
        #[serde(skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
    },
    /// A call the model made, as the conversation so far holds it.
    FunctionCall {
        name: String,
        args: Value,
    },
    /// The result of a call, for the model to read.
    FunctionResponse {
        name: String,
        response: Value,
    },
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_logprobs: Option<bool>,
    /// How many alternatives per token `logprobsResult.topCandidates` lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
}

impl GenerationConfig {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A `generateContent` response, or one event of a stream of them. Every field may be missing (a blocked
/// prompt has no candidates, a stream's middle events no usage), so all default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GenerateContentResponse {
    pub candidates: Vec<Candidate>,
    pub usage_metadata: Option<UsageMetadata>,
    pub prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Candidate {
    pub index: Option<u32>,
    pub content: Option<CandidateContent>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, …
    pub finish_reason: Option<String>,
    /// With `responseLogprobs`: each chosen token's log probability, and the most likely alternatives.
    pub logprobs_result: Option<LogprobsResult>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LogprobsResult {
    /// The most likely tokens at each step (as many as `logprobs` asked).
    pub top_candidates: Vec<TopCandidates>,
    /// The token chosen at each step.
    pub chosen_candidates: Vec<TokenLogprob>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TopCandidates {
    pub candidates: Vec<TokenLogprob>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenLogprob {
    pub token: String,
    pub log_probability: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateContent {
    pub parts: Vec<ResponsePart>,
}

/// A part of a reply, as far as filegate reads it: its text, whether it is a thought (left out of a chat
/// completion), and a function call. Other kinds of part (inline data) read as text-less.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponsePart {
    pub text: Option<String>,
    pub thought: bool,
    pub function_call: Option<FunctionCall>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments, a JSON object.
    pub args: Value,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub thoughts_token_count: u64,
    pub total_token_count: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PromptFeedback {
    pub block_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parts_and_configs_serialize_as_gemini_spells_them() {
        let request = GenerateContentRequest {
            contents: vec![Content {
                role: Some("user"),
                parts: vec![
                    Part::Text("hi".into()),
                    Part::InlineData { mime_type: "image/png".into(), data: "iVBO".into() },
                    Part::FileData { file_uri: "files/abc".into(), mime_type: None },
                ],
            }],
            system_instruction: None,
            generation_config: GenerationConfig { max_output_tokens: Some(5), ..GenerationConfig::default() },
            ..GenerateContentRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"contents": [{"role": "user", "parts": [
                {"text": "hi"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                {"fileData": {"fileUri": "files/abc"}}
            ]}], "generationConfig": {"maxOutputTokens": 5}})
        );
        let bare = GenerateContentRequest::default();
        assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"contents": []}), "an empty config is left out");
    }

    #[test]
    fn a_response_reads_with_any_field_missing_or_unknown() {
        let response: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"parts": [{"functionCall": {"name": "f"}}, {"text": "x", "thought": true}]},
                            "safetyRatings": []}],
            "modelVersion": "gemini-x"
        }))
        .unwrap();
        let parts = &response.candidates[0].content.as_ref().unwrap().parts;
        let call = FunctionCall { name: "f".into(), args: Value::Null };
        assert_eq!(parts[0], ResponsePart { text: None, thought: false, function_call: Some(call) });
        assert!(parts[1].thought);
        assert_eq!(serde_json::from_value::<GenerateContentResponse>(json!({})).unwrap(), Default::default());
    }
}
