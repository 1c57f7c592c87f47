//! Faults an operator meets: the disk fills up, the database's filesystem turns read-only, the database
//! file is moved away, PostgreSQL goes down under a running upload. In every case requests answer 503
//! (retryable, and without `x-goog-upload-status` on a chunk so that the SDKs resend it), never 500;
//! `/readyz` says what fails (and `/healthz`, liveness, stays 200); everything works again by itself once the fault is gone, with nothing that
//! was acknowledged lost.
//!
//! The filesystem faults need a small filesystem of their own: a tmpfs mounted on the test's data
//! directory (`scripts/test.sh` runs the tests as root in a private mount namespace). Where mounting is
//! not permitted they say so and do nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// A tmpfs mounted for one test, unmounted after it.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("SKIPPED: mounting a tmpfs is not permitted here (run scripts/test.sh as root)");
            return None;
        }
        Some(Self { dir: dir.to_owned() })
    }

    /// Fills the filesystem with a file until a write fails; returns the file.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A server whose data directory (SQLite and blobs) is a small tmpfs.
fn server_on_tmpfs(size: &str, builder: ServerBuilder) -> Option<(Server, Tmpfs)> {
    let mut tmpfs = None;
    let server = builder.start_with(|dir| tmpfs = Tmpfs::mount(dir, size));
    tmpfs.map(|tmpfs| (server, tmpfs))
}

/// These tests are about SQLite's file and the local disk: they keep them even in another run.
fn sqlite_on_data_dir() -> ServerBuilder {
    Server::builder().on_sqlite().on_local_disk()
}

/// Every status the server answered, from its access log.
fn statuses(server: &Server) -> Vec<u16> {
    server.log().lines().filter_map(|l| l.split("status=").nth(1)?.split_whitespace().next()?.parse().ok()).collect()
}

/// What a 503 (or `/readyz`) may never say: where the data is, how the database is reached, what its
/// driver said. The log has those.
fn assert_no_internals(body: &str, server: &Server) {
    let data_dir = server.data_dir.display().to_string();
    for secret in [data_dir.as_str(), "postgres://", "sqlite", "127.0.0.1", "error returned from", "/tmp/"] {
        assert!(!body.contains(secret), "an answer carries {secret:?}: {body}");
    }
}

fn assert_no_500(server: &Server) {
    let log = server.log();
    assert!(!statuses(server).contains(&500) && !log.contains("internal error"), "a 500 was answered:\n{log}");
}

/// `/readyz`, which must answer within a second whatever fails; `/healthz` (liveness) stays 200 meanwhile.
async fn health(server: &Server) -> (StatusCode, serde_json::Value) {
    let started = std::time::Instant::now();
    let resp = reqwest::get(format!("{}/readyz", server.url)).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500), "/readyz took {:?}", started.elapsed());
    let status = resp.status();
    let alive = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK, "the node is alive whatever its dependencies do");
    (status, resp.json().await.unwrap())
}

/// Whether `/readyz` answers 200 within ten seconds.
async fn becomes_healthy(server: &Server) -> bool {
    for _ in 0..100 {
        if health(server).await.0 == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_full_disk_answers_503_and_everything_works_again_once_space_is_back() {
    let builder = sqlite_on_data_dir()
        .env("FILEGATE_PROJECT_QUOTA_BYTES", 1 << 30)
        .env("FILEGATE_IMPORT_MAX_ACTIVE_PER_PROJECT", 10_000)
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32");
    let Some((server, tmpfs)) = server_on_tmpfs("48m", builder) else {
        return skip("mounting a small tmpfs needs root in a mount namespace");
    };
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(3 * CHUNK, 11);
    let url = gemini.start_ok(bytes.len() as u64, json!({})).await;
    let first = gemini.command(&url, "upload", Some(0), bytes[..CHUNK].to_vec()).await;
    assert_eq!(first.status(), StatusCode::OK);

    let filler = tmpfs.fill();
    // The next chunk cannot be stored: 503, and no upload status, so an SDK resends it later.
    let second = gemini.command(&url, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&second, "x-goog-upload-status"), None);
    assert_no_internals(&second.text().await.unwrap(), &server);
    assert_eq!(gemini.start(1, json!({})).await.status(), StatusCode::SERVICE_UNAVAILABLE, "no staging area fits");
    // Writes to the database fail too, once its journal cannot grow: an import's creation writes only
    // rows, and answers 503, not 500, as soon as they do not fit.
    let importer = server.importer(ALPHA_KEY);
    let mut refused = 0;
    for i in 0..2000 {
        let create = importer.create(json!({"source_url": format!("http://127.0.0.1:9/{i}"), "model": "m"})).await;
        match create.status() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_no_internals(&create.text().await.unwrap(), &server);
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("an import on a full disk answered {other}: {}", create.text().await.unwrap()),
        }
    }
    assert!(refused >= 5, "the database never reported the full disk");
    assert!(server.log().contains("database or disk is full"), "the database reported the full disk itself");
    let (status, body) = health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // Space comes back: no restart, every write path works again.
    std::fs::remove_file(filler).unwrap();
    assert!(becomes_healthy(&server).await, "readyz recovers: {}", health(&server).await.1);
    for _ in 0..20 {
        gemini.upload(b"after", json!({})).await; // many writes: no pooled connection is left poisoned
    }
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some(CHUNK.to_string().as_str()), "nothing lost");
    let file = gemini.upload_chunks_from(&url, &bytes, CHUNK).await;
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let other = gemini.start_ok(10, json!({})).await;
    assert_eq!(gemini.command(&other, "cancel", None, vec![]).await.status(), StatusCode::OK);
    assert_no_500(&server);
}

