//! A node in-process, for tests: the whole [`super::router`] over SQLite and the local disk in a temporary
//! directory, assembled by [`crate::app::assemble`] exactly as `serve` does, and driven with
//! `tower::ServiceExt::oneshot` — no socket, no process, no port. Protocol tables run here in
//! milliseconds; what needs the real wire (sockets, timeouts, other storage engines, the SDKs) stays in
//! `tests/integration`, against the binary.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use clap::Parser as _;
use http_body_util::BodyExt as _;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::{Config, ServeArgs};

pub const ALPHA_KEY: &str = "alpha-key-0001";
pub const BETA_KEY: &str = "beta-key-0002";
const PUBLIC_URL: &str = "http://filegate.test";

#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

pub struct TestNode {
    router: Router,
    shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// A node with projects `alpha` and `beta`, and `flags` of `serve` on top (e.g.
    /// `["--project-quota-bytes", "100"]`). Storage and the upstream are given explicitly, so that the
    /// `FILEGATE_*` variables a test run sets for the integration tests do not reach in here.
    pub async fn start(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        let keys = format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}");
        let mut argv = vec![
            "filegate".to_owned(),
            format!("--data-dir={data}"),
            format!("--database-url=sqlite://{data}/filegate.db"),
            format!("--blob-store=file://{data}/blobs"),
            format!("--public-url={PUBLIC_URL}"),
            format!("--api-keys={keys}"),
            "--upstream=off".to_owned(),
        ];
        argv.extend(flags.iter().map(|f| (*f).to_owned()));
        let config = Config::from_args(Args::parse_from(argv).serve).expect("a valid test configuration");
        let shutdown = CancellationToken::new();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
        let node = crate::app::assemble(&config, PUBLIC_URL.to_owned(), metrics, &shutdown).await.unwrap();
        Self { router: super::router(node.state), shutdown, dir }
    }

    /// Sends one request; `uri` may be a path or one of the URLs the node handed out.
    pub async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let path = uri.strip_prefix(PUBLIC_URL).unwrap_or(uri);
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.router.clone().oneshot(request.body(Body::from(body.into())).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body }
    }

    /// Files and directories under `blobs/<sub>` of the node's data directory.
    pub fn blobs_under(&self, sub: &str) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() { walk(&path, out) } else { out.push(path) }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir.path().join("blobs").join(sub), &mut found);
        found
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The message of a Google-style error body.
    pub fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// The head of a request with `uri` and `headers`, for tests of what a request presents.
pub fn request_parts(uri: &str, headers: &[(&str, &str)]) -> axum::http::request::Parts {
    let mut request = Request::builder().uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap().into_parts().0
}
