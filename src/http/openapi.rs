//! The OpenAPI description of every route, built from the code so that it cannot drift from it.
//!
//! Schemas come from the wire types themselves (`#[derive(ToSchema)]` beside their serde derives). The
//! statuses of a route come from the errors it can answer, passed through the same mapping that writes the
//! replies ([`gemini::error::status_of`], [`import::error::status_of`]): a route lists *which* domain errors
//! it may return, never a status number. A CI fuzzer (schemathesis, `scripts/test.sh`) then checks every
//! reply against this document, so a status the code answers and the document lacks fails the build.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::StatusCode;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
};

use super::{gemini, import};
use crate::error::{Error, UploadError, UpstreamError};
use crate::services::files::MAX_PAGE_SIZE;
use crate::services::imports::MAX_WAIT;

/// The document, rendered once.
pub static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| document().to_pretty_json().expect("the OpenAPI document serializes"));

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "filegate",
        description = "Self-hosted, Gemini-compatible Files API with URL import. Gemini routes answer \
            google.rpc.Status errors; the import routes (POST /v1/files, /v1/files/qfile-…) answer OpenAI-style \
            errors. Every non-2xx reply has a JSON error body."
    ),
    components(schemas(
        crate::wire::gemini::File,
        crate::wire::gemini::FileEnvelope,
        crate::wire::gemini::ListFilesResponse,
        crate::wire::gemini::CreateFileRequest,
        crate::wire::gemini::ErrorEnvelope,
        crate::wire::import::CreateImportRequest,
        crate::wire::import::ImportFile,
        crate::wire::import::DeletedImport,
        crate::wire::import::ErrorEnvelope,
        crate::wire::openai::ChatRequest,
        crate::wire::openai::ChatMessage,
        crate::wire::openai::StreamOptions,
        crate::wire::openai::ChatCompletion,
        crate::wire::openai::Choice,
        crate::wire::openai::AssistantMessage,
        crate::wire::openai::Usage,
    ))
)]
struct Components;

/// Which error format a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Gemini,
    Import,
    /// `POST /v1/chat/completions`: the import surface's OpenAI-style format.
    Chat,
}

impl Surface {
    fn status_of(self, err: &Error) -> StatusCode {
        match self {
            Self::Gemini => gemini::error::status_of(err),
            Self::Import => import::error::status_of(err),
            Self::Chat => super::model::chat_status_of(err),
        }
    }

    fn error_schema(self) -> RefOr<Schema> {
        match self {
            Self::Gemini => Ref::from_schema_name("ErrorEnvelope").into(),
            Self::Import | Self::Chat => Ref::from_schema_name("ImportErrorEnvelope").into(),
        }
    }
}

/// One operation: what it takes, what it answers on success, and every domain error it may answer.
struct Route {
    method: HttpMethod,
    path: &'static str,
    summary: &'static str,
    description: &'static str,
    parameters: Vec<Parameter>,
    body: Option<RequestBody>,
    /// Success statuses and their replies.
    ok: Vec<(StatusCode, Response)>,
    /// The errors, each with the surface whose format answers it.
    errors: Vec<(Surface, Error)>,
    authenticated: bool,
}

/// A short reason for each error, for the status descriptions.
fn reason(err: &Error) -> &'static str {
    match err {
        Error::InvalidArgument(_) | Error::InvalidField { .. } => "a malformed request (the message names the field)",
        Error::FileNotFound(_) => "a missing, expired or other project's file",
        Error::AlreadyExists(_) => "the name is taken",
        Error::FileTooLarge { .. } => "over the per-file limit",
        Error::QuotaExceeded { .. } => "over the project's quota",
        Error::IdempotencyConflict(_) => "an Idempotency-Key reused with a different request",
        Error::LimitReached { .. } => "over a per-project limit (the message names it)",
        Error::FailedPrecondition(_) => "the file is not ready",
        Error::MissingApiKey => "no API key",
        Error::InvalidApiKey => "an unknown API key",
        Error::Upload(UploadError::SessionNotFound) => "an unknown or expired upload URL",
        Error::Upload(UploadError::ResendMismatch { .. }) => "a resent chunk that differs from the stored one",
        Error::Upload(UploadError::Cancelled | UploadError::AlreadyFinalized) => "a cancelled or finalized upload",
        Error::Upload(_) => "an offset, size or command the upload protocol refuses",
        Error::RangeNotSatisfiable { .. } => "a Range outside the file",
        Error::NotImplemented(_) => "not supported by filegate (the message says what to use)",
        Error::UnknownRoute => "an unknown API version or route",
        Error::MethodNotAllowed => "a method the path does not take",
        Error::BodyStalled(_) => "the client stopped sending its body",
        Error::Unavailable(_) => "the database or the blob store is unavailable, full or busy: retry",
        Error::Internal(_) => "a bug",
        Error::Upstream(upstream) => match upstream.as_ref() {
            UpstreamError::Status { .. } => "the upstream's own error, passed on",
            UpstreamError::Credentials { .. } => "filegate could not obtain Google credentials",
            UpstreamError::Unreachable { .. } | UpstreamError::Unauthorized { .. } => {
                "the upstream is unreachable or refused filegate's credentials"
            }
            UpstreamError::Stalled { .. } => "the upstream sent nothing for the idle timeout",
        },
    }
}