/// A database switched to read-only under a running server (a failover to a replica, a maintenance
/// window): PostgreSQL's `default_transaction_read_only`, its sessions restarted to take it. (A local
/// filesystem cannot be turned read-only under files open for writing: Linux refuses with EBUSY; the full
/// disk above and the moved file below are the local faults.)
#[tokio::test]
async fn postgres_made_read_only_answers_503_until_it_is_writable_again() {
    let server = Server::start();
    let TestDatabase::Postgres(_, name) = server.database() else {
        return skip("needs PostgreSQL");
    };
    let restart_sessions = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    let gemini = server.gemini(ALPHA_KEY);
    let kept = gemini.upload(&data(1000, 1), json!({})).await;
    server.database().psql(&format!("ALTER DATABASE {name} SET default_transaction_read_only = on"));
    server.database().psql(&restart_sessions);
    for _ in 0..3 {
        assert_eq!(gemini.start(10, json!({})).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, body) = health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_ne!(body["database"], "ok", "{body}");
    let delete = gemini.delete(&format!("v1beta/files/{}", file_id(&kept))).await;
    assert_eq!(delete.status(), StatusCode::SERVICE_UNAVAILABLE);
    let read = gemini.get(&format!("v1beta/files/{}", file_id(&kept))).await;
    assert_eq!(read.status(), StatusCode::OK, "reads still work");

    server.database().psql(&format!("ALTER DATABASE {name} RESET default_transaction_read_only"));
    server.database().psql(&restart_sessions);
    assert!(becomes_healthy(&server).await, "writes work again by themselves");
    gemini.upload(&data(1000, 2), json!({})).await;
    assert_eq!(gemini.delete(&format!("v1beta/files/{}", file_id(&kept))).await.status(), StatusCode::OK);
    assert_no_500(&server);
}

#[tokio::test]
async fn a_database_file_moved_away_answers_503_until_it_is_back() {
    let server = sqlite_on_data_dir().start();
    let gemini = server.gemini(ALPHA_KEY);
    gemini.upload(b"before", json!({})).await;
    let db = server.data_dir.join("filegate.db");
    let aside = server.data_dir.join("moved-away.db");
    std::fs::rename(&db, &aside).unwrap();
    let (status, body) = health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"status": "unavailable", "database": "failing", "blob_store": "ok"}));
    let (status, _, message) = rpc_error(gemini.start(1, json!({})).await).await;
    assert_eq!(status, 503);
    assert_eq!(message, "The metadata database is temporarily unavailable; retry the request.");
    assert!(server.log().contains("is gone"), "the log says what happened");

    std::fs::rename(&aside, &db).unwrap();
    assert_eq!(health(&server).await.0, StatusCode::OK);
    gemini.upload(b"after", json!({})).await;
    assert_eq!(json_of(gemini.get("v1/files").await, StatusCode::OK).await["files"].as_array().unwrap().len(), 2);
    assert_no_500(&server);
}

/// A PostgreSQL server of this test's own (the shared one serves other tests).
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: String,
    url: String,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let mut pg = Self { dir, port, url: String::new() };
        pg.url = pg.up();
        pg
    }

    fn up(&self) -> String {
        let out = Command::new("bash")
            .arg(service_script("postgres.sh"))
            .arg(self.dir.path().join("pg"))
            .arg(&self.port)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned()
    }

    fn down(&self) {
        let status = Command::new("bash").arg(self.dir.path().join("pg/stop.sh")).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test]
