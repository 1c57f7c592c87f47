//! A real `filegate serve` process per test, on port 0 and a temporary data directory, and a small
//! client for the Gemini wire protocol.
//!
//! The metadata engine is SQLite in the data directory, or, with `FILEGATE_TEST_DATABASE=postgres`, a fresh
//! PostgreSQL database per test on the server `FILEGATE_TEST_POSTGRES_URL` names (an admin URL;
//! `scripts/test.sh` starts one), dropped after it.
//! Tests never read the database themselves: what they check, they check through the API.
//!
//! The bytes go to the local disk, or, with `FILEGATE_TEST_BLOBS=s3|azure|gcs`, to a prefix of their own in
//! the S3 (moto) or Azure (Azurite) server whose provider variables the environment holds (`scripts/test.sh`
//! starts them), or in the fake of Cloud Storage (`fake_google.rs`). [`Server::files_under`] sees the bucket as it sees the disk.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const ALPHA_KEY: &str = "alpha-key-0001";
pub const BETA_KEY: &str = "beta-key-0002";
pub const MIB: usize = 1024 * 1024;
pub const CHUNK: usize = 8 * MIB;

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// The process's file-descriptor limit, when the test sets one.
    descriptors: Option<u64>,
    /// Another build of filegate to run (a previous release's), instead of this one.
    binary: Option<PathBuf>,
    blobs: TestBlobs,
    /// Whether the after-test check is another server's (a sibling node's) to make.
    leftovers_expected: bool,
    /// Dropped (with its PostgreSQL database) after the server is killed.
    database: TestDatabase,
    _tmp: tempfile::TempDir,
}

/// The database a test's server uses.
pub enum TestDatabase {
    Sqlite,
    /// Another server's (a sibling node's): not this one's to drop.
    Borrowed,
    /// (admin URL, database name)
    Postgres(String, String),
}

fn psql(admin_url: &str, sql: &str) {
    let out = Command::new("psql").args([admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]).output().expect("psql");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestDatabase {
    pub fn create() -> Self {
        match std::env::var("FILEGATE_TEST_DATABASE").as_deref() {
            Ok("postgres") => {
                let admin = std::env::var("FILEGATE_TEST_POSTGRES_URL")
                    .expect("FILEGATE_TEST_DATABASE=postgres needs FILEGATE_TEST_POSTGRES_URL");
                let name = format!("fg_it_{}", random_name());
                psql(&admin, &format!("CREATE DATABASE {name}"));
                Self::Postgres(admin, name)
            }
            _ => Self::Sqlite,
        }
    }

    pub fn url(&self) -> Option<String> {
        match self {
            Self::Sqlite | Self::Borrowed => None,
            Self::Postgres(admin, name) => {
                let mut url = url::Url::parse(admin).unwrap();
                url.set_path(name);
                Some(url.to_string())
            }
        }
    }

    /// Runs an administrator's statement on this test's PostgreSQL server.
    pub fn psql(&self, sql: &str) {
        if let Self::Postgres(admin, _) = self {
            psql(admin, sql);
        }
    }

    /// Everything the database holds, as bytes (to prove a secret is not among them).
    pub fn dump(&self, data_dir: &Path) -> Vec<u8> {
        match self {
            Self::Sqlite => ["filegate.db", "filegate.db-wal"]
                .iter()
                .flat_map(|f| std::fs::read(data_dir.join(f)).unwrap_or_default())
                .collect(),
            Self::Borrowed => Vec::new(),
            Self::Postgres(..) => {
                let out = Command::new("pg_dump").arg(self.url().unwrap()).output().expect("pg_dump");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            }
        }
    }
}

/// Where a test server's bytes go.
#[derive(Clone)]
pub enum TestBlobs {
    Local,
    /// `(provider, bucket, prefix)`; the provider's variables come from this process's environment.
    Bucket {
        provider: &'static str,
        bucket: String,
        prefix: String,
        service_account: Option<PathBuf>,
    },
}

/// The environment variables of every provider, passed on to test servers.
fn provider_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| ["AWS_", "AZURE_", "AZURITE_"].iter().any(|p| k.starts_with(p))).collect()
}

