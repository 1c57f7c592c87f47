//! The port to Google's model APIs: Vertex AI (bearer tokens) or the Gemini API (an API key), their
//! `generateContent` family, and the Gemini API's Files API for files that must be uploaded before a model
//! can read them.
//!
//! Timeouts are idle timeouts only (`FILEGATE_UPSTREAM_IDLE_TIMEOUT_SECONDS`, applied to every read): a
//! video prompt may stream for minutes, and that is fine as long as bytes keep coming.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::gcp::GcpCredentialProvider;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use crate::config::{ModelConfig, Upstream, VertexAuth};
use crate::error::UpstreamError;
use crate::telemetry::metric;

/// A model method filegate forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelMethod {
    GenerateContent,
    StreamGenerateContent,
    CountTokens,
}

impl ModelMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generateContent" => Some(Self::GenerateContent),
            "streamGenerateContent" => Some(Self::StreamGenerateContent),
            "countTokens" => Some(Self::CountTokens),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GenerateContent => "generateContent",
            Self::StreamGenerateContent => "streamGenerateContent",
            Self::CountTokens => "countTokens",
        }
    }
}

/// An upstream's 2xx reply, its body still arriving.
pub struct Reply {
    pub content_type: Option<String>,
    pub body: BoxStream<'static, Result<Bytes, UpstreamError>>,
}

/// A file of the Gemini API's Files API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleFile {
    pub name: String,
    #[serde(default)]
    pub uri: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub expiration_time: Option<String>,
    /// A decimal number, as Google spells int64 in JSON.
    #[serde(default)]
    pub size_bytes: Option<String>,
}

#[derive(Deserialize)]
struct GoogleFileEnvelope {
    file: GoogleFile,
}

enum Auth {
    /// `x-goog-api-key` (the Gemini API).
    ApiKey(HeaderValue),
    /// A fixed bearer token (`FILEGATE_UPSTREAM_BEARER_TOKEN`).
    Bearer(HeaderValue),
    /// Google's application-default credentials, through `object_store`'s GCP credential chain: a
    /// service-account file (self-signed JWTs with the cloud-platform scope, no token server), an
    /// authorized-user file, or the metadata server. Already a dependency for Cloud Storage, it caches
    /// and refreshes tokens; no second auth stack is needed.
    Google(GcpCredentialProvider),
}

pub struct UpstreamClient {
    /// "Vertex AI" or "the Gemini API", for messages.
    name: &'static str,
    /// The versioned API root: `{endpoint}/v1beta` (Gemini API), `{endpoint}/v1` (Vertex AI).
    api_base: String,
    /// Where resources live under it: `projects/{p}/locations/{l}` at Vertex AI, nothing at the Gemini API.
    parent: Option<String>,
    /// Everything before `/{model}:{method}`.
    models_base: String,
    /// The Gemini API's base URL, for its Files API.
    files_base: Option<String>,
    auth: Auth,
    http: reqwest::Client,
    idle: Duration,
}

/// Bodies of error replies are read up to this size (a google.rpc.Status is small).
const MAX_ERROR_BODY: usize = 64 * 1024;

