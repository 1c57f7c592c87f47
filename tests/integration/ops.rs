//! Health, metrics, OpenAPI and CORS.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_a_key() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let alive = http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(json_of(alive, StatusCode::OK).await, json!({"status": "ok"}));
    let ready = http.get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(json_of(ready, StatusCode::OK).await, json!({"status": "ok", "database": "ok", "blob_store": "ok"}));
    server.gemini(ALPHA_KEY).upload(&data(100, 1), json!({})).await;
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("filegate_http_requests_total{"), "{metrics}");
    assert!(metrics.contains("filegate_upload_bytes_total 100"), "{metrics}");
    assert!(metrics.contains("filegate_uploads_finalized_total 1"), "{metrics}");
}

#[tokio::test]
async fn the_console_is_served_locked_down_and_can_be_turned_off() {
    let http = reqwest::Client::new();
    let on = Server::start();
    let page = http.get(format!("{}/console", on.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let script = http.get(format!("{}/console/app.js", on.url)).send().await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let project = http.get(format!("{}/console/api/project", on.url)).header("x-goog-api-key", ALPHA_KEY);
    let project = json_of(project.send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((project["project"].as_str(), project["operator"].as_bool()), (Some("alpha"), Some(false)));
    let refused = http.get(format!("{}/console/api/keys", on.url)).header("x-goog-api-key", ALPHA_KEY);
    assert_eq!(refused.send().await.unwrap().status(), StatusCode::FORBIDDEN, "not an operator's key");

    let off = Server::builder().env("FILEGATE_CONSOLE", "off").start();
    for path in ["console", "console/app.js", "console/api/project"] {
        let answer = http.get(format!("{}/{path}", off.url)).header("x-goog-api-key", ALPHA_KEY);
        assert_eq!(answer.send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let server = Server::start();
    let resp = reqwest::get(format!("{}/openapi.json", server.url)).await.unwrap();
    let spec = json_of(resp, StatusCode::OK).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/upload/{version}/files",
        "/{version}/files",
        "/{version}/files/{name}",
        "/{version}/files/{name}:download",
        "/{version}/files:register",
        "/v1/files/{import_id}",
        "/{version}/cachedContents",
        "/{version}/cachedContents/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
}

#[tokio::test]
async fn a_browser_may_run_the_upload_protocol() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/upload/v1beta/files", server.url))
        .header("Origin", "https://app.example.test")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "x-goog-api-key, x-goog-upload-protocol, x-goog-upload-command, x-goog-upload-header-content-length",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = header(&preflight, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-goog-upload-command") && allowed.contains("x-goog-api-key"), "{allowed}");
    let start = server.gemini(ALPHA_KEY).start(1, json!({})).await;
    let exposed = header(&start, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["x-goog-upload-url", "x-goog-upload-status", "x-goog-upload-size-received"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[test]
fn the_binary_explains_itself() {
    let filegate = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_filegate"));
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd
    };
    let version = filegate().arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with(concat!("filegate ", env!("CARGO_PKG_VERSION"), " (commit ")), "{version}");
    assert!(version.contains("PostgreSQL") && version.contains("S3") && version.contains("Azure"), "{version}");

    let tmp = tempfile::tempdir().unwrap();
    let bad = filegate()
        .args(["config", "check", "--public-url", "files.example.com"])
        .env("FILEGATE_IMPORT_WORKERS", "0")
        .env("FILEGATE_UPSTREAM", "gemini")
        .env("FILEGATE_DATABASE_URL_FILE", tmp.path().join("missing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    for named in
        ["FILEGATE_PUBLIC_URL", "FILEGATE_IMPORT_WORKERS", "FILEGATE_GEMINI_API_KEY", "FILEGATE_DATABASE_URL_FILE"]
    {
        assert!(stderr.contains(named), "{named} is not reported:\n{stderr}");
    }
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    let good = filegate().args(["config", "check"]).env("FILEGATE_DATA_DIR", tmp.path()).output().unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));

    let help = filegate().args(["keys", "create", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--database-url") && help.contains("--project"), "{help}");
    assert!(!help.contains("--listen") && !help.contains("IMPORT"), "keys takes no server flags:\n{help}");
}

/// `deploy/systemd/filegate.service` passes `systemd-analyze verify` (with this build as its binary, no
/// warning) and keeps the settings operators rely on.
#[test]
fn the_systemd_unit_verifies_and_is_locked_down() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd/filegate.service")).unwrap();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=filegate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/filegate.env",
        "ExecStart=/usr/local/bin/filegate serve",
    ] {
        assert!(unit.lines().any(|l| l == setting), "{setting} is missing");
    }
    // The stop timeout leaves room for the default grace period of requests in flight.
    let stop: u64 = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).unwrap().parse().unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop} cuts FILEGATE_SHUTDOWN_GRACE_SECONDS (30 s) short");

    let tmp = tempfile::tempdir().unwrap();
    let binary = tmp.path().join("filegate");
    std::fs::copy(env!("CARGO_BIN_EXE_filegate"), &binary).unwrap();
    let local = tmp.path().join("filegate.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/filegate", binary.to_str().unwrap())).unwrap();
    let verify = std::process::Command::new("systemd-analyze").arg("verify").arg(&local).output();
    let verify = verify.expect("systemd-analyze (Debian's systemd package; scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[tokio::test]
async fn metrics_may_have_an_address_of_their_own_and_count_upstream_calls_and_the_pool() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fake = crate::fake_google::FakeGoogle::start(&["--api-key", crate::fake_google::GEMINI_KEY]);
    let server = Server::builder()
        .env("FILEGATE_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("FILEGATE_UPSTREAM", "gemini")
        .env("FILEGATE_GEMINI_ENDPOINT", &fake.url)
        .env("FILEGATE_GEMINI_API_KEY", crate::fake_google::GEMINI_KEY)
        .start();
    let public = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND, "not on the public address");
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    for model in ["gemini-test", "missing-model"] {
        reqwest::Client::new()
            .post(format!("{}/v1beta/models/{model}:generateContent", server.url))
            .header("x-goog-api-key", ALPHA_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        r#"filegate_upstream_requests_total{model="gemini-test",status="200"} 1"#,
        r#"filegate_upstream_requests_total{model="unknown",status="404"} 1"#,
        r#"filegate_upstream_tokens_total{model="gemini-test",kind="input"}"#,
        r#"filegate_database_connections{state="idle"}"#,
    ] {
        assert!(metrics.contains(expected), "{expected} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("missing-model"), "an invented model name is no label");
}

#[tokio::test]
async fn the_public_metrics_name_projects_only_to_an_operator() {
    let fake = crate::fake_google::FakeGoogle::start(&["--api-key", crate::fake_google::GEMINI_KEY]);
    let server = crate::model::gemini_api(&fake).env("FILEGATE_ADMIN_KEYS", key_id(BETA_KEY)).start();
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let asked = crate::model::call(&server, ALPHA_KEY, "v1beta/models/gemini-test:generateContent", body).await;
    json_of(asked, StatusCode::OK).await;
    let metrics = |key: Option<&str>| {
        let mut request = reqwest::Client::new().get(format!("{}/metrics", server.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let operator = metrics(Some(BETA_KEY)).await;
    assert!(operator.contains(r#"filegate_model_tokens_total{project="alpha""#), "{operator}");
    for who in [None, Some(ALPHA_KEY), Some("not-a-key-at-all")] {
        let shown = metrics(who).await;
        assert!(shown.contains("filegate_http_requests_total{"), "{shown}");
        assert!(!shown.contains("project="), "{who:?} sees which projects there are:\n{shown}");
    }
}

#[tokio::test]
async fn silent_connections_to_the_metrics_listener_never_starve_the_public_one() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // 600 descriptors: 1 100 connections would take them all if the metrics listener took every one.
    let server = Server::builder()
        .env("FILEGATE_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", 3)
        .descriptors(600)
        .start();
    let silent: Vec<_> = (0..1100)
        .map(|_| {
            tokio::spawn(async move {
                let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                tokio::time::timeout(std::time::Duration::from_secs(2), connect).await.ok().and_then(Result::ok)
            })
        })
        .collect();
    let mut held = Vec::new();
    for connection in silent {
        held.extend(connection.await.unwrap());
    }
    assert!(held.len() >= 64, "the connections were made ({})", held.len());
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let health = reqwest::Client::new()
            .get(format!("{}/healthz", server.url))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .expect("the public listener answers");
        assert_eq!(health.status(), StatusCode::OK);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
    let log = server.log();
    assert!(!log.contains("Too many open files"), "{log}");
    // The metrics listener is bounded, not dead: once the silent ones are dropped for their idle time, a
    // scraper gets its answer.
    drop(held);
    let scraped = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
}

#[test]
fn config_check_names_every_problem_as_the_operator_set_it_and_passes_only_what_serve_takes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("keys-fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let check = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_filegate"));
        cmd.args(["config", "check"]).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("FILEGATE_DATA_DIR", dir.path().join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "config check hung");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (status, problems) = check(&[
        ("FILEGATE_DEFAULT_TTL_SECONDS", "-5"),
        ("FILEGATE_LISTEN", "nonsense"),
        ("FILEGATE_UPSTREAM", "gemini"),
        ("FILEGATE_GEMINI_API_KEY", "a-key"),
        ("FILEGATE_GEMINI_ENDPOINT", "not a url"),
        ("FILEGATE_API_KEYS_FILE", fifo.to_str().unwrap()),
    ]);
    assert_eq!(status, Some(2), "{problems}");
    for expected in [
        "FILEGATE_DEFAULT_TTL_SECONDS is \"-5\", not a whole number",
        "FILEGATE_LISTEN is \"nonsense\", not an address",
        "FILEGATE_GEMINI_ENDPOINT \"not a url\" must be an absolute",
        "FILEGATE_API_KEYS_FILE: cannot read",
    ] {
        assert!(problems.contains(expected), "{expected} missing from:\n{problems}");
    }
    assert!(!problems.contains("--default-ttl-seconds"), "named by a flag nobody typed:\n{problems}");

    // A keys file of one project:key per line passes, and serve then takes every key in it.
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("alpha:{ALPHA_KEY}\nbeta:{BETA_KEY}\n")).unwrap();
    let (status, problems) = check(&[("FILEGATE_API_KEYS_FILE", keys.to_str().unwrap())]);
    assert_eq!(status, Some(0), "{problems}");
}

#[tokio::test]
async fn a_keys_file_of_one_key_per_line_lets_every_key_in() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# the team's keys\nalpha:{ALPHA_KEY}\n\nbeta:{BETA_KEY}\n")).unwrap();
    let server = Server::builder().without_keys().env("FILEGATE_API_KEYS_FILE", keys.display()).start();
    for key in [ALPHA_KEY, BETA_KEY] {
        let listed = server.gemini(key).get("v1beta/files").await;
        assert_eq!(listed.status(), StatusCode::OK, "{key}");
    }
}

#[tokio::test]
async fn a_console_download_link_is_never_written_to_the_log() {
    let server = Server::start();
    let bytes = data(5000, 9);
    let file = server.gemini(ALPHA_KEY).upload(&bytes, json!({"file": {"mimeType": "text/plain"}})).await;
    let link = reqwest::Client::new()
        .post(format!("{}/console/api/files/{}:link", server.url, file_id(&file)))
        .header("x-goog-api-key", ALPHA_KEY)
        .send()
        .await
        .unwrap();
    let url = json_of(link, StatusCode::OK).await["url"].as_str().unwrap().to_owned();
    let token = url.rsplit('/').next().unwrap().to_owned();
    let downloaded = reqwest::get(format!("{}{url}", server.url)).await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let log = server.log();
    assert!(log.contains("/console/download/{token}"), "the request is logged by its route: {log}");
    assert!(!log.contains(&token), "the link's token reached the log");
}