impl TestBlobs {
    /// The store this run tests (a fresh prefix of it), or the local disk.
    pub fn create(tmp: &Path) -> Self {
        let prefix = format!("t{}", random_name());
        match std::env::var("FILEGATE_TEST_BLOBS").as_deref() {
            Ok("s3") => Self::Bucket {
                provider: "s3",
                bucket: std::env::var("AWS_BUCKET").expect("FILEGATE_TEST_BLOBS=s3 needs the AWS_* variables"),
                prefix,
                service_account: None,
            },
            Ok("azure") => Self::Bucket {
                provider: "az",
                bucket: std::env::var("AZURE_CONTAINER_NAME").expect("FILEGATE_TEST_BLOBS=azure needs AZURE_*"),
                prefix,
                service_account: None,
            },
            Ok("gcs") => Self::Bucket {
                provider: "gs",
                bucket: "filegate-test".into(),
                prefix,
                service_account: Some(crate::fake_google::FakeGoogle::shared_gcs().service_account(tmp)),
            },
            _ => Self::Local,
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let Self::Bucket { provider, bucket, prefix, service_account } = self else { return Vec::new() };
        let mut env = provider_env();
        env.push(("FILEGATE_BLOB_STORE".into(), format!("{provider}://{bucket}/{prefix}")));
        if let Some(path) = service_account {
            env.push(("GOOGLE_SERVICE_ACCOUNT".into(), path.display().to_string()));
        }
        env
    }

    /// Objects under the local layout's `dir`, and (for `staging`) open multipart uploads.
    fn entries(&self, dir: &str) -> Vec<PathBuf> {
        let Self::Bucket { provider, bucket, prefix, .. } = self else { return Vec::new() };
        let sub = dir.strip_prefix("blobs").unwrap_or(dir).trim_start_matches('/');
        let under = if sub.is_empty() { format!("{prefix}/") } else { format!("{prefix}/{sub}/") };
        let staging = sub.is_empty() || sub == "staging";
        let mut keys: Vec<String> = match *provider {
            "gs" => {
                let fake = crate::fake_google::FakeGoogle::shared_gcs();
                let in_bucket = format!("{bucket}/");
                let mut keys: Vec<String> = fake
                    .objects(&format!("{bucket}/{under}"))
                    .into_iter()
                    .map(|k| k.strip_prefix(&in_bucket).unwrap_or(&k).to_owned())
                    .collect();
                if staging {
                    let open = fake.open_uploads(&format!("{bucket}/{prefix}/files/"));
                    keys.extend((0..open).map(|i| format!("open multipart upload {i}")));
                }
                keys
            }
            _ => list_bucket(&under, provider, bucket, staging.then(|| format!("{prefix}/files/"))),
        };
        keys.sort();
        keys.into_iter().map(PathBuf::from).collect()
    }
}

/// Lists a bucket from a thread of its own (callers may be sync closures inside the test's runtime):
/// objects under `prefix`, and on S3 the open multipart uploads under `uploads` (Azure has no such
/// thing to list: its uncommitted blocks lapse by themselves).
fn list_bucket(prefix: &str, provider: &str, bucket: &str, uploads: Option<String>) -> Vec<String> {
    let (prefix, provider, bucket) = (prefix.to_owned(), provider.to_owned(), bucket.to_owned());
    std::thread::spawn(move || {
        use futures_util::TryStreamExt as _;
        use object_store::ObjectStore as _;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let store: Box<dyn object_store::ObjectStore> = if provider == "s3" {
                Box::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket).build().unwrap())
            } else {
                Box::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(&bucket)
                        .build()
                        .unwrap(),
                )
            };
            let path = object_store::path::Path::from(prefix.trim_end_matches('/'));
            let mut keys: Vec<String> =
                store.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
            if let (Some(uploads), "s3") = (uploads, provider.as_str()) {
                let endpoint = std::env::var("AWS_ENDPOINT").unwrap();
                let url = format!("{endpoint}/{bucket}?uploads&prefix={uploads}");
                let listing = reqwest::get(url).await.unwrap().text().await.unwrap();
                keys.extend(listing.split("<Upload>").skip(1).map(|u| format!("open multipart upload {u}")));
            }
            keys
        })
    })
    .join()
    .unwrap()
}

