//! The fake of Google's services (`tests/fakes/google.py`: Cloud Storage's XML API, Vertex AI, the Gemini API
//! and its Files API), started as a child process on loopback. One shared instance serves the GCS
//! configuration of the whole test process; tests of model calls start their own, so that what it recorded
//! is theirs alone. The fake exits with this process (`--parent-pid`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub struct FakeGoogle {
    pub url: String,
    child: Child,
}

/// The upstream API key the fake's Gemini API accepts by default.
pub const GEMINI_KEY: &str = "gemini-upstream-key";

impl FakeGoogle {
    /// Starts a fake with `args` (see the script's header: `--bearer`, `--api-key`, `--gcs-url`).
    pub fn start(args: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes/google.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake of Google's services");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("fake said {line:?}")).to_owned();
        Self { url, child }
    }

    /// The instance behind `FILEGATE_TEST_BLOBS=gcs`, started on first use.
    pub fn shared_gcs() -> &'static FakeGoogle {
        static FAKE: OnceLock<FakeGoogle> = OnceLock::new();
        FAKE.get_or_init(|| Self::start(&[]))
    }

    /// The base URL `object_store` uses for its GCS requests.
    pub fn gcs_url(&self) -> String {
        format!("{}/gcs", self.url)
    }

    /// A service-account file that points `object_store` at this fake's Cloud Storage, written under `dir`.
    pub fn service_account(&self, dir: &Path) -> PathBuf {
        let path = dir.join("gcs-service-account.json");
        let account = serde_json::json!({
            "private_key": "unused", "private_key_id": "unused", "client_email": "filegate-test@example.invalid",
            "disable_oauth": true, "gcs_base_url": self.gcs_url(),
        });
        std::fs::write(&path, account.to_string()).unwrap();
        path
    }

    /// Blocking GET of a control route (callers may be sync code inside a test's runtime).
    fn control(&self, route: &str) -> Value {
        let address = self.url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "GET /_fake/{route} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (_, body) = reply.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    /// Every request the upstream side received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.control("requests").as_array().cloned().unwrap_or_default()
    }

    /// The model calls received (generateContent and the rest), in order.
    pub fn model_calls(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["path"].as_str().unwrap_or_default().contains("/models/")).collect()
    }

    /// Files uploaded to the fake's Files API: name → `{sha256, size, mime, deleted, text}` (`text`: a small
    /// file's contents).
    pub fn google_files(&self) -> serde_json::Map<String, Value> {
        self.control("google-files").as_object().cloned().unwrap_or_default()
    }

    /// The names of the caches made at the fake (`cachedContents/…`, Vertex AI's full names).
    pub fn caches(&self) -> Vec<String> {
        self.control("caches").as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default()
    }

    /// Queues scripted replies for the next model calls (see the script's header).
    pub async fn script(&self, replies: Value) {
        let url = format!("{}/_fake/script", self.url);
        let response = reqwest::Client::new().post(url).body(replies.to_string()).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// Stores an object in the fake's Cloud Storage (`bucket/key`), as its owner would.
    pub async fn put_object(&self, bucket_key: &str, bytes: &[u8]) {
        let url = format!("{}/{bucket_key}", self.gcs_url());
        let response = reqwest::Client::new().put(url).body(bytes.to_vec()).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// Stored objects whose `bucket/key` starts with `prefix`.
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        let state = self.control("gcs");
        let objects = state["objects"].as_object().cloned().unwrap_or_default();
        objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    /// Open multipart uploads whose `bucket/key` starts with `prefix`.
    pub fn open_uploads(&self, prefix: &str) -> usize {
        let state = self.control("gcs");
        state["uploads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|k| k.as_str().is_some_and(|k| k.starts_with(prefix)))
            .count()
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
