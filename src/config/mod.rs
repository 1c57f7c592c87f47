//! Settings of `filegate serve`: every one has a flag and a `FILEGATE_*` environment variable (the
//! operational contract in `docs/configuration.md`). Values are parsed and checked here, once, before
//! anything binds or opens; the rest of the server receives typed values only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::IpNet;

mod upstream;

pub use upstream::{ApiKeySecret, ModelConfig, Upstream, UpstreamArgs, UpstreamKind, VertexAuth};

use crate::blob::BucketUrl;
use crate::domain::{ApiKey, MediaTypePolicy, ProjectId};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind (port 0 picks a free port; the chosen one is logged as `listening on http://…`).
    #[arg(long, env = "FILEGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base of the URLs filegate hands out (upload URLs, `uri`); default `http://<listen address>`.
    #[arg(long, env = "FILEGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory of the SQLite database and of the local blob store.
    #[arg(long, env = "FILEGATE_DATA_DIR", default_value = "./filegate-data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (default: `filegate.db` in the data dir) or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "FILEGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections the database pool may open (default: 8 on SQLite, 16 on PostgreSQL).
    #[arg(long, env = "FILEGATE_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// `file:///PATH` (default: `blobs/` in the data dir), `s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]` or
    /// `az://CONTAINER[/PREFIX]` (credentials from the provider's usual environment variables).
    #[arg(long, env = "FILEGATE_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// Comma-separated `project:key` pairs accepted in addition to the keys in the database.
    #[arg(long, env = "FILEGATE_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Largest file accepted, in bytes.
    #[arg(long, env = "FILEGATE_MAX_FILE_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Storage limit of each project, in bytes (counting files being uploaded).
    #[arg(long, env = "FILEGATE_PROJECT_QUOTA_BYTES", default_value_t = 20 * 1024 * 1024 * 1024)]
    pub project_quota_bytes: u64,
    /// Lifetime of uploaded files, counted from the start of their upload.
    #[arg(long, env = "FILEGATE_DEFAULT_TTL_SECONDS", default_value_t = 172_800)]
    pub default_ttl_seconds: u64,
    /// How often the janitor removes expired files and abandoned uploads.
    #[arg(long, env = "FILEGATE_SWEEP_INTERVAL_SECONDS", default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// Comma-separated CIDRs exempt from the import SSRF deny list (e.g. `127.0.0.1/32` for tests).
    #[arg(long, env = "FILEGATE_IMPORT_ALLOW_CIDRS")]
    pub import_allow_cidrs: Option<String>,
    /// Concurrent import fetches on this node.
    #[arg(long, env = "FILEGATE_IMPORT_WORKERS", default_value_t = 4)]
    pub import_workers: usize,
    /// How long a worker's claim on an import task lasts without renewal.
    #[arg(long, env = "FILEGATE_IMPORT_LEASE_SECONDS", default_value_t = 30)]
    pub import_lease_seconds: u64,
    /// Time to connect to an import source.
    #[arg(long, env = "FILEGATE_IMPORT_CONNECT_TIMEOUT_SECONDS", default_value_t = 10)]
    pub import_connect_timeout_seconds: u64,
    /// A source that sends no byte for this long is a stall (the attempt is retried).
    #[arg(long, env = "FILEGATE_IMPORT_STALL_TIMEOUT_SECONDS", default_value_t = 30)]
    pub import_stall_timeout_seconds: u64,
    /// Total time an import may take, counted from its creation, retries included.
    #[arg(long, env = "FILEGATE_IMPORT_TOTAL_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub import_total_timeout_seconds: u64,
    /// Attempts before a transient failure (unreachable source, 5xx, stall) fails the import.
    #[arg(long, env = "FILEGATE_IMPORT_MAX_ATTEMPTS", default_value_t = 5)]
    pub import_max_attempts: u32,
    /// Unfinished imports a project may have at once; more are refused with 429.
    #[arg(long, env = "FILEGATE_IMPORT_MAX_ACTIVE_PER_PROJECT", default_value_t = 100)]
    pub import_max_active_per_project: u64,
    /// Comma-separated glob patterns (`*` wildcard) the `model` of an import must match.
    #[arg(long, env = "FILEGATE_IMPORT_MODELS", default_value = "*")]
    pub import_models: String,
    /// A client that sends nothing for this long, while sending its headers or a body, is dropped (an
    /// unfinished chunk is not committed).
    #[arg(long, env = "FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub request_idle_timeout_seconds: u64,
    /// A request body must arrive at this many bytes per second at least, measured over each 10 s spent
    /// waiting for it (time filegate spends not reading does not count); slower ones are dropped with
    /// 408. 0 turns the check off.
    #[arg(long, env = "FILEGATE_REQUEST_MIN_BYTES_PER_SECOND", default_value_t = 1024)]
    pub request_min_bytes_per_second: u64,
    /// How long a request's claim on an upload in a bucket lasts unless its node renews it: after a node
    /// dies mid-chunk, another node waits this long before writing that upload.
    #[arg(long, env = "FILEGATE_UPLOAD_CLAIM_SECONDS", default_value_t = 30)]
    pub upload_claim_seconds: u64,
    /// Open client connections at most (default: what the process's file-descriptor limit allows, up to
    /// 10 000). At the limit, new connections wait until one closes.
    #[arg(long, env = "FILEGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open upload sessions a project may have at once (more: 429 RESOURCE_EXHAUSTED).
    #[arg(long, env = "FILEGATE_PROJECT_MAX_OPEN_UPLOADS", default_value_t = 1000)]
    pub project_max_open_uploads: u64,
    /// Files a project may hold at once, uploads in progress and imports included (more: 429).
    #[arg(long, env = "FILEGATE_PROJECT_MAX_FILES", default_value_t = 100_000)]
    pub project_max_files: u64,
    /// Comma-separated media types a file may have, with `*` wildcards (`video/*,application/pdf`); by
    /// default every syntactically valid type of a registered top-level type.
    #[arg(long, env = "FILEGATE_ALLOWED_MIME_TYPES", default_value = "*")]
    pub allowed_mime_types: String,
    /// On SIGTERM, how long in-flight requests may take to finish before the server exits.
    #[arg(long, env = "FILEGATE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// `pretty` or `json` log lines on stderr (filter with `RUST_LOG`).
    #[arg(long, env = "FILEGATE_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// Comma-separated `gs://` patterns (`*` wildcard) of the objects callers may register as files
    /// (`files:register`), e.g. `gs://media-archive/*`. Empty (the default): registering is off. Objects are
    /// read with filegate's own Google credentials, so only buckets meant for it belong here.
    #[arg(long, env = "FILEGATE_REGISTER_BUCKETS", default_value = "")]
    pub register_buckets: String,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
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
    /// Glob patterns (`*` only) an import's `model` must match.
    pub models: Vec<String>,
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
    pub default_ttl: Duration,
    /// How long a claim on an upload in a bucket lasts unless renewed.
    pub upload_claim: Duration,
    /// The media types a file may have.
    pub media_types: MediaTypePolicy,
}