/// `filegate` with `FILEGATE_DATA_DIR` and this test's database, for commands other than a test server.
pub fn filegate(database: &TestDatabase, data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filegate"));
    cmd.env("FILEGATE_DATA_DIR", data_dir).env_remove("FILEGATE_API_KEYS").env_remove("FILEGATE_DATABASE_URL");
    if let Some(url) = database.url() {
        cmd.env("FILEGATE_DATABASE_URL", url);
    }
    cmd
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres(admin, name) = self {
            psql(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn random_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct ServerBuilder {
    env: Vec<(String, String)>,
    sqlite: bool,
    local_blobs: bool,
    descriptors: Option<u64>,
    /// PostgreSQL reached through this address (a fault proxy's) instead of its own.
    database_via: Option<std::net::SocketAddr>,
    binary: Option<PathBuf>,
}

impl ServerBuilder {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// SQLite in the data directory, whatever engine the run tests.
    pub fn on_sqlite(mut self) -> Self {
        self.sqlite = true;
        self
    }

    /// Bytes on the local disk, whatever store the run tests.
    pub fn on_local_disk(mut self) -> Self {
        self.local_blobs = true;
        self
    }

    /// Runs the server with at most `limit` file descriptors (soft and hard), as a small host would.
    pub fn descriptors(mut self, limit: u64) -> Self {
        self.descriptors = Some(limit);
        self
    }

    /// PostgreSQL reached through `via` (a [`crate::faultproxy::FaultProxy`] in front of it).
    pub fn database_via(mut self, via: std::net::SocketAddr) -> Self {
        self.database_via = Some(via);
        self
    }

    /// Runs `binary` (another build of filegate: a previous release's) instead of this one.
    pub fn binary(mut self, binary: PathBuf) -> Self {
        self.binary = Some(binary);
        self
    }

    /// Without the keys every test server gets (`FILEGATE_API_KEYS`), for a test that gives its own.
    pub fn without_keys(mut self) -> Self {
        self.env.retain(|(k, _)| k != "FILEGATE_API_KEYS");
        self
    }

    pub fn start(self) -> Server {
        self.start_with(|_| {})
    }

    /// Starts after `prepare` has seen the (not yet created) data directory: to mount something there.
    pub fn start_with(self, prepare: impl FnOnce(&Path)) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let database = if self.sqlite { TestDatabase::Sqlite } else { TestDatabase::create() };
        let blobs = if self.local_blobs { TestBlobs::Local } else { TestBlobs::create(tmp.path()) };
        let mut env = self.env;
        if let Some(url) = database.url() {
            let url = match self.database_via {
                Some(via) => {
                    let mut url = url::Url::parse(&url).unwrap();
                    url.set_ip_host(via.ip()).unwrap();
                    url.set_port(Some(via.port())).unwrap();
                    url.to_string()
                }
                None => url,
            };
            env.insert(0, ("FILEGATE_DATABASE_URL".into(), url));
        }
        for (i, pair) in blobs.env().into_iter().enumerate() {
            env.insert(i, pair);
        }
        let data_dir = tmp.path().join("data");
        prepare(&data_dir);
        let mut server = Server {
            child: None,
            url: String::new(),
            data_dir,
            env,
            descriptors: self.descriptors,
            binary: self.binary,
            blobs,
            database,
            leftovers_expected: false,
            _tmp: tmp,
        };
        server.spawn();
        server
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            env: vec![("FILEGATE_API_KEYS".into(), format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}"))],
            sqlite: false,
            local_blobs: false,
            descriptors: None,
            database_via: None,
            binary: None,
        }
    }

    pub fn start() -> Server {
        Self::builder().start()
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_file_name("server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let binary = self.binary.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_filegate")));
        // prlimit sets the limit and then becomes the server (the same process).
        let mut cmd = match self.descriptors {
            Some(limit) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={limit}:{limit}")).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("FILEGATE_LISTEN", "127.0.0.1:0")
            .env("FILEGATE_DATA_DIR", &self.data_dir)
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn filegate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        self.url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("filegate did not start; log:\n{}", std::fs::read_to_string(self.log_path()).unwrap_or_default())
            }
        };
        self.child = Some(child);
    }

    /// The database this server's metadata is in.
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// `filegate` with this server's environment (database, blob store, data directory), for its other
    /// commands.
    pub fn filegate(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_filegate"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FILEGATE_DATA_DIR", &self.data_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Sets a variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: impl ToString) {
        self.env.push((key.to_owned(), value.to_string()));
    }

    /// Another node of the same deployment: a second process on this server's database and blob store
    /// (and its own data directory, port and log), as behind a load balancer.
    pub fn sibling(&self) -> Server {
        self.sibling_with(&[])
    }

    /// Another node like [`Server::sibling`], with some variables of its own (`env` replaces the first
    /// node's values of the same names).
    pub fn sibling_with(&self, env: &[(&str, String)]) -> Server {
        let mut with: Vec<(String, String)> = self.env.clone();
        with.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut node = Server {
            child: None,
            url: String::new(),
            data_dir,
            env: with,
            descriptors: self.descriptors,
            binary: None,
            blobs: self.blobs.clone(),
            database: TestDatabase::Borrowed,
            leftovers_expected: true,
            _tmp: tmp,
        };
        node.spawn();
        node
    }

    /// `{scheme}://{bucket}/{prefix}/files/`: where finished files are in a bucket; `None` on local disk.
    pub fn storage_prefix(&self) -> Option<String> {
        match &self.blobs {
            TestBlobs::Local => None,
            TestBlobs::Bucket { provider, bucket, prefix, .. } => {
                Some(format!("{provider}://{bucket}/{prefix}/files/"))
            }
        }
    }

    /// Runs `statement` on this server's database, behind its back: only for tests that break a deployment
    /// on purpose (`filegate fsck`'s).
    pub async fn sql(&self, statement: &str) {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let url =
            self.database.url().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("filegate.db").display()));
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
        conn.close().await.unwrap();
    }

    /// This server's blob store as a client of its own, to break it behind filegate's back, and what
    /// filegate's keys are prefixed with there. On S3, the client also makes multipart uploads.
    pub fn raw_store(
        &self,
    ) -> (std::sync::Arc<dyn object_store::ObjectStore>, Option<std::sync::Arc<object_store::aws::AmazonS3>>, String)
    {
        use std::sync::Arc;
        match &self.blobs {
            TestBlobs::Local => {
                let local = object_store::local::LocalFileSystem::new_with_prefix(self.data_dir.join("blobs")).unwrap();
                (Arc::new(local), None, String::new())
            }
            TestBlobs::Bucket { provider, bucket, prefix, service_account } => match *provider {
                "s3" => {
                    let s3 = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build().unwrap();
                    let s3 = Arc::new(s3);
                    (s3.clone(), Some(s3), format!("{prefix}/"))
                }
                "az" => {
                    let azure = object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(bucket)
                        .build()
                        .unwrap();
                    (Arc::new(azure), None, format!("{prefix}/"))
                }
                _ => {
                    let gcs = object_store::gcp::GoogleCloudStorageBuilder::new()
                        .with_service_account_path(service_account.as_ref().unwrap().display().to_string())
                        .with_bucket_name(bucket)
                        .build()
                        .unwrap();
                    (Arc::new(gcs), None, format!("{prefix}/"))
                }
            },
        }
    }

    /// Whether this run keeps metadata in PostgreSQL and bytes in a bucket: a deployment of several nodes.
    pub fn can_have_siblings(&self) -> bool {
        matches!(self.database, TestDatabase::Postgres(..)) && matches!(self.blobs, TestBlobs::Bucket { .. })
    }

    /// Whether the process is still alive (it never exits on its own).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The server's process id (to read its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/pid/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The most resident memory the server has had so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/pid/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// `host:port` of the server, for raw TCP clients.
    pub fn addr(&self) -> String {
        self.url.strip_prefix("http://").unwrap().to_owned()
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        panic!("filegate did not exit within 15 s of SIGTERM");
    }

    /// Starts again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn gemini(&self, key: &str) -> Gemini {
        Gemini { http: reqwest::Client::new(), base: self.url.clone(), key: key.to_owned() }
    }

    /// What the blob store holds under `dir` of the local layout: `blobs/files` (finished objects),
    /// `blobs/staging` (staging files; on a bucket, open multipart uploads and tail objects) or `blobs`
    /// (both). On a bucket, one entry per object or open upload.
    pub fn files_under(&self, dir: &str) -> Vec<PathBuf> {
        match &self.blobs {
            TestBlobs::Local => {
                fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
                    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                        let path = entry.path();
                        if path.is_dir() { walk(&path, out) } else { out.push(path) }
                    }
                }
                let mut out = Vec::new();
                walk(&self.data_dir.join(dir), &mut out);
                out
            }
            bucket => bucket.entries(dir),
        }
    }
}

