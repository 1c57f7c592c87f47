//! OpenAI's Responses API (`POST /v1/responses`, `client.responses.create`) over the model front door: the
//! request translated to `generateContent` ([`request`]), sent like any model call (file references
//! resolved, metered), and the reply translated back ([`reply`]), whole or as the Responses event stream.
//! No conversation state is kept: a request that needs it (`previous_response_id`, `store: true`) is
//! refused with a 400 that says so.

pub mod reply;
pub mod request;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::Value;

use self::reply::Building;
use super::chat::whole_response;
use super::{ModelCall, ModelMethod, Models};
use crate::domain::ProjectId;
use crate::error::{Error, Result};

/// What a Responses request answers.
pub enum ResponsesReply {
    Whole(Value),
    /// `stream: true`: the Responses event stream.
    Events(BoxStream<'static, Result<Bytes, std::convert::Infallible>>),
}

impl Models {
    pub async fn respond(&self, project: ProjectId, request: Value) -> Result<ResponsesReply> {
        let (body, asked) = request::to_generate_content(&request)?;
        let building = Building::new(&asked.model, asked.instructions, asked.echo);
        let method = if asked.stream { ModelMethod::StreamGenerateContent } else { ModelMethod::GenerateContent };
        let body = serde_json::to_value(body).map_err(Error::internal)?;
        let call = ModelCall { project, model: asked.model, method, sse: asked.stream, body, readable_only: true };
        let reply = self.call(call).await?;
        if asked.stream {
            return Ok(ResponsesReply::Events(reply::events(reply.body, building)));
        }
        Ok(ResponsesReply::Whole(building.from_response(&whole_response(reply.body).await?)))
    }

    /// `POST /v1/responses/input_tokens`: the request translated as [`Models::respond`] translates it, and
    /// counted by the upstream's `countTokens` — which takes the request whole on the Gemini API (as a
    /// `generateContentRequest` naming its model), and its fields on Vertex AI.
    pub async fn count_input_tokens(&self, project: ProjectId, request: Value) -> Result<Value> {
        let (body, asked) = request::to_generate_content(&request)?;
        let body = serde_json::to_value(body).map_err(Error::internal)?;
        let body = if self.upstream()?.is_vertex() {
            body
        } else {
            let mut nested = body;
            nested["model"] = Value::String(format!("models/{}", self.upstream_model(&asked.model)?));
            serde_json::json!({ "generateContentRequest": nested })
        };
        let call = ModelCall {
            project,
            model: asked.model,
            method: ModelMethod::CountTokens,
            sse: false,
            body,
            readable_only: true,
        };
        let mut reply = self.call(call).await?.body;
        let mut counted = Vec::new();
        while let Some(chunk) = reply.next().await {
            counted.extend_from_slice(&chunk?);
            if counted.len() > COUNT_REPLY_MAX_BYTES {
                return Err(Error::internal("the upstream's countTokens reply is over 1 MiB"));
            }
        }
        let counted: Value = serde_json::from_slice(&counted)
            .map_err(|e| Error::internal(format!("the upstream's countTokens reply is not JSON: {e}")))?;
        let tokens = counted.get("totalTokens").and_then(Value::as_u64).unwrap_or(0);
        Ok(serde_json::json!({"object": "response.input_tokens", "input_tokens": tokens}))
    }
}

/// A `countTokens` reply is a few numbers; more is refused.
const COUNT_REPLY_MAX_BYTES: usize = 1 << 20;
