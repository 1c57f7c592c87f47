//! One description per operation, paired with its handler in `http/routes.rs` (context caches and batch
//! jobs in `caches_and_batches.rs`).

use axum::http::StatusCode;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Required, Response};

use super::Surface::{Chat, Gemini, Import};
use super::{
    Route, binary, enum_param, file_name, gemini_common, import_common, import_id, import_task_errors, integer_param,
    json, json_body, model_errors, openai_file_name, param, reply, version, with,
};
use crate::domain::{FieldCode, Limit};
use crate::error::{Error, UploadError};
use crate::http::dialect::google::RouteRejection;
use crate::services::files::MAX_PAGE_SIZE;
use crate::services::imports::MAX_WAIT;

pub use super::caches_and_batches::*;
use super::caches_and_batches::{any_object, object_body};
pub use super::console::*;
pub use super::openai::*;
pub use super::webhooks::*;

fn not_found() -> Error {
    Error::FileNotFound(String::new())
}

fn upload_errors() -> [Error; 10] {
    [
        Error::Upload(UploadError::SessionNotFound),
        Error::Upload(UploadError::ResendMismatch { offset: 0, len: 0 }),
        Error::Upload(UploadError::Cancelled),
        Error::Upload(UploadError::OffsetMismatch { expected: 0, got: 0 }),
        Error::AlreadyExists(String::new()),
        Error::FileTooLarge { size: 0, limit: 0 },
        Error::QuotaExceeded { requested: 0, available: 0, quota: 0 },
        Error::LimitReached(Limit::Files { held: 0 }),
        Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
        Error::invalid(""),
    ]
}

/// The reply of every upload exchange, with the `x-goog-upload-*` headers it carries.
fn upload_ok() -> Response {
    let upload_headers = [
        ("x-goog-upload-status", "`active`, `final` or `cancelled`; absent on transient errors (resend the chunk)"),
        ("x-goog-upload-url", "The upload URL (start only)"),
        ("x-goog-upload-size-received", "Bytes durably stored"),
        ("x-goog-upload-chunk-granularity", "8388608: send chunks in multiples of it"),
    ];
    let (_, mut upload_ok) = reply(
        StatusCode::OK,
        "Started (`x-goog-upload-url`), a chunk stored (`active`), or finalized (`final`, `{file}`)",
        "application/json",
        json("FileEnvelope"),
    );
    for (name, description) in upload_headers {
        let header = HeaderBuilder::new().description(Some(description)).build();
        upload_ok.headers.insert(name.to_owned(), header);
    }
    upload_ok
}

/// `POST /upload/{version}/files` (and PUT, and the prefixed alias).
pub fn upload() -> Route {
    Route {
        path: "/upload/{version}/files",
        summary: "Start an upload (resumable, multipart or raw), or act on an upload URL (with upload_id)",
        description: "Without `upload_id`: `X-Goog-Upload-Protocol: resumable` + `X-Goog-Upload-Command: start` + \
            `X-Goog-Upload-Header-Content-Length` answers 200 with `x-goog-upload-url`; `multipart` \
            (multipart/related: exactly one JSON metadata part, then the media) and `raw` upload in one request. \
            With `upload_id` (the URL handed out): `X-Goog-Upload-Command` is `upload`, `upload, finalize`, \
            `finalize`, `query` or `cancel`; no API key is needed, the upload_id is the capability. Every reply \
            on an upload URL carries `x-goog-upload-status`, errors included (absent only on transient errors). \
            Also served with PUT and at `/{prefix}/upload/{version}/files` (js-genai#1206).",
        parameters: vec![
            version(),
            param("upload_id", ParameterIn::Query, false, "The capability of an upload URL"),
            enum_param(
                "uploadType",
                ParameterIn::Query,
                false,
                "Same as X-Goog-Upload-Protocol",
                &["resumable", "multipart", "media"],
            ),
            enum_param(
                "X-Goog-Upload-Protocol",
                ParameterIn::Header,
                false,
                "How the bytes come",
                &["resumable", "multipart", "raw"],
            ),
            param(
                "X-Goog-Upload-Command",
                ParameterIn::Header,
                false,
                "`start`, `upload`, `upload, finalize`, `finalize`, `query` or `cancel`",
            ),
            integer_param("X-Goog-Upload-Header-Content-Length", ParameterIn::Header, "The file's size (start)", None),
            param("X-Goog-Upload-Header-Content-Type", ParameterIn::Header, false, "The file's media type (start)"),
            integer_param("X-Goog-Upload-Offset", ParameterIn::Header, "Where this chunk starts", None),
        ],
        body: Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(json("CreateFileRequest"))).build())
                .content("application/octet-stream", ContentBuilder::new().schema(Some(binary())).build())
                .content("multipart/related", ContentBuilder::new().schema(Some(binary())).build())
                .build(),
        ),
        ok: vec![(StatusCode::OK, upload_ok())],
        errors: with(gemini_common(), Gemini, upload_errors()),
        authenticated: true,
    }
}

