//! [`MetaStore`](super::MetaStore) on SQLite or PostgreSQL, from one set of queries.
//!
//! Both engines are reached through sqlx's `Any` driver, and every query is written in the SQL the two
//! share (`$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT microseconds, BLOB/BYTEA bytes), so a fix
//! or a new query lands on both at once and the one conformance suite proves both. What differs is kept
//! in [`Engine`]: how a write transaction starts (SQLite: `BEGIN IMMEDIATE`, which takes the database's
//! write lock at once, so nothing a transaction read can change under it; PostgreSQL: `BEGIN` at READ
//! COMMITTED plus row locks, `FOR UPDATE` and `FOR UPDATE … SKIP LOCKED`), how connections are set up, and
//! what their error codes mean.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`: a committed chunk survives a power cut, not only a
//! crash. PostgreSQL commits are durable by its own defaults (`synchronous_commit=on`).

mod audit;
mod batches;
mod caches;
mod copies;
mod guard;
mod imports;
mod keys;
mod model;
mod queue;
mod rows;
mod schema;
mod store;
mod tx;
mod uploads;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions as _, Connection as _, Executor as _};

pub use self::guard::{BULK_DEADLINE, OPERATION_DEADLINE};
use self::guard::{FAILURES_TO_TRIP, Guard, PROBE_EVERY, PROBE_TIMEOUT};
use super::{MetaError, MetaResult};
use crate::outage::Prober;

/// How long a request waits for a free connection (or a new one) before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which database, and what differs between them.
#[derive(Debug, Clone)]
pub enum Engine {
    /// `identity` is the database file's (device, inode) at start: a file removed or replaced while
    /// filegate runs is noticed before the next write instead of writes going to an unlinked file.
    Sqlite {
        path: PathBuf,
        identity: (u64, u64),
    },
    Postgres {
        target: String,
    },
}

impl Engine {
    /// The OpenTelemetry name of the database system (`db.system.name`), for the store's spans.
    pub const fn system(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgresql",
        }
    }

    /// The statement that begins a write transaction.
    fn begin(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "BEGIN IMMEDIATE",
            Self::Postgres { .. } => "BEGIN",
        }
    }

    /// What a transaction appends to a SELECT to lock the rows it reads (`OF t` names the table of a
    /// join whose rows are meant); SQLite's write transactions hold the whole database already.
    fn lock_rows(&self, of: Option<&str>) -> String {
        match (self, of) {
            (Self::Sqlite { .. }, _) => String::new(),
            (Self::Postgres { .. }, None) => " FOR UPDATE".into(),
            (Self::Postgres { .. }, Some(table)) => format!(" FOR UPDATE OF {table}"),
        }
    }

    /// Like [`Engine::lock_rows`], skipping rows another transaction holds (a queue's claim).
    fn skip_locked(&self, of: &str) -> String {
        match self {
            Self::Sqlite { .. } => String::new(),
            Self::Postgres { .. } => format!(" FOR UPDATE OF {of} SKIP LOCKED"),
        }
    }

    /// What follows a table to make a query use `index` for it. SQLite's planner has no statistics to go
    /// by (filegate never runs `ANALYZE`) and may choose badly; PostgreSQL keeps its own (autovacuum).
    fn indexed_by(&self, index: &str) -> String {
        match self {
            Self::Sqlite { .. } => format!(" INDEXED BY {index}"),
            Self::Postgres { .. } => String::new(),
        }
    }

    /// Refuses to write when the SQLite file is no longer the one opened.
    fn check_file(&self) -> MetaResult<()> {
        let Self::Sqlite { path, identity } = self else { return Ok(()) };
        match file_identity(path) {
            Ok(now) if now == *identity => Ok(()),
            Ok(_) => Err(MetaError::Unavailable(format!(
                "the database file {} was replaced while filegate runs; restart filegate to open the new one",
                path.display()
            ))),
            Err(_) => Err(MetaError::Unavailable(format!(
                "the database file {} is gone (removed or moved while filegate runs); put it back",
                path.display()
            ))),
        }
    }

    /// What an error of this engine means.
    fn classify(&self, err: sqlx::Error) -> MetaError {
        use sqlx::Error as E;
        match &err {
            E::PoolTimedOut => {
                MetaError::Busy(format!("no database connection became free within {} s", ACQUIRE_TIMEOUT.as_secs()))
            }
            E::PoolClosed => MetaError::Unavailable("the connection pool is closed".into()),
            E::Io(_) | E::Tls(_) | E::Protocol(_) => MetaError::Unavailable(err.to_string()),
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let message = db.message().to_owned();
                match self {
                    Self::Sqlite { .. } => classify_sqlite(&code, message, err),
                    Self::Postgres { .. } => classify_postgres(&code, message, err),
                }
            }
            _ => MetaError::other(err),
        }
    }
}

