//! Settings of `filegate serve`: every one has a flag and a `FILEGATE_*` environment variable (the
//! operational contract in the README). Values are parsed and checked here, once, before anything binds
//! or opens, and every problem is reported at once ([`Problems`], `filegate config check`); the rest of
//! the server receives typed values only.
//!
//! Secrets (`FILEGATE_API_KEYS`, `FILEGATE_DATABASE_URL`, `FILEGATE_GEMINI_API_KEY`,
//! `FILEGATE_UPSTREAM_BEARER_TOKEN`) may also be read from a file named by the same variable with `_FILE`
//! appended, as container platforms and systemd credentials mount them ([`secret`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

mod problems;
mod setting;
mod storage;
mod traces;
mod upstream;

pub use crate::telemetry::{LogFormat, TraceSettings};
pub use problems::Problems;
pub use setting::{Flag, Setting, lenient};
pub use storage::{BlobStore, Database, Storage, StorageArgs, parse_blob_url};
pub use upstream::{ApiKeySecret, ModelConfig, Upstream, UpstreamArgs, UpstreamKind, VertexAuth};

use crate::domain::{ApiKey, MediaTypePolicy, ProjectId};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind (port 0 picks a free port; the chosen one is logged as `listening on http://…`).
    #[arg(long, env = "FILEGATE_LISTEN", default_value = "127.0.0.1:8080", value_parser = lenient::<SocketAddr>())]
    pub listen: Setting<SocketAddr>,
    /// Serve `GET /metrics` on this address of its own (a port only the monitoring network reaches), and
    /// not on the public one.
    #[arg(long, env = "FILEGATE_METRICS_LISTEN", value_parser = lenient::<SocketAddr>())]
    pub metrics_listen: Option<Setting<SocketAddr>>,
    /// Base of the URLs filegate hands out (upload URLs, `uri`); default `http://<listen address>`.
    #[arg(long, env = "FILEGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Comma-separated `project:key` pairs accepted in addition to the keys in the database.
    #[arg(long, env = "FILEGATE_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// A file holding FILEGATE_API_KEYS (instead of the variable).
    #[arg(long, env = "FILEGATE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Largest file accepted, in bytes.
    #[arg(long, env = "FILEGATE_MAX_FILE_BYTES", default_value = "2147483648", value_parser = lenient::<u64>())]
    pub max_file_bytes: Setting<u64>,
    /// Storage limit of each project, in bytes (counting files being uploaded).
    #[arg(long, env = "FILEGATE_PROJECT_QUOTA_BYTES", default_value = "21474836480", value_parser = lenient::<u64>())]
    pub project_quota_bytes: Setting<u64>,
    /// Lifetime of uploaded files, counted from the start of their upload.
    #[arg(long, env = "FILEGATE_DEFAULT_TTL_SECONDS", default_value = "172800", value_parser = lenient::<u64>())]
    pub default_ttl_seconds: Setting<u64>,
    /// How often the janitor removes expired files and abandoned uploads.
    #[arg(long, env = "FILEGATE_SWEEP_INTERVAL_SECONDS", default_value = "60", value_parser = lenient::<u64>())]
    pub sweep_interval_seconds: Setting<u64>,
    /// Comma-separated CIDRs exempt from the import SSRF deny list (e.g. `127.0.0.1/32` for tests).
    #[arg(long, env = "FILEGATE_IMPORT_ALLOW_CIDRS")]
    pub import_allow_cidrs: Option<String>,
    /// Concurrent import fetches on this node.
    #[arg(long, env = "FILEGATE_IMPORT_WORKERS", default_value = "4", value_parser = lenient::<usize>())]
    pub import_workers: Setting<usize>,
    /// How long a worker's claim on an import task lasts without renewal.
    #[arg(long, env = "FILEGATE_IMPORT_LEASE_SECONDS", default_value = "30", value_parser = lenient::<u64>())]
    pub import_lease_seconds: Setting<u64>,
    /// Time to connect to an import source.
    #[arg(long, env = "FILEGATE_IMPORT_CONNECT_TIMEOUT_SECONDS", default_value = "10", value_parser = lenient::<u64>())]
    pub import_connect_timeout_seconds: Setting<u64>,
    /// A source that sends no byte for this long is a stall (the attempt is retried).
    #[arg(long, env = "FILEGATE_IMPORT_STALL_TIMEOUT_SECONDS", default_value = "30", value_parser = lenient::<u64>())]
    pub import_stall_timeout_seconds: Setting<u64>,
    /// Total time an import may take, counted from its creation, retries included.
    #[arg(long, env = "FILEGATE_IMPORT_TOTAL_TIMEOUT_SECONDS", default_value = "3600", value_parser = lenient::<u64>())]
    pub import_total_timeout_seconds: Setting<u64>,
    /// Attempts before a transient failure (unreachable source, 5xx, stall) fails the import.
    #[arg(long, env = "FILEGATE_IMPORT_MAX_ATTEMPTS", default_value = "5", value_parser = lenient::<u32>())]
    pub import_max_attempts: Setting<u32>,
    /// Unfinished imports a project may have at once; more are refused with 429.
    #[arg(long, env = "FILEGATE_IMPORT_MAX_ACTIVE_PER_PROJECT", default_value = "100", value_parser = lenient::<u64>())]
    pub import_max_active_per_project: Setting<u64>,
    /// Batch jobs a project may have running (not yet ended) at once; more are refused with 429.
    #[arg(long, env = "FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT", default_value = "100", value_parser = lenient::<u64>())]
    pub batch_max_running_per_project: Setting<u64>,
    /// Connections one import may use at once, each fetching an 8 MiB range, when the source takes ranges
    /// and names its version (ETag or Last-Modified); 1 fetches every source as one stream.
    #[arg(long, env = "FILEGATE_IMPORT_CONNECTIONS", default_value = "4", value_parser = lenient::<usize>())]
    pub import_connections: Setting<usize>,
    /// Bytes of ranges fetched ahead of where imports are, held in memory by all imports of this node
    /// together (8 MiB each); when none is free, an import reads on with one connection. Under 8 MiB,
    /// every source is fetched as one stream.
    #[arg(long, env = "FILEGATE_IMPORT_READ_AHEAD_BYTES", default_value = "33554432", value_parser = lenient::<u64>())]
    pub import_read_ahead_bytes: Setting<u64>,
    /// Comma-separated glob patterns (`*` wildcard) the `model` of an import must match.
    #[arg(long, env = "FILEGATE_IMPORT_MODELS", default_value = "*")]
    pub import_models: String,
    /// A client that sends nothing for this long, while sending its headers or a body, is dropped (an
    /// unfinished chunk is not committed).
    #[arg(long, env = "FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", default_value = "60", value_parser = lenient::<u64>())]
    pub request_idle_timeout_seconds: Setting<u64>,
    /// A request body must arrive at this many bytes per second at least, measured over each 10 s spent
    /// waiting for it (time filegate spends not reading does not count); slower ones are dropped with
    /// 408. 0 turns the check off.
    #[arg(long, env = "FILEGATE_REQUEST_MIN_BYTES_PER_SECOND", default_value = "1024", value_parser = lenient::<u64>())]
    pub request_min_bytes_per_second: Setting<u64>,
    /// How long a request's claim on an upload in a bucket lasts unless its node renews it: after a node
    /// dies mid-chunk, another node waits this long before writing that upload.
    #[arg(long, env = "FILEGATE_UPLOAD_CLAIM_SECONDS", default_value = "30", value_parser = lenient::<u64>())]
    pub upload_claim_seconds: Setting<u64>,
    /// Open client connections at most (default: what the process's file-descriptor limit allows, up to
    /// 10 000). At the limit, new connections wait until one closes.
    #[arg(long, env = "FILEGATE_MAX_CONNECTIONS", value_parser = lenient::<usize>())]
    pub max_connections: Option<Setting<usize>>,
    /// Open upload sessions a project may have at once (more: 429 RESOURCE_EXHAUSTED).
    #[arg(long, env = "FILEGATE_PROJECT_MAX_OPEN_UPLOADS", default_value = "1000", value_parser = lenient::<u64>())]
    pub project_max_open_uploads: Setting<u64>,
    /// Files a project may hold at once, uploads in progress and imports included (more: 429).
    #[arg(long, env = "FILEGATE_PROJECT_MAX_FILES", default_value = "100000", value_parser = lenient::<u64>())]
    pub project_max_files: Setting<u64>,
    /// Comma-separated media types a file may have, with `*` wildcards (`video/*,application/pdf`); by
    /// default every syntactically valid type of a registered top-level type.
    #[arg(long, env = "FILEGATE_ALLOWED_MIME_TYPES", default_value = "*")]
    pub allowed_mime_types: String,
    /// On SIGTERM, how long in-flight requests may take to finish before the server exits.
    #[arg(long, env = "FILEGATE_SHUTDOWN_GRACE_SECONDS", default_value = "30", value_parser = lenient::<u64>())]
    pub shutdown_grace_seconds: Setting<u64>,
    /// `pretty` or `json` log lines on stderr (filter with `RUST_LOG`).
    #[arg(long, env = "FILEGATE_LOG_FORMAT", default_value = "pretty", value_parser = lenient::<LogFormat>())]
    pub log_format: Setting<LogFormat>,
    /// Comma-separated `gs://` patterns (`*` wildcard) of the objects callers may register as files
    /// (`files:register`), e.g. `gs://media-archive/*`. Empty (the default): registering is off. Objects are
    /// read with filegate's own Google credentials, so only buckets meant for it belong here.
    #[arg(long, env = "FILEGATE_REGISTER_BUCKETS", default_value = "")]
    pub register_buckets: String,
    /// `off` turns the web console (`/console`) off; its routes then answer 404.
    #[arg(long, env = "FILEGATE_CONSOLE", default_value = "on")]
    pub console: String,
    /// Comma-separated ids of the API keys that may use the console's operator view (projects, keys): the
    /// 16-hex-digit ids `filegate keys list` shows. Empty (the default): no key is an operator's.
    #[arg(long, env = "FILEGATE_ADMIN_KEYS", default_value = "")]
    pub admin_keys: String,
    /// Deliver webhooks to plain `http://` receivers too (tests, private networks); by default only https.
    /// Receivers are held to the import SSRF guard either way (`FILEGATE_IMPORT_ALLOW_CIDRS` opens it).
    #[arg(long, env = "FILEGATE_WEBHOOK_ALLOW_HTTP", default_value = "false", value_parser = lenient::<Flag>())]
    pub webhook_allow_http: Setting<Flag>,
    /// How long after its event a webhook delivery is retried; then it is dropped and its webhook disabled.
    #[arg(long, env = "FILEGATE_WEBHOOK_RETRY_SECONDS", default_value = "86400", value_parser = lenient::<u64>())]
    pub webhook_retry_seconds: Setting<u64>,
    /// The wait before a failed webhook delivery's first retry; it doubles each time, up to an hour.
    #[arg(long, env = "FILEGATE_WEBHOOK_FIRST_RETRY_MS", default_value = "5000", value_parser = lenient::<u64>())]
    pub webhook_first_retry_ms: Setting<u64>,
    /// The time limit of one webhook delivery attempt (connecting, sending, the receiver's answer).
    #[arg(long, env = "FILEGATE_WEBHOOK_TIMEOUT_SECONDS", default_value = "10", value_parser = lenient::<u64>())]
    pub webhook_timeout_seconds: Setting<u64>,
    /// Webhook delivery attempts in flight on this node (at most 8 of them to one receiver).
    #[arg(long, env = "FILEGATE_WEBHOOK_CONCURRENCY", default_value = "64", value_parser = lenient::<usize>())]
    pub webhook_concurrency: Setting<usize>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

