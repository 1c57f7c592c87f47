//! The client side of the wire: requests to a Files API server (filegate, or Google's own, which speaks
//! the same protocol), and its error replies turned into [`CliError`]s that read like the server's, with a
//! hint for the common ones and an exit code per kind.
//!
//! Import tasks are read as the server's wire types (only filegate speaks that surface). Gemini `File`s stay
//! JSON values: Google's have fields filegate's lack (`videoMetadata`, …) and may lack some of ours, and the
//! client reads only `name`, `sizeBytes` and `sha256Hash`, passing the rest through to `--json` untouched.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Where and as whom the client commands talk.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// The server's base URL (filegate, or `https://generativelanguage.googleapis.com` for Google's Files
    /// API).
    #[arg(long, env = "FILEGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The API key (sent as `x-goog-api-key`).
    #[arg(long, env = "FILEGATE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// One JSON document on stdout instead of tables and progress bars.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes, documented in docs/cli.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Success = 0,
    /// Anything else: the server unreachable, a local file unreadable, an unexpected reply.
    Failure = 1,
    /// The command line itself is wrong (also what clap exits with).
    Usage = 2,
    /// The server refused the key.
    KeyRefused = 3,
    /// The file, import or upload does not exist (or belongs to another project).
    NotFound = 4,
    /// A limit: the project's quota, the file size limit, too many uploads or requests.
    Limit = 5,
    /// The server finished, but the outcome is a failure: an import failed, a digest did not match.
    Failed = 6,
}

/// An error as the user reads it: what happened, then how to fix it when that is known.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into(), hint: None }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Exit::Failure, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A reply whose status says it failed: the status line, the server's own message, and a hint.
    /// What went wrong is read from the error's machine fields — the HTTP status, `error.status` and the
    /// `ErrorInfo` reason on the Gemini surface, `error.code` on the import surface — never from its
    /// sentence, which is for people and may change.
    pub async fn from_reply(response: Response) -> Self {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let error = &parsed["error"];
        // Google: {"error": {"code", "message", "status", "details"}}; OpenAI: {"error": {"message", "type", "code"}}.
        let name = error["status"].as_str().or_else(|| error["code"].as_str()).unwrap_or("");
        let message = error["message"].as_str().map(str::to_owned).unwrap_or_else(|| {
            let text = body.trim();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("").to_owned()
            } else {
                text.chars().take(500).collect()
            }
        });
        let reason = error["details"]
            .as_array()
            .and_then(|details| details.iter().find_map(|d| d["reason"].as_str()))
            .unwrap_or("");
        let (exit, hint) = classify(status.as_u16(), name, reason);
        let label = if name.is_empty() { String::new() } else { format!(" {name}") };
        let mut err = Self::new(exit, format!("{}{label}: {message}", status.as_u16()));
        err.hint = hint.map(str::to_owned);
        err
    }

    fn unreachable(server: &str, err: &reqwest::Error) -> Self {
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            detail = format!("{detail}: {inner}");
            source = inner.source();
        }
        Self::failure(format!("could not reach {server}: {detail}"))
            .with_hint("is the server running? `filegate serve` starts one; --server / FILEGATE_URL says where")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        Self::failure(err.to_string())
    }
}