impl UpstreamClient {
    /// The client for `config`, `None` when model calls are off.
    pub fn new(config: &ModelConfig) -> anyhow::Result<Option<Self>> {
        let (name, api_base, parent, files_base, auth) = match &config.upstream {
            Upstream::Off => return Ok(None),
            Upstream::Vertex { project, location, endpoint, auth, .. } => {
                let auth = match auth {
                    VertexAuth::Static(token) => {
                        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))?;
                        value.set_sensitive(true);
                        Auth::Bearer(value)
                    }
                    VertexAuth::ApplicationDefault => Auth::Google(google_credentials()?),
                };
                let parent = format!("projects/{project}/locations/{location}");
                ("Vertex AI", format!("{endpoint}/v1"), Some(parent), None, auth)
            }
            Upstream::Gemini { api_key, endpoint } => {
                let mut key = HeaderValue::from_str(api_key.expose_secret())?;
                key.set_sensitive(true);
                ("the Gemini API", format!("{endpoint}/v1beta"), None, Some(endpoint.clone()), Auth::ApiKey(key))
            }
        };
        let models_base = match &parent {
            Some(parent) => format!("{api_base}/{parent}/publishers/google/models"),
            None => format!("{api_base}/models"),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(config.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Some(Self { name, api_base, parent, models_base, files_base, auth, http, idle: config.idle_timeout }))
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The OpenTelemetry GenAI name of the upstream (`gen_ai.provider.name`).
    pub fn provider(&self) -> &'static str {
        if self.is_vertex() { "gcp.vertex_ai" } else { "gcp.gemini" }
    }

    pub fn is_vertex(&self) -> bool {
        self.files_base.is_none()
    }

    async fn auth_headers(&self) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::new();
        match &self.auth {
            Auth::ApiKey(key) => {
                headers.insert("x-goog-api-key", key.clone());
            }
            Auth::Bearer(value) => {
                headers.insert(reqwest::header::AUTHORIZATION, value.clone());
            }
            Auth::Google(provider) => {
                let credential = provider
                    .get_credential()
                    .await
                    .map_err(|e| UpstreamError::Credentials { upstream: self.name, detail: e.to_string() })?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", credential.bearer))
                    .map_err(|e| UpstreamError::Credentials { upstream: self.name, detail: e.to_string() })?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        Ok(headers)
    }

    /// Sends a model call. `body` is the request JSON, streamed (it may carry inline file bytes); `len` its
    /// exact length. A non-2xx reply is an [`UpstreamError`] with the upstream's body kept.
    pub async fn call(
        &self,
        model: &str,
        method: ModelMethod,
        sse: bool,
        body: reqwest::Body,
        len: u64,
    ) -> Result<Reply, UpstreamError> {
        let url = format!("{}/{model}:{}", self.models_base, method.as_str());
        let mut headers = self.auth_headers().await?;
        crate::telemetry::traces::inject_current(&mut headers);
        let mut request = self
            .http
            .post(url)
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        if sse {
            request = request.query(&[("alt", "sse")]);
        }
        let response = self.send(request).await;
        let status = match &response {
            Ok(response) => response.status().as_str().to_owned(),
            Err(UpstreamError::Status { status, .. }) => status.to_string(),
            Err(UpstreamError::Unauthorized { .. }) => "401".into(),
            Err(_) => "error".into(),
        };
        // The model as a label only once the upstream knows it: invented names cannot make time series.
        let known = !matches!(status.as_str(), "404" | "error");
        let label = if known { model.to_owned() } else { "unknown".into() };
        metrics::counter!(metric::UPSTREAM_REQUESTS, "model" => label, "status" => status).increment(1);
        Ok(self.reply(response?))
    }

    /// A 2xx reply whose body streams on, a transport failure mid-way reported as this upstream's.
    fn reply(&self, response: reqwest::Response) -> Reply {
        let content_type = header_string(response.headers(), reqwest::header::CONTENT_TYPE);
        let (name, idle) = (self.name, self.idle);
        Reply { content_type, body: response.bytes_stream().map_err(move |e| transport_error(name, idle, &e)).boxed() }
    }

    /// A model's full name as a cache names it: `models/{m}`, or at Vertex AI
    /// `projects/{p}/locations/{l}/publishers/google/models/{m}` (filegate's project, never the caller's).
    pub fn cache_model(&self, model: &str) -> String {
        match &self.parent {
            Some(parent) => format!("{parent}/publishers/google/models/{model}"),
            None => format!("models/{model}"),
        }
    }

    /// Creates a context cache from `body` (streamed, `len` bytes exactly: it may carry inline files).
    pub async fn create_cache(&self, body: reqwest::Body, len: u64) -> Result<Reply, UpstreamError> {
        let collection = match &self.parent {
            Some(parent) => format!("{}/{parent}/cachedContents", self.api_base),
            None => format!("{}/cachedContents", self.api_base),
        };
        let request = self
            .http
            .post(collection)
            .headers(self.auth_headers().await?)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let response = self.send(request).await?;
        Ok(self.reply(response))
    }

    /// Where the upstream keeps resources: `projects/{p}/locations/{l}` at Vertex AI, none at the Gemini API.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// A JSON request about a resource (a cache, a batch job) by the upstream's own name for it, or to a
    /// collection or custom method (`models/m:batchGenerateContent`, `…/batchPredictionJobs`, `…:cancel`).
    /// The reply's JSON, `{}` for an empty one.
    pub async fn resource_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, UpstreamError> {
        // Names come from the upstream or from filegate; still, nothing but a resource path goes into the URL.
        let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.:@".contains(&b)) && !path.contains("..");
        let known = ["cachedContents", "batches/", "projects/", "models/"].iter().any(|p| path.starts_with(p));
        if !plain || !known {
            return Err(UpstreamError::Unreachable {
                upstream: self.name,
                detail: format!("a resource path {path:?}"),
            });
        }
        let mut request =
            self.http.request(method, format!("{}/{path}", self.api_base)).headers(self.auth_headers().await?);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|e| transport_error(self.name, self.idle, &e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Unreachable {
            upstream: self.name,
            detail: format!("an unexpected reply about {path}: {e}"),
        })
    }

    /// Streams a file of the Gemini API's Files API (`files/abc`), such as a batch job's results.
    pub async fn download_file(
        &self,
        name: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, UpstreamError>>, UpstreamError> {
        // As google-genai asks for a file's bytes.
        let url = format!("{}/v1beta/{name}:download", self.files_base()?);
        let request = self.http.get(url).query(&[("alt", "media")]).headers(self.auth_headers().await?);
        Ok(self.reply(self.send(request).await?).body)
    }

    /// Sends a request and turns transport failures and error statuses into [`UpstreamError`]s.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
        let response = request.send().await.map_err(|e| transport_error(self.name, self.idle, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response).await)
    }

    async fn status_error(&self, response: reqwest::Response) -> UpstreamError {
        let status = response.status().as_u16();
        let content_type = header_string(response.headers(), reqwest::header::CONTENT_TYPE);
        let retry_after = header_string(response.headers(), reqwest::header::RETRY_AFTER);
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - body.len())]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
        let rpc = parse_rpc_status(&body);
        let message = match &rpc {
            Some(rpc) => rpc.message.clone(),
            None => describe_body(&body, content_type.as_deref()),
        };
        if status == 401 {
            return UpstreamError::Unauthorized { upstream: self.name, message };
        }
        UpstreamError::Status {
            upstream: self.name,
            status,
            rpc_body: rpc.is_some().then(|| Bytes::from(body)),
            code: rpc.and_then(|rpc| rpc.code),
            message,
            retry_after,
        }
    }

    fn files_base(&self) -> Result<&str, UpstreamError> {
        self.files_base.as_deref().ok_or_else(|| UpstreamError::Unreachable {
            upstream: self.name,
            detail: "Vertex AI has no Files API".into(),
        })
    }

    /// Uploads a file to the Gemini API's Files API with its resumable protocol: one start, then the bytes
    /// streamed in one `upload, finalize` request (never held whole in memory).
    pub async fn upload_file(
        &self,
        display_name: &str,
        mime_type: &str,
        size: u64,
        bytes: reqwest::Body,
    ) -> Result<GoogleFile, UpstreamError> {
        let base = self.files_base()?;
        let start = self
            .http
            .post(format!("{base}/upload/v1beta/files"))
            .headers(self.auth_headers().await?)
            .header("x-goog-upload-protocol", "resumable")
            .header("x-goog-upload-command", "start")
            .header("x-goog-upload-header-content-length", size)
            .header("x-goog-upload-header-content-type", mime_type)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({"file": {"displayName": display_name}}).to_string());
        let started = self.send(start).await?;
        let upload_url =
            header_string(started.headers(), "x-goog-upload-url").ok_or_else(|| UpstreamError::Unreachable {
                upstream: self.name,
                detail: "the upload start sent no x-goog-upload-url".into(),
            })?;
        let upload = self
            .http
            .post(upload_url)
            .headers(self.auth_headers().await?)
            .header("x-goog-upload-command", "upload, finalize")
            .header("x-goog-upload-offset", 0)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(bytes);
        let finished = self.send(upload).await?;
        self.read_json::<GoogleFileEnvelope>(finished).await.map(|e| e.file)
    }

    /// A file of the Files API (`files/abc`).
    pub async fn get_file(&self, name: &str) -> Result<GoogleFile, UpstreamError> {
        let request =
            self.http.get(format!("{}/v1beta/{name}", self.files_base()?)).headers(self.auth_headers().await?);
        let response = self.send(request).await?;
        self.read_json(response).await
    }

    /// Deletes a file of the Files API; one that is gone already counts as deleted.
    pub async fn delete_file(&self, name: &str) -> Result<(), UpstreamError> {
        let request =
            self.http.delete(format!("{}/v1beta/{name}", self.files_base()?)).headers(self.auth_headers().await?);
        match self.send(request).await {
            Ok(_) | Err(UpstreamError::Status { status: 403 | 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read_json<T: serde::de::DeserializeOwned>(&self, response: reqwest::Response) -> Result<T, UpstreamError> {
        let bytes = response.bytes().await.map_err(|e| transport_error(self.name, self.idle, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Unreachable {
            upstream: self.name,
            detail: format!("an unexpected reply from the Files API: {e}"),
        })
    }
}

/// The credential chain of `object_store`'s GCS client, built from the environment (see [`Auth::Google`]).
/// Building checks credential files at start-up; tokens are fetched on first use.
fn google_credentials() -> anyhow::Result<GcpCredentialProvider> {
    let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        // Required by the builder; no bucket is touched through this client.
        .with_bucket_name("filegate-credentials-only")
        .build()
        .map_err(|e| anyhow::anyhow!("reading Google application-default credentials: {e}"))?;
    Ok(gcs.credentials().clone())
}

fn header_string(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The parts of a google.rpc.Status body filegate reads.
struct RpcStatus {
    /// The code name (`NOT_FOUND`), if the body has one.
    code: Option<String>,
    message: String,
}

/// The google.rpc.Status in `body` (`{"error": {"code", "message", "status"}}`), if it is one.
fn parse_rpc_status(body: &[u8]) -> Option<RpcStatus> {
    #[derive(Deserialize)]
    struct Envelope {
        error: Status,
    }
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    Some(RpcStatus { code: envelope.error.status, message: envelope.error.message })
}

/// Words for an error body that is not a google.rpc.Status (a proxy's HTML page, say): short plain text
/// is quoted, anything else only named, so no markup reaches a caller.
fn describe_body(body: &[u8], content_type: Option<&str>) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let plain = content_type.is_none_or(|t| t.starts_with("text/plain"));
    if text.is_empty() {
        "(no message)".into()
    } else if plain && !text.starts_with('<') {
        text.chars().filter(|c| !c.is_control()).take(300).collect()
    } else {
        format!("an error page ({}) instead of an error message", content_type.unwrap_or("no content type"))
    }
}

fn transport_error(upstream: &'static str, idle: Duration, err: &reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        UpstreamError::Stalled { upstream, after: idle }
    } else {
        UpstreamError::Unreachable { upstream, detail: crate::error::error_chain(err) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_google_rpc_status_or_described_without_markup() {
        let rpc =
            parse_rpc_status(br#"{"error": {"code": 404, "message": "no model", "status": "NOT_FOUND"}}"#).unwrap();
        assert_eq!((rpc.code.as_deref(), rpc.message.as_str()), (Some("NOT_FOUND"), "no model"));
        assert!(parse_rpc_status(b"<html><body>502 Bad Gateway</body></html>").is_none());
        let html = describe_body(b"<html><script>x</script></html>", Some("text/html; charset=UTF-8"));
        assert!(!html.contains('<') && html.contains("text/html"), "{html}");
        assert_eq!(describe_body(b"upstream connect error\n", Some("text/plain")), "upstream connect error");
        assert_eq!(describe_body(b"", None), "(no message)");
    }
}