impl Server {
    /// The after-test check of every server: nothing is left behind. Each project's counters recomputed from
    /// the rows equal the kept ones (`filegate usage --recompute` repairs none), and no staging area
    /// outlives its upload or import: with none open, the staging tree is empty (local files; a bucket's
    /// open multipart uploads and tail objects). Deletions a request or the janitor does in the
    /// background get up to ten seconds.
    fn assert_nothing_left_behind(&self) {
        let usage = |recompute: bool| {
            let mut cmd = self.filegate();
            cmd.args(["usage", "--json"]);
            if recompute {
                cmd.arg("--recompute");
            }
            let out = cmd.output().expect("filegate usage");
            assert!(out.status.success(), "filegate usage: {}", String::from_utf8_lossy(&out.stderr));
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (serde_json::from_slice::<Value>(&out.stdout).unwrap(), stderr)
        };
        let (_, repairs) = usage(true);
        assert!(repairs.contains("0 project(s) had drifted counters"), "counters drifted from the rows: {repairs}");
        let (report, _) = usage(false);
        let open: u64 = report["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["open_uploads"].as_u64().unwrap() + p["running_imports"].as_u64().unwrap())
            .sum();
        if open > 0 {
            return;
        }
        for _ in 0..100 {
            if self.files_under("blobs/staging").is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no upload or import is open, yet staging holds {:?}", self.files_under("blobs/staging"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let check = !std::thread::panicking() && !self.leftovers_expected && self.child.is_some();
        if check {
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.assert_nothing_left_behind()));
            self.kill9();
            if let Err(panic) = checked {
                eprintln!("--- filegate log ---\n{}", self.log());
                std::panic::resume_unwind(panic);
            }
            return;
        }
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- filegate log ---\n{}", self.log());
        }
    }
}

