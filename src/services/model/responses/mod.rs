//! OpenAI's Responses API (`POST /v1/responses`, `client.responses.create`) over the model front door: the
//! request translated to `generateContent` ([`request`]), sent like any model call (file references
//! resolved, metered), and the reply translated back ([`reply`]), whole or as the Responses event stream.
//! No conversation state is kept: a request that needs it (`previous_response_id`, `store: true`) is
//! refused with a 400 that says so.

pub mod reply;
pub mod request;

use bytes::Bytes;
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
}
