//! Where metadata and bytes live: the settings `serve` and the operator commands (`keys`, `usage`,
//! `migrate`, `migrate-store`) share, and the only ones those commands take.

use std::path::PathBuf;

use secrecy::SecretString;

use super::{Problems, Setting, lenient, secret};
use crate::blob::{BucketUrl, PART_BYTES, PartBudget};

#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Directory of the SQLite database and of the local blob store.
    #[arg(long, env = "FILEGATE_DATA_DIR", default_value = "./filegate-data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (default: `filegate.db` in the data dir) or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "FILEGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A file holding FILEGATE_DATABASE_URL (instead of the variable).
    #[arg(long, env = "FILEGATE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Connections the database pool may open (default: 8 on SQLite, 16 on PostgreSQL).
    #[arg(long, env = "FILEGATE_DATABASE_MAX_CONNECTIONS", value_parser = lenient::<u32>())]
    pub database_max_connections: Option<Setting<u32>>,
    /// `file:///PATH` (default: `blobs/` in the data dir), `s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]` or
    /// `az://CONTAINER[/PREFIX]` (credentials from the provider's usual environment variables).
    #[arg(long, env = "FILEGATE_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// Parts of one transfer into a bucket stored at once, while the next part is received.
    #[arg(long, env = "FILEGATE_PARTS_IN_FLIGHT", default_value_t = Setting::of(crate::blob::DEFAULT_PARTS_IN_FLIGHT, ""), value_parser = lenient::<usize>())]
    pub parts_in_flight: Setting<usize>,
    /// Bytes the parts of all transfers into a bucket may hold in this process's memory; a transfer waits
    /// for its share rather than exceed it. At least one part (8 MiB).
    #[arg(long, env = "FILEGATE_TRANSFER_MEMORY_BYTES", default_value_t = Setting::of(crate::blob::DEFAULT_TRANSFER_MEMORY_BYTES, ""), value_parser = lenient::<u64>())]
    pub transfer_memory_bytes: Setting<u64>,
}

/// Where the bytes live (`FILEGATE_BLOB_STORE`).
#[derive(Debug, Clone)]
pub enum BlobStore {
    Local(PathBuf),
    Bucket(BucketUrl),
}

/// Where the metadata lives.
#[derive(Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// The URL, password included: never logged, wiped from memory when dropped.
    Postgres(SecretString),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// The validated storage settings.
#[derive(Debug, Clone)]
pub struct Storage {
    pub data_dir: PathBuf,
    pub database: Database,
    pub database_max_connections: u32,
    pub blobs: BlobStore,
    pub parts_in_flight: usize,
    pub transfer_memory_bytes: u64,
}

impl Storage {
    /// The storage settings, or `None` with their problems recorded.
    pub fn from_args(args: &StorageArgs, problems: &mut Problems) -> Option<Self> {
        let url =
            secret(args.database_url.clone(), args.database_url_file.as_deref(), "FILEGATE_DATABASE_URL", problems);
        let database = match url.as_deref() {
            None => Some(Database::Sqlite(args.data_dir.join("filegate.db"))),
            Some(url) => problems.take(parse_database_url(url)),
        };
        let database_max_connections = match (&args.database_max_connections, &database) {
            (Some(setting), _) => problems.at_least(setting, 1),
            (None, Some(Database::Postgres(_))) => 16,
            (None, _) => 8,
        };
        let blobs = match args.blob_store.as_deref() {
            None => Some(BlobStore::Local(args.data_dir.join("blobs"))),
            Some(url) => problems.take(parse_blob_url(url)),
        };
        let parts_in_flight = problems.at_least(&args.parts_in_flight, 1);
        let transfer_memory_bytes = problems.at_least(&args.transfer_memory_bytes, PART_BYTES);
        Some(Self {
            data_dir: args.data_dir.clone(),
            database: database?,
            database_max_connections,
            blobs: blobs?,
            parts_in_flight,
            transfer_memory_bytes,
        })
    }

    /// The node's budget for parts in flight (one per process: every store it opens shares it).
    pub fn part_budget(&self) -> PartBudget {
        PartBudget::new(self.parts_in_flight, self.transfer_memory_bytes)
    }

    /// The same settings, by themselves (the operator commands).
    pub fn from_args_alone(args: &StorageArgs) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        match Self::from_args(args, &mut problems) {
            Some(storage) if problems.is_empty() => Ok(storage),
            _ => Err(problems),
        }
    }
}

fn parse_database_url(url: &str) -> Result<Database, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let parsed =
            url::Url::parse(url).map_err(|_| "FILEGATE_DATABASE_URL is not a valid postgres:// URL".to_owned())?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("FILEGATE_DATABASE_URL must name a host: postgres://USER:PASSWORD@HOST[:PORT]/DATABASE".into());
        }
        return Ok(Database::Postgres(url.into()));
    }
    let path =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(|p| p.split('?').next().unwrap_or(p));
    match path {
        Some(p) if !p.is_empty() => Ok(Database::Sqlite(PathBuf::from(p))),
        _ => Err("FILEGATE_DATABASE_URL must be sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE".into()),
    }
}

pub fn parse_blob_url(url: &str) -> Result<BlobStore, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!("FILEGATE_BLOB_STORE \"{url}\" must be file:///ABSOLUTE/PATH"));
        }
        return Ok(BlobStore::Local(PathBuf::from(path)));
    }
    BucketUrl::parse(url).map(BlobStore::Bucket).ok_or_else(|| {
        format!(
            "FILEGATE_BLOB_STORE \"{url}\" must be file:///PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_name_what_is_supported() {
        assert!(
            matches!(parse_database_url("sqlite:///tmp/x.db").unwrap(), Database::Sqlite(p) if p == std::path::Path::new("/tmp/x.db"))
        );
        assert!(matches!(parse_database_url("postgres://u:p@db:5432/fg").unwrap(), Database::Postgres(_)));
        assert!(parse_database_url("postgres:///nohost").is_err());
        assert!(parse_database_url("mysql://h/db").is_err());
        assert!(
            matches!(parse_blob_url("file:///srv/blobs").unwrap(), BlobStore::Local(p) if p == std::path::Path::new("/srv/blobs"))
        );
        assert!(matches!(parse_blob_url("s3://bucket/p").unwrap(), BlobStore::Bucket(b) if b.bucket == "bucket"));
        assert!(parse_blob_url("file://relative").is_err());
        assert!(parse_blob_url("ftp://x/y").is_err());
    }
}
