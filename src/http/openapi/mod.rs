//! The OpenAPI description of every route, built from the code so that it cannot drift from it.
//!
//! Paths and methods come from the endpoint list the router is built from (`http/routes.rs`), each
//! endpoint naming the operations below (`operations.rs`) that describe it.
//! Schemas come from the wire types themselves (`#[derive(ToSchema)]` beside their serde derives). The
//! statuses of a route come from the errors it can answer, passed through the same mapping that writes the
//! replies ([`google::status_of`], [`openai_dialect::status_of`]): a route lists *which* domain errors
//! it may return, never a status number. A CI fuzzer (schemathesis, `scripts/test.sh`) then checks every
//! reply against this document, so a status the code answers and the document lacks fails the build.

use std::collections::BTreeMap;

use axum::http::Method;
use axum::http::StatusCode;
use utoipa::OpenApi as _;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
};

mod caches_and_batches;
mod console;
mod openai;
pub mod operations;
mod webhooks;

use super::dialect::google::{self, RouteRejection};
use super::dialect::openai as openai_dialect;
use crate::error::{Error, UploadError, UpstreamError};

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
pub enum Surface {
    Gemini,
    Import,
    /// `POST /v1/chat/completions`: the import surface's OpenAI-style format.
    Chat,
}

impl Surface {
    fn status_of(self, refusal: &Refusal) -> StatusCode {
        match (self, refusal) {
            (_, Refusal::Route(rejection)) => rejection.status(),
            (Self::Gemini, Refusal::Domain(err)) => google::status_of(err),
            (Self::Import, Refusal::Domain(err)) => openai_dialect::status_of(err),
            (Self::Chat, Refusal::Domain(err)) => openai_dialect::chat_status_of(err),
        }
    }

    fn error_schema(self) -> RefOr<Schema> {
        match self {
            Self::Gemini => Ref::from_schema_name("ErrorEnvelope").into(),
            Self::Import | Self::Chat => Ref::from_schema_name("ImportErrorEnvelope").into(),
        }
    }
}

/// What an operation may refuse a request with: a domain error, or (before any handler) a route that
/// does not exist.
pub enum Refusal {
    Domain(Error),
    Route(RouteRejection),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Self::Domain(err)
    }
}

impl From<RouteRejection> for Refusal {
    fn from(rejection: RouteRejection) -> Self {
        Self::Route(rejection)
    }
}

/// One operation: where it is, what it takes, what it answers on success, and every error it may answer.
/// Its method is its endpoint's (`http/routes.rs`).
pub struct Route {
    /// The path as OpenAPI writes it (`/{version}/files/{name}:download`), which the endpoint's router
    /// pattern takes.
    pub path: &'static str,
    summary: &'static str,
    description: &'static str,
    parameters: Vec<Parameter>,
    body: Option<RequestBody>,
    /// Success statuses and their replies.
    ok: Vec<(StatusCode, Response)>,
    /// The errors, each with the surface whose format answers it.
    errors: Vec<(Surface, Refusal)>,
    authenticated: bool,
}

/// A short reason for each refusal, for the status descriptions.
fn reason(refusal: &Refusal) -> &'static str {
    let err = match refusal {
        Refusal::Route(RouteRejection::UnknownRoute) => return "an unknown API version or route",
        Refusal::Route(RouteRejection::MethodNotAllowed) => return "a method the path does not take",
        Refusal::Domain(err) => err,
    };
    match err {
        Error::InvalidArgument(_) | Error::InvalidField { .. } => "a malformed request (the message names the field)",
        Error::FileNotFound(_) => "a missing, expired or other project's file",
        Error::CacheNotFound(_) => "a missing, expired or other project's context cache",
        Error::BatchNotFound(_) => "a missing or other project's batch job",
        Error::WebhookNotFound(_) => "a missing or other project's webhook",
        Error::PermissionDenied(_) => "a valid key that may not do this (not an operator's)",
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
    enum_param("version", ParameterIn::Path, true, "API version", &google::VERSIONS)
}

/// A file id (the part after `files/`). A pattern rather than any string, so that a fuzzer generates names
/// a path can carry instead of filtering most of what it made.
const FILE_ID_PATTERN: &str = "[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?";

fn id_param(pattern: String, description: &str) -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern));
    string_param("name", ParameterIn::Path, true, description).schema(Some(schema)).build()
}

/// A file as the OpenAI surface names it: `file-{id}`, or the bare id.
fn openai_file_name() -> Parameter {
    id_param(format!("^(file-)?{FILE_ID_PATTERN}$"), "The file (`file-{id}` or `{id}`)")
}

fn file_name() -> Parameter {
    id_param(format!("^{FILE_ID_PATTERN}$"), "The file id (the part after `files/`)")
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
fn gemini_common() -> Vec<(Surface, Refusal)> {
    let mut common = with(vec![], Surface::Gemini, [Error::MissingApiKey, Error::InvalidApiKey, Error::retry("")]);
    common.push((Surface::Gemini, RouteRejection::UnknownRoute.into()));
    common
}

fn import_common() -> Vec<(Surface, Refusal)> {
    with(vec![], Surface::Import, [Error::MissingApiKey, Error::InvalidApiKey, Error::retry("")])
}

fn with(
    mut common: Vec<(Surface, Refusal)>,
    surface: Surface,
    more: impl IntoIterator<Item = Error>,
) -> Vec<(Surface, Refusal)> {
    common.extend(more.into_iter().map(|e| (surface, e.into())));
    common
}

/// `qfile-…`, as the import routes take it.
fn import_id() -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^qfile-[a-z0-9]{1,40}$"));
    string_param("import_id", ParameterIn::Path, true, "`qfile-…`").schema(Some(schema)).build()
}

/// The errors of `/v1/files/{import_id}`: the import surface's, and, for an id without the `qfile-`
/// prefix (a Gemini file name), the Gemini surface's.
fn import_task_errors(more: impl IntoIterator<Item = Error>) -> Vec<(Surface, Refusal)> {
    let mut errors = with(import_common(), Surface::Import, [Error::FileNotFound(String::new())]);
    errors.extend(more.into_iter().map(|e| (Surface::Import, e.into())));
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

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        ref other => unreachable!("no endpoint takes {other}"),
    }
}

/// The document of the routes the route table (`http/routes.rs`) serves, given as each method with the
/// operations it describes.
pub fn document<'a>(served: impl IntoIterator<Item = (&'a Method, &'a [fn() -> Route])>) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for (method, operations) in served {
        for describe in operations {
            let route = describe();
            paths = paths.path(route.path, PathItem::new(http_method(method), operation(route)));
        }
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
