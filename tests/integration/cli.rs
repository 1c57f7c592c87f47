//! The command line against a real server: `upload` (digests, SIGKILL and resume), `download` (Range
//! resume), `ls`/`info`/`rm` with `--json`, `import --wait` against nginx, `keys` and `usage`, progress on
//! a terminal only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::sources::Nginx;
use crate::support::*;

/// `filegate` as a client of `server`, with its own cache directory for resume state.
fn cli(server: &Server, key: &str, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filegate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FILEGATE_URL", &server.url)
        .env("FILEGATE_KEY", key)
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run filegate")
}

/// The one JSON document a `--json` command prints, and its exit code.
fn json_run(cmd: &mut Command) -> (i32, Value) {
    let out = run(cmd.arg("--json"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not one JSON document ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().expect("exited"), doc)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn metric(server: &Server, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn uploads_of_0_1_and_20_mb_keep_their_digests_and_come_back_whole() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let contents = [Vec::new(), b"x".to_vec(), data(20 * 1000 * 1000, 7)];
    let paths: Vec<PathBuf> =
        contents.iter().zip(["empty.txt", "one.txt", "lecture.mp4"]).map(|(c, n)| write(tmp.path(), n, c)).collect();

    let (code, doc) = json_run(cli(&server, ALPHA_KEY, &cache).arg("upload").args(&paths));
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["errors"], serde_json::json!([]));
    let uploads = doc["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 3);
    let mut names = Vec::new();
    for (upload, bytes) in uploads.iter().zip(&contents) {
        assert_eq!(upload["sha256"], sha256_hex(bytes));
        assert_eq!(upload["file"]["sha256Hash"], sha256_b64(bytes), "the server's digest is the file's");
        assert_eq!(upload["file"]["sizeBytes"], bytes.len().to_string());
        assert_eq!(upload["resumed_from"], 0);
        names.push(upload["file"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(uploads[2]["file"]["mimeType"], "video/mp4", "guessed from the extension");
    assert_eq!(uploads[2]["file"]["displayName"], "lecture.mp4");

    let (code, listed) = json_run(cli(&server, ALPHA_KEY, &cache).arg("ls"));
    assert_eq!(code, 0);
    let mut listed: Vec<&str> =
        listed["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let (_, beta) = json_run(cli(&server, BETA_KEY, &cache).arg("ls"));
    assert_eq!(beta["files"], serde_json::json!([]), "another project sees none of them");

    // Downloads: whole, then continued from a partial `.part` with Range (the server sends only the rest).
    for (name, bytes) in names.iter().zip(&contents) {
        let target = tmp.path().join(format!("{}.back", name.trim_start_matches("files/")));
        let (code, got) = json_run(cli(&server, ALPHA_KEY, &cache).args(["download", name, "-o"]).arg(&target));
        assert_eq!(code, 0, "{got}");
        assert_eq!(&std::fs::read(&target).unwrap(), bytes);
    }
    let large = &contents[2];
    let target = tmp.path().join("again.mp4");
    std::fs::write(tmp.path().join("again.mp4.part"), &large[..12_345_678]).unwrap();
    let before = metric(&server, "filegate_download_bytes_total").await;
    let (code, got) = json_run(cli(&server, ALPHA_KEY, &cache).args(["download", &names[2], "-o"]).arg(&target));
    assert_eq!((code, got["resumed_from"].as_u64()), (0, Some(12_345_678)), "{got}");
    assert_eq!(metric(&server, "filegate_download_bytes_total").await - before, (large.len() - 12_345_678) as u64);
    assert_eq!(&std::fs::read(&target).unwrap(), large);
    assert!(!tmp.path().join("again.mp4.part").exists());
    let out = run(cli(&server, ALPHA_KEY, &cache).args(["download", &names[2], "-o"]).arg(&target));
    assert_eq!(out.status.code(), Some(2), "an existing file is not replaced without --force");

    let (code, info) = json_run(cli(&server, ALPHA_KEY, &cache).args(["info", &names[1]]));
    assert_eq!((code, info["sizeBytes"].as_str()), (0, Some("1")));
    let (code, removed) = json_run(cli(&server, ALPHA_KEY, &cache).arg("rm").args(&names));
    assert_eq!((code, removed["deleted"].as_array().unwrap().len()), (0, 3), "{removed}");
    let out = run(cli(&server, ALPHA_KEY, &cache).args(["info", &names[0]]));
    assert_eq!(out.status.code(), Some(4), "a deleted file is not found");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403 PERMISSION_DENIED") && stderr.contains("hint:"), "{stderr}");
    assert!(std::fs::read_dir(cache.join("filegate/uploads")).unwrap().next().is_none(), "no resume state is left");
}

#[tokio::test]
async fn an_upload_killed_with_sigkill_resumes_from_what_the_server_has() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bytes = data(20 * 1000 * 1000, 9);
    let path = write(tmp.path(), "talk.mp4", &bytes);

    // 4 MiB/s: the first 8 MiB chunk goes at once, the next waits two seconds. Killed once one is acknowledged.
    let mut first = cli(&server, ALPHA_KEY, &cache).args(["upload", "--limit-rate", "4M"]).arg(&path).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "filegate_upload_bytes_total").await < CHUNK as u64 {
        assert!(Instant::now() < deadline, "the first chunk never arrived");
        assert!(first.try_wait().unwrap().is_none(), "the upload ended before it could be killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let received_first = metric(&server, "filegate_upload_bytes_total").await;
    assert!(received_first < bytes.len() as u64, "killed too late: the server has everything");
    // The state left behind holds the upload URL, a capability: the user's alone.
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    let states = cache.join("filegate/uploads");
    assert_eq!(mode(&states), 0o700, "the state directory");
    let state_files: Vec<PathBuf> = std::fs::read_dir(&states).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(state_files.len(), 1, "{state_files:?}");
    assert_eq!(mode(&state_files[0]), 0o600, "the state file");

    let (code, doc) = json_run(cli(&server, ALPHA_KEY, &cache).arg("upload").arg(&path));
    assert_eq!(code, 0, "{doc}");
    let upload = &doc["uploads"][0];
    assert!(upload["resumed_from"].as_u64().unwrap() >= CHUNK as u64, "{doc}");
    let received_second = metric(&server, "filegate_upload_bytes_total").await - received_first;
    assert!(received_second < bytes.len() as u64, "the second run sent {received_second} bytes: it did not resume");
    assert_eq!(received_first + received_second, bytes.len() as u64, "no byte was sent twice");
    assert_eq!(upload["file"]["sha256Hash"], sha256_b64(&bytes));
    let file = server.gemini(ALPHA_KEY).get(&format!("v1beta/{}", upload["file"]["name"].as_str().unwrap())).await;
    assert_eq!(json_of(file, reqwest::StatusCode::OK).await["state"], "ACTIVE");

    // The same file again is a new upload (the finished one's state is gone), not a resumed one.
    let (code, doc) = json_run(cli(&server, ALPHA_KEY, &cache).arg("upload").arg(&path));
    assert_eq!((code, doc["uploads"][0]["resumed_from"].as_u64()), (0, Some(0)));
}

#[tokio::test]
async fn import_wait_follows_each_task_and_a_failed_one_fails_the_command() {
    let nginx = Nginx::start();
    let bytes = data(6 * MIB + 5, 3);
    let good = nginx.put("clip.mp4", &bytes);
    let missing = format!("{}/files/missing.mp4", nginx.url);
    let server = Server::builder().env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32").start();
    let cache = tempfile::tempdir().unwrap();

    let (code, doc) = json_run(cli(&server, ALPHA_KEY, cache.path()).args([
        "import",
        "--wait",
        &format!("{good}?rate=4m"),
        &missing,
    ]));
    assert_eq!(code, 6, "a failed import fails the command: {doc}");
    let imports = doc["imports"].as_array().unwrap();
    assert_eq!(imports[0]["status"], "ready", "{doc}");
    assert_eq!(imports[0]["sha256"], sha256_hex(&bytes));
    assert_eq!(imports[0]["bytes"], bytes.len());
    assert_eq!(imports[1]["status"], "failed");
    assert_eq!(imports[1]["error"]["code"], "source_http_status");

    let out = run(cli(&server, ALPHA_KEY, cache.path()).args(["import", "--wait", &missing]));
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed") && stderr.contains("error: source_http_status") && stderr.contains("404"),
        "{stderr}"
    );

    // Without --wait the task is created and shown at once; `info` on its qfile id follows it.
    let out = run(cli(&server, ALPHA_KEY, cache.path()).args(["import", &good]));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let qfile = stdout.split_whitespace().next().unwrap().to_owned();
    assert!(qfile.starts_with("qfile-"), "{stdout}");
    let (code, info) = json_run(cli(&server, ALPHA_KEY, cache.path()).args(["info", &qfile]));
    assert_eq!((code, info["id"].as_str()), (0, Some(qfile.as_str())));
}

#[tokio::test]
async fn keys_are_created_listed_without_the_key_and_revoked_at_once() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let (code, created) =
        json_run(server.filegate().args(["keys", "create", "--project", "gamma", "--label", "laptop"]));
    assert_eq!(code, 0, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let out = run(cli(&server, &key, cache.path()).arg("ls"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let (code, listed) = json_run(server.filegate().args(["keys", "list", "--project", "gamma"]));
        assert_eq!(code, 0);
        if !listed["keys"][0]["last_used_at"].is_null() || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entry = &listed["keys"][0];
    assert_eq!((entry["id"].as_str(), entry["label"].as_str()), (Some(id.as_str()), Some("laptop")));
    assert!(entry["last_used_at"].is_string(), "the use was recorded: {listed}");
    assert!(entry["revoked_at"].is_null());
    assert!(!listed.to_string().contains(&key), "the key is never shown again");

    let out = run(server.filegate().args(["keys", "revoke", &id]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(cli(&server, &key, cache.path()).arg("ls"));
    assert_eq!(out.status.code(), Some(3), "the running server refuses the revoked key at once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("API key not valid"));
    let out = run(server.filegate().args(["keys", "revoke", "0123456789abcdef"]));
    assert_eq!(out.status.code(), Some(4));

    let (code, usage) = json_run(server.filegate().args(["usage", "--project", "gamma"]));
    assert_eq!(code, 0);
    assert_eq!(usage["projects"][0]["project"], "gamma");
    assert_eq!(usage["projects"][0]["files"], 0);
    // The first name of `keys create` still works.
    let out = run(server.filegate().args(["create-key", "--project", "gamma"]));
    assert!(out.status.success() && out.stdout.starts_with(b"fg_"));
}

#[tokio::test]
async fn progress_bars_render_on_a_terminal_and_never_in_a_pipe() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "bar.bin", &data(20 * MIB, 5));

    // `script` (util-linux) gives the command a pseudo-terminal.
    let command = format!("{} upload --limit-rate 8M {}", env!("CARGO_BIN_EXE_filegate"), path.display());
    let shown = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("FILEGATE_URL", &server.url)
        .env("FILEGATE_KEY", ALPHA_KEY)
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(shown.status.success());
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(screen.contains("bar.bin") && screen.contains("eta") && screen.contains("MiB/s"), "{screen}");

    let piped = run(cli(&server, ALPHA_KEY, &tmp.path().join("cache")).arg("upload").arg(&path));
    assert!(piped.status.success());
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("eta") && !stderr.contains('\r'), "no bar in a pipe: {stderr:?}");
}

#[tokio::test]
async fn upload_speaks_google_s_files_api_too() {
    // The fake of the Gemini API's Files API: Google's granularity and its spelling of sha256Hash.
    let google = crate::fake_google::FakeGoogle::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(17 * MIB + 3, 11);
    let path = write(tmp.path(), "scan.pdf", &bytes);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filegate"));
    cmd.env_clear()
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .args(["upload", "--server", &google.url, "--key", crate::fake_google::GEMINI_KEY, "--chunk-size", "1"])
        .arg(&path);
    let (code, doc) = json_run(&mut cmd);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["uploads"][0]["sha256"], sha256_hex(&bytes), "checked against Google's hex spelling");
    let name = doc["uploads"][0]["file"]["name"].as_str().unwrap().trim_start_matches("files/").to_owned();
    let stored = &google.google_files()[&name];
    assert_eq!(
        (stored["sha256"].as_str(), stored["mime"].as_str()),
        (Some(sha256_hex(&bytes).as_str()), Some("application/pdf"))
    );
    let uploads: Vec<Value> = google
        .requests()
        .into_iter()
        .filter(|r| r["headers"]["x-goog-upload-command"].as_str().is_some_and(|c| c.starts_with("upload")))
        .collect();
    assert_eq!(uploads.len(), 3, "--chunk-size 1 rounded up to Google's 8 MiB granularity: 8 + 8 + 1 MiB");
}

#[tokio::test]
async fn download_never_writes_through_a_planted_part_file() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let file = server.gemini(ALPHA_KEY).upload(&data(100_000, 3), serde_json::json!({})).await;
    let name = file["name"].as_str().unwrap();
    let victim = write(tmp.path(), "victim", b"precious");
    let target = tmp.path().join("out.bin");
    std::os::unix::fs::symlink(&victim, tmp.path().join("out.bin.part")).unwrap();

    let out = run(cli(&server, ALPHA_KEY, &cache).args(["download", name, "-o"]).arg(&target));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the link's target is untouched");
    assert!(!target.exists());

    std::fs::remove_file(tmp.path().join("out.bin.part")).unwrap();
    let (code, doc) = json_run(cli(&server, ALPHA_KEY, &cache).args(["download", name, "-o"]).arg(&target));
    assert_eq!(code, 0, "{doc}");
    assert_eq!(std::fs::read(&target).unwrap(), data(100_000, 3));
}