impl setting::Described for LogFormat {
    const WHAT: &'static str = "pretty or json";
}

/// How URL imports run.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub allow_cidrs: Vec<IpNet>,
    pub workers: usize,
    pub lease: Duration,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub total_timeout: Duration,
    pub max_attempts: u32,
    /// Connections per import (ranges), and the node's memory for ranges read ahead.
    pub connections: usize,
    pub read_ahead_bytes: u64,
    /// Glob patterns (`*` only) an import's `model` must match.
    pub models: Vec<String>,
}

/// How webhooks are delivered (`services::webhooks`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub allow_http: bool,
    pub retry_for: Duration,
    pub first_retry: Duration,
    pub attempt_timeout: Duration,
    pub concurrency: usize,
}

/// Limits that apply to every file and project.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub project_quota_bytes: u64,
    pub project_max_open_uploads: u64,
    pub project_max_files: u64,
    /// Unfinished imports a project may have at once.
    pub project_max_active_imports: u64,
    /// Batch jobs a project may have running at once.
    pub project_max_running_batches: u64,
    pub default_ttl: Duration,
    /// How long a claim on an upload in a bucket lasts unless renewed.
    pub upload_claim: Duration,
    /// The media types a file may have.
    pub media_types: MediaTypePolicy,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `/metrics` is served instead of the public address, if set.
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub storage: Storage,
    pub static_keys: Vec<(ProjectId, ApiKey)>,
    pub limits: Limits,
    pub sweep_interval: Duration,
    pub imports: ImportConfig,
    pub webhooks: WebhookConfig,
    /// Whether `/console` is served.
    pub console: bool,
    /// Ids of the keys that may use the console's operator view.
    pub admin_key_ids: Vec<String>,
    pub request_idle_timeout: Duration,
    pub request_min_bytes_per_second: u64,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// OpenTelemetry traces (the standard `OTEL_*` variables); `None`: off.
    pub traces: Option<TraceSettings>,
    pub model: ModelConfig,
    /// `gs://` patterns of the objects callers may register.
    pub register_buckets: Vec<String>,
}