/// SQLite result codes (<https://sqlite.org/rescode.html>); `code` is the extended code in decimal.
fn classify_sqlite(code: &str, message: String, err: sqlx::Error) -> MetaError {
    let primary = code.parse::<i32>().map_or(-1, |c| c & 0xff);
    match primary {
        5 | 6 => MetaError::Busy(message),                                      // BUSY, LOCKED
        8 | 10 | 13 | 14 => MetaError::Unavailable(message),                    // READONLY, IOERR, FULL, CANTOPEN
        19 if code == "2067" || code == "1555" => MetaError::Conflict(message), // CONSTRAINT_UNIQUE, _PRIMARYKEY
        _ => MetaError::other(err),
    }
}

/// PostgreSQL SQLSTATEs (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
fn classify_postgres(code: &str, message: String, err: sqlx::Error) -> MetaError {
    match code {
        "23505" => MetaError::Conflict(message),
        // serialization failure, deadlock broken, lock timeout, statement timeout
        "40001" | "40P01" | "55P03" | "57014" => MetaError::Busy(message),
        // read-only transaction, disk full and other insufficient resources, shutting down, cannot connect now
        "25006" | "57P01" | "57P02" | "57P03" => MetaError::Unavailable(message),
        c if c.starts_with("53") || c.starts_with("08") => MetaError::Unavailable(message),
        _ => MetaError::other(err),
    }
}

fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The metadata store on an SQL database.
pub struct SqlMeta {
    /// Replaced by a fresh pool when the guard trips ([`guard`]): the dead connections go with the old one.
    pool: Arc<RwLock<AnyPool>>,
    engine: Engine,
    guard: Arc<Guard>,
    /// SQLite has one writer at a time. Its own wait for the lock sleeps and polls (1, 2, 5 … 100 ms),
    /// so under load a writer could wait a second while the lock sat free; write transactions queue here
    /// instead, in order, and take the lock the moment it is free. (One process per database file.)
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl SqlMeta {
    /// Opens (creating if needed) the SQLite database at `path`; with `migrate`, applies pending migrations,
    /// else wants none pending ([`schema::prepare`]).
    pub async fn open_sqlite(path: &Path, max_connections: u32, migrate: bool) -> MetaResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| MetaError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        sqlx::any::install_default_drivers();
        let url = SqliteConnectOptions::new().filename(path).create_if_missing(true).to_url_lossy();
        let options = AnyConnectOptions::from_url(&url).map_err(MetaError::other)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Durable commits (a power cut loses nothing acknowledged), readers that never block
                    // the writer, and a writer that waits for the lock rather than failing at once.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await;
        let probe = Engine::Sqlite { path: path.to_owned(), identity: (0, 0) };
        let pool = pool.map_err(|e| probe.classify(e))?;
        schema::prepare(&pool, &sqlx::migrate!("./migrations/sqlite"), &probe, migrate).await?;
        let identity =
            file_identity(path).map_err(|e| MetaError::Unavailable(format!("reading {}: {e}", path.display())))?;
        let write_gate = Some(Arc::new(tokio::sync::Mutex::new(())));
        let engine = Engine::Sqlite { path: path.to_owned(), identity };
        Ok(Self { pool: Arc::new(RwLock::new(pool)), engine, guard: Arc::default(), write_gate })
    }