/// Where the bytes live.
#[derive(Debug, Clone)]
pub enum Blobs {
    Local(PathBuf),
    Bucket(BucketUrl),
}

/// Where the metadata lives.
#[derive(Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// The URL, password included: never logged as is.
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database: Database,
    pub database_max_connections: u32,
    pub blobs: Blobs,
    pub static_keys: Vec<(ProjectId, ApiKey)>,
    pub limits: Limits,
    pub sweep_interval: Duration,
    pub imports: ImportConfig,
    pub request_idle_timeout: Duration,
    pub request_min_bytes_per_second: u64,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub model: ModelConfig,
    /// `gs://` patterns of the objects callers may register.
    pub register_buckets: Vec<String>,
}

impl Config {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let public_url = args.public_url.as_deref().map(parse_public_url).transpose()?;
        let database = match args.database_url.as_deref() {
            None => Database::Sqlite(args.data_dir.join("filegate.db")),
            Some(url) => parse_database_url(url)?,
        };
        let database_max_connections = match args.database_max_connections {
            Some(0) => bail!("FILEGATE_DATABASE_MAX_CONNECTIONS must be at least 1"),
            Some(n) => n,
            None if matches!(database, Database::Postgres(_)) => 16,
            None => 8,
        };
        let blobs = match args.blob_store.as_deref() {
            None => Blobs::Local(args.data_dir.join("blobs")),
            Some(url) => parse_blob_url(url)?,
        };
        let static_keys = args.api_keys.as_deref().map(parse_api_keys).transpose()?.unwrap_or_default();
        let import_allow_cidrs = args.import_allow_cidrs.as_deref().map(parse_cidrs).transpose()?.unwrap_or_default();
        if args.max_file_bytes == 0 {
            bail!("FILEGATE_MAX_FILE_BYTES must be at least 1");
        }
        if args.default_ttl_seconds == 0 || args.sweep_interval_seconds == 0 {
            bail!("FILEGATE_DEFAULT_TTL_SECONDS and FILEGATE_SWEEP_INTERVAL_SECONDS must be at least 1");
        }
        if args.import_workers == 0 || args.import_lease_seconds < 3 {
            bail!("FILEGATE_IMPORT_WORKERS must be at least 1 and FILEGATE_IMPORT_LEASE_SECONDS at least 3");
        }
        if args.import_connect_timeout_seconds == 0
            || args.import_stall_timeout_seconds == 0
            || args.import_total_timeout_seconds == 0
            || args.import_max_attempts == 0
        {
            bail!("the FILEGATE_IMPORT_*_TIMEOUT_SECONDS and FILEGATE_IMPORT_MAX_ATTEMPTS settings must be at least 1");
        }
        let models = parse_globs(&args.import_models);
        if models.is_empty() {
            bail!("FILEGATE_IMPORT_MODELS must name at least one pattern (\"*\" allows every model)");
        }
        if args.request_idle_timeout_seconds == 0 {
            bail!("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS must be at least 1");
        }
        if args.upload_claim_seconds < 3 {
            bail!("FILEGATE_UPLOAD_CLAIM_SECONDS must be at least 3");
        }
        if args.max_connections == Some(0) {
            bail!("FILEGATE_MAX_CONNECTIONS must be at least 1");
        }
        let register_buckets = parse_globs(&args.register_buckets);
        if let Some(bad) = register_buckets.iter().find(|p| !p.starts_with("gs://") || p.len() <= "gs://".len()) {
            bail!("FILEGATE_REGISTER_BUCKETS patterns are gs://BUCKET/… globs, not \"{bad}\"");
        }
        let allowed_mime_types = parse_globs(&args.allowed_mime_types);
        if allowed_mime_types.is_empty() {
            bail!("FILEGATE_ALLOWED_MIME_TYPES must name at least one pattern (\"*\" allows every type)");
        }
        Ok(Self {
            listen: args.listen,
            public_url,
            data_dir: args.data_dir,
            database,
            database_max_connections,
            blobs,
            static_keys,
            limits: Limits {
                max_file_bytes: args.max_file_bytes,
                project_quota_bytes: args.project_quota_bytes,
                project_max_open_uploads: args.project_max_open_uploads,
                project_max_files: args.project_max_files,
                project_max_active_imports: args.import_max_active_per_project,
                default_ttl: Duration::from_secs(args.default_ttl_seconds),
                upload_claim: Duration::from_secs(args.upload_claim_seconds),
                media_types: MediaTypePolicy::new(allowed_mime_types),
            },
            sweep_interval: Duration::from_secs(args.sweep_interval_seconds),
            imports: ImportConfig {
                allow_cidrs: import_allow_cidrs,
                workers: args.import_workers,
                lease: Duration::from_secs(args.import_lease_seconds),
                connect_timeout: Duration::from_secs(args.import_connect_timeout_seconds),
                stall_timeout: Duration::from_secs(args.import_stall_timeout_seconds),
                total_timeout: Duration::from_secs(args.import_total_timeout_seconds),
                max_attempts: args.import_max_attempts,
                models,
            },
            request_idle_timeout: Duration::from_secs(args.request_idle_timeout_seconds),
            request_min_bytes_per_second: args.request_min_bytes_per_second,
            max_connections: args.max_connections.unwrap_or_else(default_max_connections),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            log_format: args.log_format,
            model: ModelConfig::from_args(&args.upstream)?,
            register_buckets,
        })
    }
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
fn parse_public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: hyper::Uri = trimmed.parse().with_context(|| format!("FILEGATE_PUBLIC_URL \"{url}\" is not a URL"))?;
    match (uri.scheme_str(), uri.host(), uri.query()) {
        (Some("http" | "https"), Some(_), None) => Ok(trimmed.to_owned()),
        _ => bail!("FILEGATE_PUBLIC_URL \"{url}\" must be an absolute http:// or https:// URL without a query"),
    }
}

