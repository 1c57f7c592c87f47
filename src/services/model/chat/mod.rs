//! OpenAI-style chat completions over the model front door: a chat request is translated to
//! `generateContent` ([`request`]), sent like any model call (file references resolved, metered), and the
//! reply translated back ([`reply`]), whole or as `chat.completion.chunk` events.
//!
//! The parameters taken, ignored and refused are listed in `docs/models.md` and in [`request::IGNORED`]
//! and [`request::REFUSED`].

pub(super) mod reply;
pub(super) mod request;
pub(super) mod tools;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

pub use reply::Completion;
pub use request::{IGNORED, REFUSED};

use super::{ModelCall, ModelMethod, Models};
use crate::domain::ProjectId;
use crate::error::{Error, Result};
use crate::wire::generate::GenerateContentResponse;
use crate::wire::openai::{ChatCompletion, ChatRequest};

/// A chat completion's reply is read whole to be translated; bigger than this, something is wrong.
const MAX_COMPLETION_BYTES: usize = 64 * 1024 * 1024;

/// What a chat completion answers.
pub enum ChatReply {
    Whole(ChatCompletion),
    /// `stream: true`: server-sent `chat.completion.chunk` events ending in `data: [DONE]` (or an error
    /// event, if the upstream fails mid-way).
    Events(BoxStream<'static, Result<Bytes, std::convert::Infallible>>),
}

impl Models {
    pub async fn chat(&self, project: ProjectId, request: ChatRequest) -> Result<ChatReply> {
        let body = request::to_generate_content(&request)?;
        let completion = Completion::new(&request.model);
        let method = if request.stream { ModelMethod::StreamGenerateContent } else { ModelMethod::GenerateContent };
        let body = serde_json::to_value(body).map_err(Error::internal)?;
        let call = ModelCall { project, model: request.model, method, sse: request.stream, body, readable_only: true };
        let reply = self.call(call).await?;
        if request.stream {
            let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
            return Ok(ChatReply::Events(reply::chunks(reply.body, completion, include_usage)));
        }
        Ok(ChatReply::Whole(completion.from_response(&whole_response(reply.body).await?)))
    }
}

/// A whole (not streamed) `generateContent` reply, read and parsed.
pub(super) async fn whole_response(mut body: BoxStream<'static, Result<Bytes>>) -> Result<GenerateContentResponse> {
    let mut whole = Vec::new();
    while let Some(chunk) = body.next().await {
        whole.extend_from_slice(&chunk?);
        if whole.len() > MAX_COMPLETION_BYTES {
            return Err(Error::internal("the upstream's reply is larger than 64 MiB"));
        }
    }
    serde_json::from_slice(&whole).map_err(Error::internal)
}