impl Config {
    /// The configuration, or every problem with the settings (not only the first).
    pub fn from_args(args: ServeArgs) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        let p = &mut problems;
        let listen = p.take(args.listen.get());
        // `None`: set but unreadable (its problem recorded); `Some(None)`: not set.
        let metrics_listen = match &args.metrics_listen {
            None => Some(None),
            Some(setting) => p.take(setting.get()).map(Some),
        };
        let public_url = args.public_url.as_deref().and_then(|url| p.take(parse_public_url(url)));
        let storage = Storage::from_args(&args.storage, p);
        let api_keys = secret(args.api_keys, args.api_keys_file.as_deref(), "FILEGATE_API_KEYS", p);
        let static_keys = api_keys.as_deref().and_then(|keys| p.take(parse_api_keys(keys))).unwrap_or_default();
        let allow_cidrs = args.import_allow_cidrs.as_deref().and_then(|c| p.take(parse_cidrs(c)));
        p.check(
            matches!(args.console.as_str(), "on" | "off"),
            format!("FILEGATE_CONSOLE must be on or off, not \"{}\"", args.console),
        );
        let admin_key_ids: Vec<String> =
            args.admin_keys.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_lowercase).collect();
        for id in &admin_key_ids {
            p.check(
                id.len() == crate::meta::KEY_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit()),
                format!("FILEGATE_ADMIN_KEYS: \"{id}\" is not a key id (16 hex digits, as `filegate keys list` shows)"),
            );
        }
        let models = parse_globs(&args.import_models);
        p.check(!models.is_empty(), "FILEGATE_IMPORT_MODELS must name at least one pattern (\"*\" allows every model)");
        let max_connections = p.optional(args.max_connections.as_ref());
        p.check(max_connections != Some(0), "FILEGATE_MAX_CONNECTIONS must be at least 1");
        let register_buckets = parse_globs(&args.register_buckets);
        if let Some(bad) = register_buckets.iter().find(|p| !p.starts_with("gs://") || p.len() <= "gs://".len()) {
            p.push(format!("FILEGATE_REGISTER_BUCKETS patterns are gs://BUCKET/… globs, not \"{bad}\""));
        }
        let allowed_mime_types = parse_globs(&args.allowed_mime_types);
        p.check(
            !allowed_mime_types.is_empty(),
            "FILEGATE_ALLOWED_MIME_TYPES must name at least one pattern (\"*\" allows every type)",
        );
        let seconds =
            |p: &mut Problems, setting: &Setting<u64>, min: u64| Duration::from_secs(p.at_least(setting, min));
        let limits = Limits {
            max_file_bytes: p.at_least(&args.max_file_bytes, 1),
            project_quota_bytes: p.value(&args.project_quota_bytes),
            project_max_open_uploads: p.value(&args.project_max_open_uploads),
            project_max_files: p.value(&args.project_max_files),
            project_max_active_imports: p.value(&args.import_max_active_per_project),
            project_max_running_batches: p.value(&args.batch_max_running_per_project),
            default_ttl: seconds(p, &args.default_ttl_seconds, 1),
            upload_claim: seconds(p, &args.upload_claim_seconds, 3),
            media_types: MediaTypePolicy::new(allowed_mime_types),
        };
        let imports = ImportConfig {
            allow_cidrs: allow_cidrs.unwrap_or_default(),
            workers: p.at_least(&args.import_workers, 1),
            lease: seconds(p, &args.import_lease_seconds, 3),
            connect_timeout: seconds(p, &args.import_connect_timeout_seconds, 1),
            stall_timeout: seconds(p, &args.import_stall_timeout_seconds, 1),
            total_timeout: seconds(p, &args.import_total_timeout_seconds, 1),
            max_attempts: p.at_least(&args.import_max_attempts, 1),
            connections: p.at_least(&args.import_connections, 1),
            read_ahead_bytes: p.value(&args.import_read_ahead_bytes),
            models,
        };
        let webhooks = WebhookConfig {
            allow_http: p.value(&args.webhook_allow_http).0,
            retry_for: seconds(p, &args.webhook_retry_seconds, 0),
            first_retry: Duration::from_millis(p.at_least(&args.webhook_first_retry_ms, 1)),
            attempt_timeout: seconds(p, &args.webhook_timeout_seconds, 1),
            concurrency: p.at_least(&args.webhook_concurrency, 1),
        };
        let sweep_interval = seconds(p, &args.sweep_interval_seconds, 1);
        let request_idle_timeout = seconds(p, &args.request_idle_timeout_seconds, 1);
        let request_min_bytes_per_second = p.value(&args.request_min_bytes_per_second);
        let shutdown_grace = seconds(p, &args.shutdown_grace_seconds, 0);
        let log_format = p.value(&args.log_format);
        let model = ModelConfig::from_args(args.upstream, p);
        if let (Some(storage), Some(ModelConfig { upstream: Upstream::Vertex { staging: Some(staging), .. }, .. })) =
            (&storage, &model)
            && let BlobStore::Bucket(store) = &storage.blobs
        {
            // Copies made for Vertex AI would sit among the files' own objects, where `filegate fsck` could
            // only take them for orphans.
            let within = |a: &str, b: &str| a.is_empty() || b == a || b.starts_with(&format!("{a}/"));
            p.check(
                store.provider != staging.provider
                    || store.bucket != staging.bucket
                    || !(within(&store.prefix, &staging.prefix) || within(&staging.prefix, &store.prefix)),
                format!(
                    "FILEGATE_VERTEX_STAGING_BUCKET ({staging}) overlaps FILEGATE_BLOB_STORE ({store}): give the copies \
                     a prefix of their own"
                ),
            );
        }
        let traces = traces::trace_settings(p);
        if let (Some(listen), Some(Some(metrics))) = (listen, metrics_listen) {
            p.check(
                metrics != listen || metrics.port() == 0,
                format!(
                    "{} must differ from {}",
                    args.metrics_listen.as_ref().map_or("FILEGATE_METRICS_LISTEN", Setting::name),
                    args.listen.name()
                ),
            );
        }
        let (Some(listen), Some(metrics_listen), Some(storage), Some(model)) = (listen, metrics_listen, storage, model)
        else {
            return Err(problems);
        };
        problems.into_result()?;
        Ok(Self {
            listen,
            metrics_listen,
            public_url,
            storage,
            static_keys,
            limits,
            sweep_interval,
            imports,
            webhooks,
            console: args.console != "off",
            admin_key_ids,
            request_idle_timeout,
            request_min_bytes_per_second,
            max_connections: max_connections.unwrap_or_else(default_max_connections),
            shutdown_grace,
            log_format,
            traces,
            model,
            register_buckets,
        })
    }
}

