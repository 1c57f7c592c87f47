//! The descriptions of the OpenAI surface's routes beyond Files and chat: the Uploads API
//! (`http/openai/uploads.rs`) and the Responses API's token count.

use axum::http::StatusCode;
use utoipa::openapi::path::ParameterIn;

use super::Surface::{Chat, Import};
use super::caches_and_batches::{any_object, object_body};
use super::{Route, binary, import_common, model_errors, param, reply, with};
use crate::domain::Limit;
use crate::error::{Error, UploadError};

fn upload_id() -> utoipa::openapi::path::Parameter {
    param("id", ParameterIn::Path, true, "The Upload's id (`upload_…`), which works with its project's keys only")
}

fn upload_errors(more: impl IntoIterator<Item = Error>) -> Vec<(super::Surface, super::Refusal)> {
    with(
        import_common(),
        Import,
        [Error::Upload(UploadError::SessionNotFound), Error::invalid("")].into_iter().chain(more),
    )
}

/// `POST /v1/uploads`
pub fn create_upload() -> Route {
    Route {
        path: "/v1/uploads",
        summary: "Start an Upload (OpenAI's Uploads API): a file sent in parts",
        description: "`{bytes, filename, mime_type, purpose: \"user_data\", expires_after?}`; answers the Upload, \
            `pending`. Its parts are appended in the order they arrive (send them one after another, as \
            `client.uploads.upload_file_chunked` does).",
        parameters: vec![],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The Upload", "application/json", any_object())],
        errors: upload_errors([
            Error::FileTooLarge { size: 0, limit: 0 },
            Error::QuotaExceeded { requested: 0, available: 0, quota: 0 },
            Error::LimitReached(Limit::Files { held: 0 }),
        ]),
        authenticated: true,
    }
}

/// `POST /v1/uploads/{id}/parts`
pub fn add_upload_part() -> Route {
    Route {
        path: "/v1/uploads/{id}/parts",
        summary: "Add a part (a form field `data`, at most 64 MiB) to an Upload",
        description: "The part is appended where the bytes received so far end; its id says where it is.",
        parameters: vec![upload_id()],
        body: Some(
            utoipa::openapi::request_body::RequestBodyBuilder::new()
                .content("multipart/form-data", utoipa::openapi::ContentBuilder::new().schema(Some(binary())).build())
                .build(),
        ),
        ok: vec![reply(StatusCode::OK, "The part (`upload.part`)", "application/json", any_object())],
        errors: upload_errors([Error::Upload(UploadError::Cancelled)]),
        authenticated: true,
    }
}

/// `POST /v1/uploads/{id}/complete`
pub fn complete_upload() -> Route {
    Route {
        path: "/v1/uploads/{id}/complete",
        summary: "Complete an Upload: its parts, in order, become a file",
        description: "`{part_ids, md5?}`: the parts named must be every part added, in the order added; with \
            `md5`, the file's bytes are checked against it (a mismatch discards the upload).",
        parameters: vec![upload_id()],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The Upload, `completed`, with its `file`", "application/json", any_object())],
        errors: upload_errors([]),
        authenticated: true,
    }
}

/// `POST /v1/uploads/{id}/cancel`
pub fn cancel_upload() -> Route {
    Route {
        path: "/v1/uploads/{id}/cancel",
        summary: "Cancel an Upload: what it received is deleted",
        description: "",
        parameters: vec![upload_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The Upload, `cancelled`", "application/json", any_object())],
        errors: upload_errors([Error::Upload(UploadError::Cancelled)]),
        authenticated: true,
    }
}

/// `POST /v1/responses/input_tokens`
pub fn count_response_tokens() -> Route {
    Route {
        path: "/v1/responses/input_tokens",
        summary: "The tokens a Responses request's input would take (`client.responses.input_tokens.count`)",
        description: "The request translated as `POST /v1/responses` translates it, counted by the upstream's \
            countTokens; answers `{object: \"response.input_tokens\", input_tokens}`.",
        parameters: vec![],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The count", "application/json", any_object())],
        errors: with(import_common(), Chat, model_errors()),
        authenticated: true,
    }
}