/// A string parameter; a required one is never empty.
fn string_param(name: &str, place: ParameterIn, required: bool, description: &str) -> ParameterBuilder {
    let schema = ObjectBuilder::new().schema_type(Type::String).min_length(required.then_some(1));
    Parameter::builder()
        .name(name)
        .parameter_in(place)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
}

fn param(name: &str, place: ParameterIn, required: bool, description: &str) -> Parameter {
    string_param(name, place, required, description).build()
}

fn enum_param(name: &str, place: ParameterIn, required: bool, description: &str, values: &[&str]) -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied()));
    string_param(name, place, required, description).schema(Some(schema)).build()
}

fn integer_param(name: &str, place: ParameterIn, description: &str, max: Option<f64>) -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0.0)).maximum(max);
    Parameter::builder()
        .name(name)
        .parameter_in(place)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn version() -> Parameter {
    enum_param("version", ParameterIn::Path, true, "API version", &gemini::VERSIONS)
}

fn file_name() -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"));
    string_param("name", ParameterIn::Path, true, "The file id (the part after `files/`)").schema(Some(schema)).build()
}

fn json(schema: &str) -> RefOr<Schema> {
    Ref::from_schema_name(schema).into()
}

fn binary() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary)))
        .into()
}

/// A success reply with a body.
fn reply(status: StatusCode, description: &str, content_type: &str, schema: RefOr<Schema>) -> (StatusCode, Response) {
    let content = ContentBuilder::new().schema(Some(schema)).build();
    (status, ResponseBuilder::new().description(description).content(content_type, content).build())
}

fn json_body(schema: &str, required: bool) -> RequestBody {
    let required = if required { Required::True } else { Required::False };
    RequestBodyBuilder::new()
        .content("application/json", ContentBuilder::new().schema(Some(json(schema))).build())
        .required(Some(required))
        .build()
}

/// Errors every authenticated Gemini route may answer.
fn gemini_common() -> Vec<(Surface, Error)> {
    [Error::MissingApiKey, Error::InvalidApiKey, Error::UnknownRoute, Error::retry(String::new())]
        .into_iter()
        .map(|e| (Surface::Gemini, e))
        .collect()
}

fn import_common() -> Vec<(Surface, Error)> {
    [Error::MissingApiKey, Error::InvalidApiKey, Error::retry(String::new())]
        .into_iter()
        .map(|e| (Surface::Import, e))
        .collect()
}

fn with(
    mut common: Vec<(Surface, Error)>,
    surface: Surface,
    more: impl IntoIterator<Item = Error>,
) -> Vec<(Surface, Error)> {
    common.extend(more.into_iter().map(|e| (surface, e)));
    common
}

/// `qfile-…`, as the import routes take it.
fn import_id() -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^qfile-[a-z0-9]{1,40}$"));
    string_param("import_id", ParameterIn::Path, true, "`qfile-…`").schema(Some(schema)).build()
}

/// The errors of `/v1/files/{import_id}`: the import surface's, and, for an id without the `qfile-`
/// prefix (a Gemini file name), the Gemini surface's.
fn import_task_errors(more: impl IntoIterator<Item = Error>) -> Vec<(Surface, Error)> {
    let mut errors = with(import_common(), Surface::Import, [Error::FileNotFound(String::new())]);
    errors.extend(more.into_iter().map(|e| (Surface::Import, e)));
    errors.extend(with(gemini_common(), Surface::Gemini, [Error::FileNotFound(String::new())]));
    errors
}

/// What a model call may answer beyond the common errors: filegate's own checks of the request and its
/// file references, and the upstream's failures (its own error statuses are passed on as they come).
fn model_errors() -> Vec<Error> {
    let upstream = |status| {
        Error::from(UpstreamError::Status {
            upstream: "",
            status,
            code: None,
            message: String::new(),
            rpc_body: None,
            retry_after: None,
        })
    };
    vec![
        Error::invalid(""),
        Error::FileNotFound(String::new()),
        Error::FailedPrecondition(String::new()),
        Error::NotImplemented(String::new()),
        Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
        UpstreamError::Credentials { upstream: "", detail: String::new() }.into(),
        UpstreamError::Unreachable { upstream: "", detail: String::new() }.into(),
        UpstreamError::Stalled { upstream: "", after: std::time::Duration::ZERO }.into(),
        upstream(404),
        upstream(429),
        upstream(500),
    ]
}