/// The largest secret file read: keys files of many keys fit, `/dev/zero` does not.
const MAX_SECRET_FILE_BYTES: u64 = 1024 * 1024;

/// A secret setting: its variable, or the contents of the file its `_FILE` variable names (a trailing
/// newline dropped), not both.
pub fn secret(value: Option<String>, file: Option<&Path>, name: &str, problems: &mut Problems) -> Option<String> {
    match (value, file) {
        (Some(_), Some(_)) => {
            problems.push(format!("{name} and {name}_FILE are both set: keep one"));
            None
        }
        (Some(value), None) => Some(value),
        (None, Some(path)) => match read_secret_file(path) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_owned()),
            Err(why) => {
                problems.push(format!("{name}_FILE: cannot read {}: {why}", path.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// A regular file's text, at most [`MAX_SECRET_FILE_BYTES`]. Opened without blocking and checked before a
/// byte is read: a FIFO would hang the start (and `config check`) until someone wrote to it, and a device
/// such as `/dev/zero` would be read until memory ran out.
fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file (a FIFO, a device or a directory); secrets are read from files".into());
    }
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!("it is {} bytes; a secret file holds at most {MAX_SECRET_FILE_BYTES}", metadata.len()));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("it holds more than {MAX_SECRET_FILE_BYTES} bytes"));
    }
    Ok(text)
}