/// A Files API server, its key attached to every request.
#[derive(Clone)]
pub struct Remote {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> CliResult<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(format!("--server must be an http:// or https:// URL, not {base:?}")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per request: a 2 GiB download may take long, a silent server may not.
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("filegate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::failure(e.to_string()))?;
        Ok(Self { http, base, key: args.key.clone().filter(|k| !k.is_empty()) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` under the base URL, or to an absolute URL the server handed out (an upload URL).
    pub fn request(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let request = self.http.request(method, url);
        match &self.key {
            Some(key) => request.header("x-goog-api-key", key),
            None => request,
        }
    }

    /// Sends; a reply other than 2xx becomes its [`CliError`].
    pub async fn send(&self, request: RequestBuilder) -> CliResult<Response> {
        let response = self.send_any(request).await?;
        if response.status().is_success() { Ok(response) } else { Err(CliError::from_reply(response).await) }
    }

    /// Sends and returns whatever status comes back; only a failure to talk is an error.
    pub async fn send_any(&self, request: RequestBuilder) -> CliResult<Response> {
        request.send().await.map_err(|e| CliError::unreachable(&self.base, &e))
    }

    pub async fn json(&self, request: RequestBuilder) -> CliResult<Value> {
        read_json(self.send(request).await?).await
    }

    /// A reply read as one of the wire types.
    pub async fn typed<T: serde::de::DeserializeOwned>(&self, request: RequestBuilder) -> CliResult<T> {
        let value = self.json(request).await?;
        serde_json::from_value(value)
            .map_err(|e| CliError::failure(format!("an unexpected reply from the server: {e}")))
    }
}

/// A JSON request body (reqwest's `json` feature is left off: the server never needs it).
pub trait JsonBody {
    fn json_body(self, body: &impl serde::Serialize) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &impl serde::Serialize) -> Self {
        self.header("Content-Type", "application/json").body(serde_json::to_vec(body).expect("serializable"))
    }
}

pub async fn read_json(response: Response) -> CliResult<Value> {
    let text = response.text().await.map_err(|e| CliError::failure(format!("reading the reply: {e}")))?;
    serde_json::from_str(&text).map_err(|_| {
        let start: String = text.chars().take(200).collect();
        CliError::failure(format!("the server answered something other than JSON: {start}"))
    })
}

/// `files/abc`, `abc`, a file's `uri` or `qfile-abc` → the Gemini path `/v1beta/files/abc`, or the import
/// path `/v1/files/qfile-abc` for a qfile (whose own view shows the import's progress and error).
pub fn file_path(id: &str) -> CliResult<String> {
    let id = id.trim();
    let id = id.rsplit_once("/files/").map_or(id, |(_, tail)| tail);
    let id = id.strip_prefix("files/").unwrap_or(id);
    if id.is_empty() || id.contains(['/', '?', '#', ':']) {
        return Err(CliError::usage(format!("{id:?} is not a file id (files/ID, ID or qfile-ID)")));
    }
    Ok(if id.starts_with("qfile-") { format!("/v1/files/{id}") } else { format!("/v1beta/files/{id}") })
}

/// The exit status and hint for a failed reply, from its HTTP status, its `error.status` or `error.code`
/// (`name`) and its `ErrorInfo` reason.
fn classify(status: u16, name: &str, reason: &str) -> (Exit, Option<&'static str>) {
    let key_refused = status == 401
        || matches!(reason, "API_KEY_INVALID" | "CREDENTIALS_MISSING")
        || matches!(name, "invalid_api_key" | "missing_api_key");
    if key_refused {
        return (
            Exit::KeyRefused,
            Some("check --key / FILEGATE_KEY; an operator makes one with `filegate keys create --project P`"),
        );
    }
    if status == 404 || reason == "FILE_NOT_FOUND" || name == "file_not_found" {
        return (
            Exit::NotFound,
            Some("`filegate ls` lists this key's files; files expire 48 hours after upload unless told otherwise"),
        );
    }
    if reason == "QUOTA_EXCEEDED" || name == "quota_exceeded" {
        return (
            Exit::Limit,
            Some("the project's quota is full: delete files (`filegate rm`) or ask the operator for more"),
        );
    }
    if reason == "FILE_TOO_LARGE" || name == "too_large" || status == 413 {
        return (
            Exit::Limit,
            Some("the server's limit per file is smaller than this file (filegate's default is 2 GiB)"),
        );
    }
    if status == 429 {
        return (Exit::Limit, Some("too many at once for this project: let some finish, or retry later"));
    }
    (Exit::Failure, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_every_spelling_reach_the_same_path() {
        for id in ["abc", "files/abc", "http://h:1/v1beta/files/abc", " abc "] {
            assert_eq!(file_path(id).unwrap(), "/v1beta/files/abc");
        }
        assert_eq!(file_path("qfile-k3j").unwrap(), "/v1/files/qfile-k3j");
        assert!(file_path("a/../b").is_err());
        assert!(file_path("files/").is_err());
    }

    #[test]
    fn replies_are_told_apart_by_their_machine_fields() {
        let exit = |status, name, reason| classify(status, name, reason).0 as i32;
        assert_eq!(exit(403, "PERMISSION_DENIED", "FILE_NOT_FOUND"), Exit::NotFound as i32);
        assert_eq!(exit(403, "PERMISSION_DENIED", "CREDENTIALS_MISSING"), Exit::KeyRefused as i32);
        assert_eq!(exit(400, "INVALID_ARGUMENT", "API_KEY_INVALID"), Exit::KeyRefused as i32);
        assert_eq!(
            exit(403, "PERMISSION_DENIED", ""),
            Exit::Failure as i32,
            "a 403 without a reason is not a lost file"
        );
        assert_eq!(exit(404, "file_not_found", ""), Exit::NotFound as i32);
        assert_eq!(exit(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), Exit::Limit as i32);
        assert_eq!(exit(429, "too_many_imports", ""), Exit::Limit as i32);
        assert_eq!(exit(400, "INVALID_ARGUMENT", "FILE_TOO_LARGE"), Exit::Limit as i32);
        assert_eq!(exit(400, "INVALID_ARGUMENT", ""), Exit::Failure as i32);
    }
}