/// `GET /{version}/files`
pub fn list_files() -> Route {
    Route {
        path: "/{version}/files",
        summary: "List the project's files, newest first",
        description: "",
        parameters: vec![
            version(),
            integer_param(
                "pageSize",
                ParameterIn::Query,
                &format!("Default 10; larger values are clamped to {MAX_PAGE_SIZE}"),
                None,
            ),
            param("pageToken", ParameterIn::Query, false, "A nextPageToken, unchanged"),
        ],
        body: None,
        ok: vec![reply(StatusCode::OK, "A page", "application/json", json("ListFilesResponse"))],
        errors: with(gemini_common(), Gemini, [Error::invalid("")]),
        authenticated: true,
    }
}

/// `POST /{version}/files`: an import on v1, Google's metadata-only create (501) elsewhere.
pub fn create_import() -> Route {
    Route {
        path: "/{version}/files",
        summary: "Import a file from a URL (v1 only): answers at once with a qfile- task",
        description: "On v1beta and v1alpha this is Google's metadata-only create, which filegate does not serve (501).",
        parameters: vec![
            version(),
            param(
                "Idempotency-Key",
                ParameterIn::Header,
                false,
                "Retries with the same key and body get the same task for 24 h",
            ),
        ],
        body: Some(json_body("CreateImportRequest", true)),
        ok: vec![reply(StatusCode::OK, "The task, status pending", "application/json", json("ImportFile"))],
        errors: {
            let mut errors = with(
                import_common(),
                Import,
                [
                    Error::invalid_field(FieldCode::InvalidJson, ""),
                    Error::IdempotencyConflict(String::new()),
                    Error::LimitReached(Limit::Files { held: 0 }),
                    Error::QuotaExceeded { requested: 0, available: 0, quota: 0 },
                    Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
                ],
            );
            errors.push((Gemini, Error::NotImplemented(String::new()).into()));
            errors.push((Gemini, RouteRejection::UnknownRoute.into()));
            errors
        },
        authenticated: true,
    }
}

/// `GET /{version}/files/{name}`
pub fn get_file() -> Route {
    Route {
        path: "/{version}/files/{name}",
        summary: "Get a file",
        description: "On v1, an id starting with `qfile-` is an import task (see `/v1/files/{import_id}`).",
        parameters: vec![version(), file_name()],
        body: None,
        ok: vec![reply(StatusCode::OK, "The file", "application/json", json("File"))],
        errors: with(gemini_common(), Gemini, [not_found()]),
        authenticated: true,
    }
}

/// `DELETE /{version}/files/{name}`
pub fn delete_file() -> Route {
    Route {
        path: "/{version}/files/{name}",
        summary: "Delete a file and its bytes",
        description: "Answers `{}`.",
        parameters: vec![version(), file_name()],
        body: None,
        ok: vec![reply(StatusCode::OK, "`{}`", "application/json", ObjectBuilder::new().into())],
        errors: with(gemini_common(), Gemini, [not_found()]),
        authenticated: true,
    }
}

/// `GET /{version}/files/{name}:download`
pub fn download() -> Route {
    Route {
        path: "/{version}/files/{name}:download",
        summary: "Download an ACTIVE file (one Range supported)",
        description: "Served as an attachment, with `X-Content-Type-Options: nosniff`.",
        parameters: vec![
            version(),
            file_name(),
            enum_param("alt", ParameterIn::Query, false, "`media`", &["media"]),
            param("Range", ParameterIn::Header, false, "`bytes=START-[END]` or `bytes=-SUFFIX`"),
        ],
        body: None,
        ok: vec![
            reply(StatusCode::OK, "The bytes", "*/*", binary()),
            reply(StatusCode::PARTIAL_CONTENT, "One range of the bytes", "*/*", binary()),
        ],
        errors: with(
            gemini_common(),
            Gemini,
            [
                not_found(),
                Error::invalid(""),
                Error::FailedPrecondition(String::new()),
                Error::RangeNotSatisfiable { size: 0 },
            ],
        ),
        authenticated: true,
    }
}