fn routes() -> Vec<Route> {
    use Surface::{Chat, Gemini, Import};
    let invalid = || Error::invalid("");
    let not_found = || Error::FileNotFound(String::new());
    let upload_errors = [
        Error::Upload(UploadError::SessionNotFound),
        Error::Upload(UploadError::ResendMismatch { offset: 0, len: 0 }),
        Error::Upload(UploadError::Cancelled),
        Error::Upload(UploadError::OffsetMismatch { expected: 0, got: 0 }),
        Error::AlreadyExists(String::new()),
        Error::FileTooLarge { size: 0, limit: 0 },
        Error::QuotaExceeded { requested: 0, available: 0, quota: 0 },
        Error::LimitReached { code: "", message: String::new() },
        Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
        invalid(),
    ];
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
    vec![
        Route {
            method: HttpMethod::Post,
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
                integer_param(
                    "X-Goog-Upload-Header-Content-Length",
                    ParameterIn::Header,
                    "The file's size (start)",
                    None,
                ),
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
            ok: vec![(StatusCode::OK, upload_ok)],
            errors: with(gemini_common(), Gemini, upload_errors),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Get,
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
            errors: with(gemini_common(), Gemini, [invalid()]),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Post,
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
                        Error::InvalidField { code: "", message: String::new() },
                        Error::IdempotencyConflict(String::new()),
                        Error::LimitReached { code: "", message: String::new() },
                        Error::QuotaExceeded { requested: 0, available: 0, quota: 0 },
                        Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
                    ],
                );
                errors.push((Gemini, Error::NotImplemented(String::new())));
                errors.push((Gemini, Error::UnknownRoute));
                errors
            },
            authenticated: true,
        },
        Route {
            method: HttpMethod::Get,
            path: "/{version}/files/{name}",
            summary: "Get a file",
            description: "On v1, an id starting with `qfile-` is an import task (see `/v1/files/{import_id}`).",
            parameters: vec![version(), file_name()],
            body: None,
            ok: vec![reply(StatusCode::OK, "The file", "application/json", json("File"))],
            errors: with(gemini_common(), Gemini, [not_found()]),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Delete,
            path: "/{version}/files/{name}",
            summary: "Delete a file and its bytes",
            description: "Answers `{}`.",
            parameters: vec![version(), file_name()],
            body: None,
            ok: vec![reply(StatusCode::OK, "`{}`", "application/json", ObjectBuilder::new().into())],
            errors: with(gemini_common(), Gemini, [not_found()]),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Get,
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
                    invalid(),
                    Error::FailedPrecondition(String::new()),
                    Error::RangeNotSatisfiable { size: 0 },
                ],
            ),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Post,
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
                    invalid(),
                    not_found(),
                    Error::FileTooLarge { size: 0, limit: 0 },
                    Error::LimitReached { code: "", message: String::new() },
                    Error::BodyStalled(crate::error::Stall::Silent(std::time::Duration::ZERO)),
                ],
            ),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Get,
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
            errors: import_task_errors([Error::InvalidField { code: "", message: String::new() }]),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Delete,
            path: "/v1/files/{import_id}",
            summary: "Cancel an import and delete its bytes",
            description: "An id without the `qfile-` prefix is a Gemini file name and answers like `/{version}/files/{name}`.",
            parameters: vec![import_id()],
            body: None,
            ok: vec![reply(StatusCode::OK, "Deleted", "application/json", json("DeletedImport"))],
            errors: import_task_errors([]),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Post,
            path: "/{version}/models/{model}:{method}",
            summary: "Call a model (generateContent, streamGenerateContent, countTokens) with filegate files",
            description: "Forwarded to the configured upstream (FILEGATE_UPSTREAM: Vertex AI or the Gemini API; 501 \
                when off) with the body untouched except for `fileData` parts naming filegate files (`files/{id}`, \
                filegate's `uri`, `qfile-…`), which become a `gs://` URI, inline data or an upstream copy. \
                `?alt=sse` streams server-sent events. The upstream's own errors are passed on as they come.",
            parameters: vec![
                version(),
                param("model", ParameterIn::Path, true, "The model (or an alias of FILEGATE_MODEL_MAP)"),
                enum_param(
                    "method",
                    ParameterIn::Path,
                    true,
                    "The model method",
                    &["generateContent", "streamGenerateContent", "countTokens"],
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
        },
        Route {
            method: HttpMethod::Post,
            path: "/v1/chat/completions",
            summary: "OpenAI-compatible chat completions that may read filegate files",
            description: "Translated to generateContent and forwarded like `/{version}/models/{model}:{method}`. \
                File parts: `{\"type\": \"file\", \"file\": {\"file_id\": \"qfile-…\" | \"files/…\", \"format\": \"video/mp4\"}}`; \
                `image_url`, `input_audio`, text. `stream: true` answers `chat.completion.chunk` events ending \
                with `data: [DONE]`.",
            parameters: vec![],
            body: Some(json_body("ChatRequest", true)),
            ok: vec![reply(
                StatusCode::OK,
                "The completion, or its chunks",
                "application/json",
                json("ChatCompletion"),
            )],
            errors: with(import_common(), Chat, model_errors()),
            authenticated: true,
        },
        Route {
            method: HttpMethod::Get,
            path: "/healthz",
            summary: "Readiness: 200 when the database and the blob store can be written",
            description: "",
            parameters: vec![],
            body: None,
            ok: vec![reply(StatusCode::OK, "Ready", "application/json", ObjectBuilder::new().into())],
            errors: vec![(Gemini, Error::retry(String::new()))],
            authenticated: false,
        },
        Route {
            method: HttpMethod::Get,
            path: "/metrics",
            summary: "Prometheus metrics",
            description: "",
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
        },
        Route {
            method: HttpMethod::Get,
            path: "/openapi.json",
            summary: "This document",
            description: "",
            parameters: vec![],
            body: None,
            ok: vec![reply(StatusCode::OK, "OpenAPI 3.1", "application/json", ObjectBuilder::new().into())],
            errors: vec![],
            authenticated: false,
        },
    ]
}