fn parse_globs(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect()
}

/// Raises the process's soft file-descriptor limit to its hard limit and allows half of it to client
/// connections (each may also hold one file open while it streams), keeping 256 for the database,
/// listeners and imports; at most 10 000.
fn default_max_connections() -> usize {
    let descriptors = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(descriptors.saturating_sub(256) / 2).unwrap_or(usize::MAX).clamp(32, 10_000)
}

/// A public URL is an absolute http(s) URL; a trailing slash is dropped so paths join cleanly.
fn parse_public_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(parsed) if ["http", "https"].contains(&parsed.scheme()) && parsed.has_host() && parsed.query().is_none() => {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!("FILEGATE_PUBLIC_URL \"{url}\" must be an absolute http:// or https:// URL without a query")),
    }
}

/// `project:key` pairs, separated by commas or line breaks (a keys file holds one per line); blank lines
/// and lines starting with `#` are skipped. A key is what a client sends in a header: visible ASCII only.
fn parse_api_keys(list: &str) -> Result<Vec<(ProjectId, ApiKey)>, String> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with('#'))
        .map(|pair| {
            let (project, key) = pair.split_once(':').ok_or("FILEGATE_API_KEYS entries must be project:key")?;
            let project = ProjectId::parse(project.trim()).map_err(|e| format!("FILEGATE_API_KEYS: {e}"))?;
            let key = key.trim();
            if key.len() < 8 {
                return Err(format!("FILEGATE_API_KEYS: the key of project {project} is shorter than 8 characters"));
            }
            if !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(format!(
                    "FILEGATE_API_KEYS: the key of project {project} holds characters a client cannot send in a \
                     header (spaces, control characters, non-ASCII)"
                ));
            }
            Ok((project, ApiKey::new(key)))
        })
        .collect()
}

fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<IpNet>().map_err(|_| format!("FILEGATE_IMPORT_ALLOW_CIDRS: \"{c}\" is not a CIDR")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_lose_their_trailing_slash_and_must_be_absolute() {
        assert_eq!(parse_public_url("https://files.example.com/api/").unwrap(), "https://files.example.com/api");
        assert!(parse_public_url("files.example.com").is_err());
        assert!(parse_public_url("ftp://files.example.com").is_err());
    }

    #[test]
    fn api_key_pairs_are_parsed_and_checked() {
        let keys = parse_api_keys("alpha:secret-key-1, beta:secret-key-2").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].0.as_str(), "beta");
        assert_eq!(keys[1].1.expose(), "secret-key-2");
        assert!(parse_api_keys("no-colon").is_err());
        assert!(parse_api_keys("a:short").is_err());
        assert!(parse_api_keys("../x:longenoughkey").is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once_and_secrets_come_from_files() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("filegate").chain(args.iter().copied())).unwrap();
            Config::from_args(cli.serve)
        };
        let problems = parse(&[
            "--public-url",
            "ftp://x",
            "--api-keys",
            "a:short",
            "--import-workers",
            "0",
            "--database-url",
            "mysql://h/db",
            "--upstream",
            "vertex",
        ])
        .unwrap_err();
        let text = problems.to_string();
        for expected in [
            "FILEGATE_PUBLIC_URL",
            "shorter than 8",
            "--import-workers must be at least 1",
            "FILEGATE_DATABASE_URL",
            "FILEGATE_VERTEX_PROJECT",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(problems.len(), 5, "{text}");

        // Values the argument parser used to refuse, each named by the flag it came by, beside the rest.
        let problems = parse(&[
            "--default-ttl-seconds=-5",
            "--listen",
            "nonsense",
            "--log-format",
            "xml",
            "--upstream",
            "gemini",
            "--gemini-api-key",
            "k",
            "--gemini-endpoint",
            "not a url",
            "--webhook-allow-http",
            "maybe",
        ])
        .unwrap_err();
        let text = problems.to_string();
        for expected in [
            "--default-ttl-seconds is \"-5\", not a whole number",
            "--listen is \"nonsense\", not an address",
            "--log-format is \"xml\", not pretty or json",
            "FILEGATE_GEMINI_ENDPOINT \"not a url\" must be an absolute",
            "--webhook-allow-http is \"maybe\", not true or false",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(problems.len(), 5, "{text}");

        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "alpha:from-a-file-0001\n").unwrap();
        let keys = keys.to_str().unwrap();
        let config = parse(&["--api-keys-file", keys]).unwrap();
        assert_eq!(config.static_keys[0].1.expose(), "from-a-file-0001", "the trailing newline is dropped");
        let both = parse(&["--api-keys-file", keys, "--api-keys", "b:another-key-1"]).unwrap_err();
        assert!(both.to_string().contains("FILEGATE_API_KEYS and FILEGATE_API_KEYS_FILE are both set"));
        let missing = parse(&["--database-url-file", "/nonexistent/db-url"]).unwrap_err();
        assert!(missing.to_string().contains("FILEGATE_DATABASE_URL_FILE: cannot read /nonexistent/db-url"));

        // Copies for Vertex AI in a prefix of their own, never among the files' objects.
        let vertex = |store: &str, staging: &str| {
            let args = [
                "--blob-store",
                store,
                "--upstream",
                "vertex",
                "--vertex-project",
                "p",
                "--upstream-bearer-token",
                "t",
            ];
            parse(&[&args[..], &["--vertex-staging-bucket", staging]].concat()).err().map(|p| p.to_string())
        };
        for (store, staging) in [("gs://b/files", "gs://b/files"), ("gs://b", "gs://b/copies"), ("gs://b/x", "gs://b")]
        {
            let refused = vertex(store, staging).unwrap_or_default();
            assert!(refused.contains("overlaps FILEGATE_BLOB_STORE"), "{store} {staging}: {refused}");
        }
        for (store, staging) in
            [("gs://b/files", "gs://b/copies"), ("gs://b/files", "gs://other"), ("s3://b", "gs://b/x")]
        {
            assert_eq!(vertex(store, staging), None, "{store} {staging}");
        }

        // One project:key per line, as a keys file holds them (comments and blank lines skipped).
        std::fs::write(dir.path().join("lines"), "# team keys\nalpha:first-key-0001\n\nbeta:second-key-0002\n")
            .unwrap();
        let config = parse(&["--api-keys-file", dir.path().join("lines").to_str().unwrap()]).unwrap();
        let keys: Vec<_> = config.static_keys.iter().map(|(p, k)| (p.as_str(), k.expose())).collect();
        assert_eq!(keys, [("alpha", "first-key-0001"), ("beta", "second-key-0002")]);
        // Only regular files, and not without end: a FIFO and /dev/zero are refused at once.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        for special in [fifo.to_str().unwrap(), "/dev/zero"] {
            let refused = parse(&["--api-keys-file", special]).unwrap_err().to_string();
            assert!(refused.contains("not a regular file"), "{special}: {refused}");
        }
    }
}