    /// Connects to PostgreSQL; with `migrate`, applies pending migrations, else wants none pending
    /// ([`schema::prepare`]).
    pub async fn open_postgres(url: &str, max_connections: u32, migrate: bool) -> MetaResult<Self> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_url(&url.parse().map_err(MetaError::other)?).map_err(MetaError::other)?;
        let engine = Engine::Postgres { target: redacted(url) };
        let pool =
            postgres_pool(max_connections).connect_with(options.clone()).await.map_err(|e| engine.classify(e))?;
        schema::prepare(&pool, &sqlx::migrate!("./migrations/postgres"), &engine, migrate).await?;
        let pool = Arc::new(RwLock::new(pool));
        let guard = Arc::new(Guard::default());
        let fresh = move || postgres_pool(max_connections).connect_lazy_with(options.clone());
        tokio::spawn(probe(Arc::downgrade(&pool), guard.clone(), fresh));
        Ok(Self { pool, engine, guard, write_gate: None })
    }

    /// The pool of now (a handle: cheap to clone).
    fn pool(&self) -> AnyPool {
        self.pool.read().expect("never poisoned").clone()
    }

    fn err(&self, err: sqlx::Error) -> MetaError {
        self.engine.classify(err)
    }
}

fn postgres_pool(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max_connections).acquire_timeout(ACQUIRE_TIMEOUT).after_connect(|conn, _| {
        Box::pin(async move {
            // No statement and no lock wait runs unbounded, and a transaction a bug left open is ended by the
            // server rather than holding its locks forever.
            conn.execute("SET statement_timeout = '30s'").await?;
            conn.execute("SET lock_timeout = '10s'").await?;
            conn.execute("SET idle_in_transaction_session_timeout = '60s'").await?;
            Ok(())
        })
    })
}

/// Asks PostgreSQL every [`PROBE_EVERY`], on a connection of its own, whether it answers; trips `guard`
/// after [`FAILURES_TO_TRIP`] failures in a row (replacing the pool, whose connections may all be dead) and
/// ends the outage at the first answer. Stops once the store is closed or gone.
async fn probe(pool: Weak<RwLock<AnyPool>>, guard: Arc<Guard>, fresh: impl Fn() -> AnyPool + Send + 'static) {
    let mut connection: Option<AnyConnection> = None;
    let mut prober = Prober::new(FAILURES_TO_TRIP);
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        let options = {
            let current = pool.read().expect("never poisoned");
            if current.is_closed() {
                return;
            }
            current.connect_options()
        };
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            if connection.is_none() {
                connection = Some(AnyConnection::connect_with(&options).await?);
            }
            connection.as_mut().expect("just made").execute("SELECT 1").await.map(|_| ())
        })
        .await
        .is_ok_and(|done| done.is_ok());
        if !answered {
            connection = None;
        }
        match prober.answered(&guard, answered) {
            Some(false) => tracing::warn!("the database answers again"),
            Some(true) => {
                tracing::warn!("the database stopped answering: requests that need it fail fast until it is back");
                let dead = std::mem::replace(&mut *pool.write().expect("never poisoned"), fresh());
                // The old pool's connections may wait out TCP's retransmissions: closed aside.
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(60), dead.close()).await;
                });
            }
            None => {}
        }
    }
}

/// A PostgreSQL URL without its password, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "postgres://…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redacted("postgres://fg:s3cret@db:5432/filegate"), "postgres://fg:***@db:5432/filegate");
        assert_eq!(redacted("postgres://db/filegate"), "postgres://db/filegate");
    }

    #[test]
    fn error_codes_keep_their_meaning_on_both_engines() {
        let err = || sqlx::Error::RowNotFound;
        assert!(matches!(classify_sqlite("13", "full".into(), err()), MetaError::Unavailable(_)));
        assert!(matches!(classify_sqlite("778", "ioerr write".into(), err()), MetaError::Unavailable(_)));
        assert!(matches!(classify_sqlite("5", "busy".into(), err()), MetaError::Busy(_)));
        assert!(matches!(classify_sqlite("2067", "unique".into(), err()), MetaError::Conflict(_)));
        assert!(matches!(classify_sqlite("787", "foreign key".into(), err()), MetaError::Other(_)));
        assert!(matches!(classify_postgres("23505", "dup".into(), err()), MetaError::Conflict(_)));
        assert!(matches!(classify_postgres("40P01", "deadlock".into(), err()), MetaError::Busy(_)));
        assert!(matches!(classify_postgres("53100", "disk full".into(), err()), MetaError::Unavailable(_)));
        assert!(matches!(classify_postgres("57P01", "shutdown".into(), err()), MetaError::Unavailable(_)));
        assert!(matches!(classify_postgres("42P01", "no table".into(), err()), MetaError::Other(_)));
    }
}