fn operation(route: Route) -> Operation {
    let mut builder = OperationBuilder::new()
        .summary(Some(route.summary))
        .description((!route.description.is_empty()).then_some(route.description))
        .parameters(Some(route.parameters))
        .request_body(route.body);
    if !route.authenticated {
        builder = builder.securities(Some(Vec::<utoipa::openapi::security::SecurityRequirement>::new()));
    }
    for (status, response) in route.ok {
        builder = builder.response(status.as_str(), response);
    }
    // Group the errors by the status their surface answers them with.
    let mut by_status: BTreeMap<u16, (Vec<&'static str>, Vec<Surface>)> = BTreeMap::new();
    for (surface, err) in &route.errors {
        let entry = by_status.entry(surface.status_of(err).as_u16()).or_default();
        if !entry.0.contains(&reason(err)) {
            entry.0.push(reason(err));
        }
        if !entry.1.contains(surface) {
            entry.1.push(*surface);
        }
    }
    for (status, (reasons, surfaces)) in by_status {
        let schema = match surfaces.as_slice() {
            [one] => one.error_schema(),
            many => many.iter().fold(OneOfBuilder::new(), |one_of, s| one_of.item(s.error_schema())).into(),
        };
        let description = reasons.join("; ");
        let mut description = description[..1].to_uppercase() + &description[1..];
        description.push('.');
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(schema)).build());
        builder = builder.response(status.to_string(), response.build());
    }
    builder.build()
}

pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in routes() {
        let (path, method) = (route.path, route.method.clone());
        paths = paths.path(path, PathItem::new(method, operation(route)));
    }
    let mut api = Components::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api.paths = paths.build();
    if let Some(components) = api.components.as_mut() {
        components
            .add_security_scheme("apiKey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-goog-api-key"))));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
    api.security = Some(vec![
        utoipa::openapi::security::SecurityRequirement::new("apiKey", Vec::<String>::new()),
        utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
    ]);
    api
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_come_from_the_error_mapping() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        let import_get = &doc["paths"]["/v1/files/{import_id}"]["get"]["responses"];
        for status in ["200", "400", "401", "403", "404", "503"] {
            assert!(import_get.get(status).is_some(), "GET /v1/files/{{import_id}} lacks {status}: {import_get}");
        }
        let download = &doc["paths"]["/{version}/files/{name}:download"]["get"]["responses"];
        for status in ["200", "206", "400", "403", "404", "416", "503"] {
            assert!(download.get(status).is_some(), "download lacks {status}");
        }
        assert_eq!(
            doc["paths"]["/{version}/files"]["get"]["parameters"][0]["schema"]["enum"],
            serde_json::json!(["v1", "v1beta", "v1alpha"])
        );
    }
}