fn parse_database_url(url: &str) -> anyhow::Result<Database> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let parsed = url::Url::parse(url).context("FILEGATE_DATABASE_URL is not a valid postgres:// URL")?;
        if parsed.host_str().is_none_or(str::is_empty) {
            bail!("FILEGATE_DATABASE_URL must name a host: postgres://USER:PASSWORD@HOST[:PORT]/DATABASE");
        }
        return Ok(Database::Postgres(url.to_owned()));
    }
    let path =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(|p| p.split('?').next().unwrap_or(p));
    match path {
        Some(p) if !p.is_empty() => Ok(Database::Sqlite(PathBuf::from(p))),
        _ => bail!("FILEGATE_DATABASE_URL must be sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE"),
    }
}

pub fn parse_blob_url(url: &str) -> anyhow::Result<Blobs> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            bail!("FILEGATE_BLOB_STORE \"{url}\" must be file:///ABSOLUTE/PATH");
        }
        return Ok(Blobs::Local(PathBuf::from(path)));
    }
    BucketUrl::parse(url).map(Blobs::Bucket).with_context(|| {
        format!("FILEGATE_BLOB_STORE \"{url}\" must be file:///PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX")
    })
}

fn parse_api_keys(list: &str) -> anyhow::Result<Vec<(ProjectId, ApiKey)>> {
    list.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (project, key) =
                pair.split_once(':').with_context(|| "FILEGATE_API_KEYS entries must be project:key".to_owned())?;
            let project = ProjectId::parse(project.trim()).map_err(|e| anyhow::anyhow!("FILEGATE_API_KEYS: {e}"))?;
            let key = key.trim();
            if key.len() < 8 {
                bail!("FILEGATE_API_KEYS: the key of project {project} is shorter than 8 characters");
            }
            Ok((project, ApiKey::new(key)))
        })
        .collect()
}

fn parse_cidrs(list: &str) -> anyhow::Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<IpNet>().with_context(|| format!("FILEGATE_IMPORT_ALLOW_CIDRS: \"{c}\" is not a CIDR")))
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
    fn storage_urls_name_what_is_supported() {
        assert!(
            matches!(parse_database_url("sqlite:///tmp/x.db").unwrap(), Database::Sqlite(p) if p == std::path::Path::new("/tmp/x.db"))
        );
        assert!(matches!(parse_database_url("postgres://u:p@db:5432/fg").unwrap(), Database::Postgres(_)));
        assert!(parse_database_url("postgres:///nohost").is_err());
        assert!(parse_database_url("mysql://h/db").is_err());
        assert!(
            matches!(parse_blob_url("file:///srv/blobs").unwrap(), Blobs::Local(p) if p == std::path::Path::new("/srv/blobs"))
        );
        assert!(matches!(parse_blob_url("s3://bucket/p").unwrap(), Blobs::Bucket(b) if b.bucket == "bucket"));
        assert!(parse_blob_url("file://relative").is_err());
        assert!(parse_blob_url("ftp://x/y").is_err());
    }
}