/// Ends a test that cannot run in this configuration, saying so on stderr. Under `scripts/test.sh`
/// (`FILEGATE_TEST_STRICT=1`) it fails instead: there the filters choose each test only for the
/// configurations it can run in, so a skip there is a mistake, never a silent pass.
pub fn skip(reason: &str) {
    if std::env::var("FILEGATE_TEST_STRICT").as_deref() == Ok("1") {
        panic!("this test cannot run in this configuration ({reason}), yet scripts/test.sh chose it");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Deterministic bytes that differ per seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

pub fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A Gemini client speaking the wire protocol directly, as the SDKs do.
pub struct Gemini {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Gemini {
    pub async fn start(&self, size: u64, metadata: Value) -> Response {
        self.http
            .post(format!("{}/upload/v1/files", self.base))
            .header("x-goog-api-key", &self.key)
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", size.to_string())
            .header("X-Goog-Upload-Header-Content-Type", "application/octet-stream")
            .json(&metadata)
            .send()
            .await
            .unwrap()
    }

    /// Starts an upload and returns its upload URL.
    pub async fn start_ok(&self, size: u64, metadata: Value) -> String {
        let resp = self.start(size, metadata).await;
        assert_eq!(resp.status(), StatusCode::OK, "start failed: {}", resp.text().await.unwrap());
        assert_eq!(header(&resp, "x-goog-upload-status"), Some("active"));
        header(&resp, "x-goog-upload-url").expect("x-goog-upload-url").to_owned()
    }

    /// One request on an upload URL, without an API key (as the Python SDK sends chunks).
    pub async fn command(&self, upload_url: &str, command: &str, offset: Option<u64>, body: Vec<u8>) -> Response {
        let mut req = self
            .http
            .post(upload_url)
            .header("X-Goog-Upload-Command", command)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(offset) = offset {
            req = req.header("X-Goog-Upload-Offset", offset.to_string());
        }
        req.send().await.unwrap()
    }

    /// Sends `bytes` in 8 MiB chunks as the SDKs do and returns the finalized File.
    pub async fn upload_chunks(&self, upload_url: &str, bytes: &[u8]) -> Value {
        self.upload_chunks_from(upload_url, bytes, 0).await
    }

    /// Like [`Gemini::upload_chunks`], resuming at `offset` (what `query` said was received).
    pub async fn upload_chunks_from(&self, upload_url: &str, bytes: &[u8], mut offset: usize) -> Value {
        loop {
            let end = (offset + CHUNK).min(bytes.len());
            let last = end == bytes.len();
            let command = if last { "upload, finalize" } else { "upload" };
            let resp = self.command(upload_url, command, Some(offset as u64), bytes[offset..end].to_vec()).await;
            let status = resp.status();
            let upload_status = header(&resp, "x-goog-upload-status").map(str::to_owned);
            let body = resp.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "chunk at {offset} failed: {body}");
            if last {
                assert_eq!(upload_status.as_deref(), Some("final"));
                return serde_json::from_str::<Value>(&body).unwrap()["file"].clone();
            }
            assert_eq!(upload_status.as_deref(), Some("active"));
            offset = end;
        }
    }

    pub async fn upload(&self, bytes: &[u8], metadata: Value) -> Value {
        let url = self.start_ok(bytes.len() as u64, metadata).await;
        self.upload_chunks(&url, bytes).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(format!("{}/{path}", self.base)).header("x-goog-api-key", &self.key).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http.delete(format!("{}/{path}", self.base)).header("x-goog-api-key", &self.key).send().await.unwrap()
    }
}

/// The JSON body of a response, asserting its status first.
pub async fn json_of(resp: Response, status: StatusCode) -> Value {
    let actual = resp.status();
    let headers = format!("{:?}", resp.headers());
    let content_type = header(&resp, "content-type").unwrap_or_default().to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?} for {actual} {headers}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The google.rpc.Status of an error reply: `(http status, status name, message)`.
pub async fn rpc_error(resp: Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body = json_of(resp, StatusCode::from_u16(status).unwrap()).await;
    assert_eq!(body["error"]["code"], json!(status), "{body}");
    (
        status,
        body["error"]["status"].as_str().unwrap().to_owned(),
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

pub fn file_id(file: &Value) -> String {
    file["name"].as_str().unwrap().strip_prefix("files/").unwrap().to_owned()
}

/// A client of the import surface (`Authorization: <key>`, bare, as its original clients send it).
pub struct Importer {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Server {
    pub fn importer(&self, key: &str) -> Importer {
        Importer { http: reqwest::Client::new(), base: self.url.clone(), key: key.to_owned() }
    }
}

impl Importer {
    pub async fn create(&self, body: Value) -> Response {
        self.http
            .post(format!("{}/v1/files", self.base))
            .header("Authorization", &self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an import and returns its id, asserting the immediate `pending` answer.
    pub async fn create_ok(&self, body: Value) -> String {
        let task = json_of(self.create(body).await, StatusCode::OK).await;
        assert_eq!(task["status"], "pending", "{task}");
        assert_eq!(task["object"], "file");
        task["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, id: &str, wait: Option<u64>) -> Response {
        let query = wait.map(|w| format!("?wait={w}")).unwrap_or_default();
        self.http
            .get(format!("{}/v1/files/{id}{query}", self.base))
            .header("Authorization", &self.key)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, id: &str) -> Response {
        self.http
            .delete(format!("{}/v1/files/{id}", self.base))
            .header("Authorization", &self.key)
            .send()
            .await
            .unwrap()
    }

    /// Long-polls until the import is `ready` or `failed` (at most two minutes).
    pub async fn settle(&self, id: &str) -> Value {
        for _ in 0..12 {
            let task = json_of(self.get(id, Some(10)).await, StatusCode::OK).await;
            if task["status"] == "ready" || task["status"] == "failed" {
                return task;
            }
        }
        panic!("import {id} did not settle");
    }
}

/// The project's scripts that start the services tests need (`scripts/services/`).
pub fn service_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services").join(name)
}

/// The id `filegate keys list` shows for a key (`FILEGATE_ADMIN_KEYS` names operators by it): the first
/// 16 hex digits of its SHA-256.
pub fn key_id(key: &str) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Waits up to ten seconds for `condition`, for effects of background work (janitor, workers).
pub async fn eventually(condition: impl Fn() -> bool, what: &str) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}