async fn postgres_going_away_for_ten_seconds_under_an_upload_loses_nothing() {
    if std::env::var("FILEGATE_TEST_DATABASE").as_deref() != Ok("postgres") {
        return skip("needs PostgreSQL");
    }
    let pg = OwnPostgres::start();
    let mut server = Server::builder().env("FILEGATE_DATABASE_URL", &pg.url).start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(3 * CHUNK, 21);
    let url = gemini.start_ok(bytes.len() as u64, json!({})).await;
    assert_eq!(gemini.command(&url, "upload", Some(0), bytes[..CHUNK].to_vec()).await.status(), StatusCode::OK);

    pg.down();
    let went_down = std::time::Instant::now();
    let chunk = gemini.command(&url, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
    assert_eq!(chunk.status(), StatusCode::SERVICE_UNAVAILABLE, "a retryable answer while the database is down");
    assert_eq!(header(&chunk, "x-goog-upload-status"), None, "so the SDK resends it");
    assert_no_internals(&chunk.text().await.unwrap(), &server);
    let (_, health_body) = health(&server).await;
    assert_no_internals(&health_body.to_string(), &server);
    assert_eq!(health(&server).await.0, StatusCode::SERVICE_UNAVAILABLE);
    while went_down.elapsed() < Duration::from_secs(10) {
        let query = gemini.command(&url, "query", None, vec![]).await;
        assert_eq!(query.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    pg.up();

    assert!(becomes_healthy(&server).await, "the server reconnects by itself");
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some(CHUNK.to_string().as_str()));
    let file = gemini.upload_chunks_from(&url, &bytes, CHUNK).await;
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    assert!(server.is_running(), "the server never exited");
    assert_no_500(&server);
    server.kill9();
}

#[tokio::test]
async fn open_sessions_and_files_are_limited_per_project_and_the_refusal_names_the_limit() {
    let server = Server::builder()
        .env("FILEGATE_PROJECT_MAX_OPEN_UPLOADS", 3)
        .env("FILEGATE_PROJECT_MAX_FILES", 5)
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .start();
    let gemini = server.gemini(ALPHA_KEY);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(gemini.start_ok(0, json!({})).await); // empty sessions cost no bytes, but count
    }
    let (status, code, message) = rpc_error(gemini.start(0, json!({})).await).await;
    assert_eq!((status, code.as_str()), (429, "RESOURCE_EXHAUSTED"));
    assert!(message.contains("FILEGATE_PROJECT_MAX_OPEN_UPLOADS"), "{message}");
    assert_eq!(gemini.start(0, json!({})).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(server.gemini(BETA_KEY).start(0, json!({})).await.status(), StatusCode::OK, "per project");

    assert_eq!(gemini.command(&sessions[0], "cancel", None, vec![]).await.status(), StatusCode::OK);
    let file = gemini.upload(b"one", json!({})).await; // a slot is free again
    gemini.upload(b"two", json!({})).await;
    gemini.upload(b"three", json!({})).await;
    // 3 files and 2 open sessions: 5 files, the most allowed.
    let (status, code, message) = rpc_error(gemini.start(1, json!({})).await).await;
    assert_eq!((status, code.as_str()), (429, "RESOURCE_EXHAUSTED"));
    assert!(message.contains("FILEGATE_PROJECT_MAX_FILES"), "{message}");
    let import = server.importer(ALPHA_KEY).create(json!({"source_url": "http://127.0.0.1:9/x", "model": "m"})).await;
    let body = json_of(import, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["error"]["code"], "too_many_files", "{body}");

    assert_eq!(gemini.delete(&format!("v1/files/{}", file_id(&file))).await.status(), StatusCode::OK);
    gemini.upload(b"four", json!({})).await;
}

#[tokio::test]
async fn an_unreachable_bucket_answers_503_without_its_address() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = sqlite_on_data_dir()
        .env("FILEGATE_BLOB_STORE", "s3://private-bucket-name/prefix")
        .env("AWS_ENDPOINT", format!("http://{closed}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .start();
    let start = server.gemini(ALPHA_KEY).start(10, json!({})).await;
    assert_eq!(start.status(), StatusCode::SERVICE_UNAVAILABLE);
    let request_id = start.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = start.text().await.unwrap();
    let log = server.log();
    let logged: Vec<_> = log.lines().filter(|line| line.contains("answering 503")).collect();
    assert_eq!(logged.len(), 1, "the cause is logged once:\n{log}");
    assert!(logged[0].contains(&request_id), "in the request's span: {}", logged[0]);
    assert_no_internals(&body, &server);
    assert!(!body.contains("private-bucket-name") && !body.contains(&closed.port().to_string()), "{body}");
    assert!(body.contains("File storage is temporarily unavailable"), "{body}");
    let (status, health) = health(&server).await;
    assert_eq!((status, health["blob_store"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("failing")));
    assert!(server.log().contains("private-bucket-name"), "the log names the bucket");
}