/// `POST /{version}/files:register`
pub fn register() -> Route {
    Route {
        path: "/{version}/files:register",
        summary: "Register gs:// objects as files, without copying their bytes",
        description: "Body `{\"uris\": [\"gs://BUCKET/OBJECT\", …]}` (1 to 100); answers `{\"files\": [File…]}`. \
            Only objects the operator allows (FILEGATE_REGISTER_BUCKETS) may be registered; 501 when none are. \
            Deleting such a file never deletes the object.",
        parameters: vec![version()],
        body: Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(ObjectBuilder::new())).build())
                .required(Some(Required::True))
                .build(),
        ),
        ok: vec![reply(StatusCode::OK, "The files", "application/json", ObjectBuilder::new().into())],
        errors: with(
            gemini_common(),
            Gemini,
            [
                Error::NotImplemented(String::new()),
                Error::invalid(""),
                not_found(),
                Error::FileTooLarge { size: 0, limit: 0 },
                Error::LimitReached(Limit::Files { held: 0 }),
                Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
            ],
        ),
        authenticated: true,
    }
}

/// `GET /v1/files/{import_id}`
pub fn get_import() -> Route {
    Route {
        path: "/v1/files/{import_id}",
        summary: "An import task; ?wait=N long-polls until it is ready or failed",
        description: "An id without the `qfile-` prefix is a Gemini file name and answers like `/{version}/files/{name}`.",
        parameters: vec![
            import_id(),
            integer_param(
                "wait",
                ParameterIn::Query,
                "Seconds to wait for the task to settle",
                Some(MAX_WAIT.as_secs() as f64),
            ),
        ],
        body: None,
        ok: vec![reply(StatusCode::OK, "The task", "application/json", json("ImportFile"))],
        errors: import_task_errors([Error::invalid_field(FieldCode::InvalidJson, "")]),
        authenticated: true,
    }
}

/// `DELETE /v1/files/{import_id}`
pub fn delete_import() -> Route {
    Route {
        path: "/v1/files/{import_id}",
        summary: "Cancel an import and delete its bytes",
        description: "An id without the `qfile-` prefix is a Gemini file name and answers like `/{version}/files/{name}`.",
        parameters: vec![import_id()],
        body: None,
        ok: vec![reply(StatusCode::OK, "Deleted", "application/json", json("DeletedImport"))],
        errors: import_task_errors([]),
        authenticated: true,
    }
}

/// `POST /{version}/models/{model}:{method}`
pub fn call_model() -> Route {
    Route {
        path: "/{version}/models/{model}:{method}",
        summary: "Call a model (generateContent, streamGenerateContent, countTokens) with filegate files",
        description: "Forwarded to the configured upstream (FILEGATE_UPSTREAM: Vertex AI or the Gemini API; 501 \
            when off) with the body untouched except for `fileData` parts naming filegate files (`files/{id}`, \
            filegate's `uri`, `qfile-…`), which become a `gs://` URI, inline data or an upstream copy. \
            `?alt=sse` streams server-sent events. The upstream's own errors are passed on as they come. \
            The same call is served at the paths the SDKs build in Vertex AI mode: \
            `/{v1,v1beta1}/publishers/google/models/{model}:{method}` and \
            `/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}` \
            (the caller's project and location are ignored). `batchGenerateContent` creates a batch job \
            (`{\"batch\": {\"inputConfig\": {\"fileName\": \"files/…\"}}}`, see `/{version}/batches`).",
        parameters: vec![
            version(),
            param("model", ParameterIn::Path, true, "The model (or an alias of FILEGATE_MODEL_MAP)"),
            enum_param(
                "method",
                ParameterIn::Path,
                true,
                "The model method",
                &["generateContent", "streamGenerateContent", "countTokens", "batchGenerateContent"],
            ),
            enum_param("alt", ParameterIn::Query, false, "`sse` for server-sent events", &["sse"]),
        ],
        body: Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(ObjectBuilder::new())).build())
                .required(Some(Required::True))
                .build(),
        ),
        ok: vec![reply(StatusCode::OK, "The upstream's reply", "application/json", ObjectBuilder::new().into())],
        errors: with(gemini_common(), Gemini, model_errors()),
        authenticated: true,
    }
}

/// `POST /v1/chat/completions`
pub fn chat_completions() -> Route {
    Route {
        path: "/v1/chat/completions",
        summary: "OpenAI-compatible chat completions that may read filegate files",
        description: "Translated to generateContent and forwarded like `/{version}/models/{model}:{method}`. \
            File parts: `{\"type\": \"file\", \"file\": {\"file_id\": \"qfile-…\" | \"files/…\", \"format\": \"video/mp4\"}}`; \
            `image_url`, `input_audio`, text. `stream: true` answers `chat.completion.chunk` events ending \
            with `data: [DONE]`.",
        parameters: vec![],
        body: Some(json_body("ChatRequest", true)),
        ok: vec![reply(StatusCode::OK, "The completion, or its chunks", "application/json", json("ChatCompletion"))],
        errors: with(import_common(), Chat, model_errors()),
        authenticated: true,
    }
}

/// `POST /v1/responses`
pub fn responses() -> Route {
    Route {
        path: "/v1/responses",
        summary: "OpenAI's Responses API, translated to generateContent, reading filegate files",
        description: "`input` as a string or items (messages with `input_text`, `input_image`, `input_file` by \
            `file_id`, `file_url` or `file_data`; `function_call` and `function_call_output`); `instructions`, \
            `max_output_tokens`, `temperature`, `top_p`, `text.format`, function `tools`, `tool_choice`. \
            `stream: true` answers the Responses event stream. No state is kept: `previous_response_id` and \
            `store: true` are refused.",
        parameters: vec![],
        body: Some(object_body()),
        ok: vec![reply(StatusCode::OK, "The Response, or its events", "application/json", any_object())],
        errors: with(import_common(), Chat, model_errors()),
        authenticated: true,
    }
}

/// `GET /healthz`
pub fn healthz() -> Route {
    Route {
        path: "/healthz",
        summary: "Liveness: 200 while the process serves requests, whatever its dependencies do",
        description: "Whether the node should get traffic is /readyz's to say.",
        parameters: vec![],
        body: None,
        ok: vec![reply(StatusCode::OK, "Alive", "application/json", ObjectBuilder::new().into())],
        errors: vec![],
        authenticated: false,
    }
}

/// `GET /readyz`
pub fn readyz() -> Route {
    Route {
        path: "/readyz",
        summary: "Readiness: 200 when the database and the blob store can be written, each within a second",
        description: "503 (with Retry-After) names the dependency that fails, `ok` or `failing`, nothing more.",
        parameters: vec![],
        body: None,
        ok: vec![reply(StatusCode::OK, "Ready", "application/json", ObjectBuilder::new().into())],
        errors: vec![(Gemini, Error::retry(String::new()).into())],
        authenticated: false,
    }
}

/// `GET /metrics`
pub fn metrics() -> Route {
    Route {
        path: "/metrics",
        summary: "Prometheus metrics",
        description: "Served here only when FILEGATE_METRICS_LISTEN is not set. With an operator's key \
            (FILEGATE_ADMIN_KEYS) every series; without one, the series that name projects are left out.",
        parameters: vec![],
        body: None,
        ok: vec![reply(
            StatusCode::OK,
            "The text exposition format",
            "text/plain",
            ObjectBuilder::new().schema_type(Type::String).into(),
        )],
        errors: vec![],
        authenticated: false,
    }
}

/// `GET /openapi.json`
pub fn openapi() -> Route {
    Route {
        path: "/openapi.json",
        summary: "This document",
        description: "",
        parameters: vec![],
        body: None,
        ok: vec![reply(StatusCode::OK, "OpenAPI 3.1", "application/json", ObjectBuilder::new().into())],
        errors: vec![],
        authenticated: false,
    }
}

/// `GET /v1/files/{name}/content`
pub fn file_content() -> Route {
    Route {
        path: "/{version}/files/{name}/content",
        summary: "Download a file's bytes as the openai SDKs ask (files.content); one Range supported",
        description: "`v1` only. The OpenAI surface shares `/v1/files` and `/v1/files/{name}` with the Gemini \
            Files API: a request with `x-goog-api-key`, `?key=`, `pageSize` or `pageToken` is Gemini's, any \
            other (`Authorization: Bearer`) OpenAI's, with OpenAI's shapes (`file-{id}` ids, `after`/`limit` \
            lists) and a `multipart/form-data` `POST /v1/files` as its upload.",
        parameters: vec![
            version(),
            openai_file_name(),
            param("Range", ParameterIn::Header, false, "`bytes=START-[END]` or `bytes=-SUFFIX`"),
        ],
        body: None,
        ok: vec![
            reply(StatusCode::OK, "The file's bytes", "application/octet-stream", binary()),
            reply(StatusCode::PARTIAL_CONTENT, "The range asked for", "application/octet-stream", binary()),
        ],
        errors: {
            let mut errors = with(
                import_common(),
                Import,
                [not_found(), Error::FailedPrecondition(String::new()), Error::invalid("")],
            );
            errors.push((Gemini, RouteRejection::UnknownRoute.into()));
            errors
        },
        authenticated: true,
    }
}
