//! Import sources for tests: nginx from the shared start script, and a scripted HTTP server in the test
//! process that can cut a body, stall, change a file between requests, or listen on a denied address.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// nginx serving `www/` with Range, `?rate=`, `/redirect?to=`, `/chunked/` (`scripts/services/nginx.sh`).
pub struct Nginx {
    pub url: String,
    pub www: PathBuf,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers run as nobody: the tree must be traversable.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("bash")
            .arg(crate::support::service_script("nginx.sh"))
            .arg(dir.path().join("src"))
            .output()
            .expect("run scripts/services/nginx.sh");
        assert!(out.status.success(), "nginx did not start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();
        Nginx { url, www: dir.path().join("src/www"), dir }
    }

    pub fn put(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.www.join(name), bytes).unwrap();
        format!("{}/files/{name}", self.url)
    }

    /// `(status, bytes sent)` of each request whose line contains `needle`, in the order they ended.
    pub fn requests(&self, needle: &str) -> Vec<(u16, u64)> {
        let log = std::fs::read_to_string(self.dir.path().join("src/access.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                let mut fields = l.split('"').nth(2)?.split_whitespace();
                Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(self.dir.path().join("src/stop.sh")).status();
    }
}

/// A request as the scripted source saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    /// The body as far as it came, up to its `content-length` (1 MiB at most).
    pub body: Vec<u8>,
}

/// What the scripted source answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection.
    pub cut_after: Option<usize>,
    /// Send only this many body bytes, then go silent (connection open) for this long.
    pub stall_after: Option<(usize, Duration)>,
}

impl Reply {
    pub fn new(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, headers: vec![], body, cut_after: None, stall_after: None }
    }

    pub fn header(mut self, name: &str, value: impl ToString) -> Reply {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server driven by a handler (request index, request) → reply.
pub struct Scripted {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        Self::start_on("127.0.0.1:0", handler).await
    }

    pub async fn start_on(addr: &str, handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        let url = match local {
            std::net::SocketAddr::V4(a) => format!("http://{a}"),
            std::net::SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else { return };
                    let (seen, handler) = (seen.clone(), handler.clone());
                    tokio::spawn(async move {
                        let Some(request) = read_head(&mut socket).await else { return };
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(request.clone());
                            seen.len() - 1
                        };
                        let reply = handler(index, &request);
                        let _ = write_reply(&mut socket, reply).await;
                    });
                }
            }
        });
        Scripted { url, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0).min(1024 * 1024);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match socket.read(&mut byte).await {
            Ok(n) if n > 0 => body.extend_from_slice(&byte[..n]),
            _ => break,
        }
    }
    body.truncate(length);
    Some(Seen { path, headers, body })
}

async fn write_reply(socket: &mut tokio::net::TcpStream, reply: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", reply.status);
    if !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("content-length: {}\r\n", reply.body.len()));
    }
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    let send = reply.cut_after.or(reply.stall_after.map(|s| s.0)).unwrap_or(reply.body.len()).min(reply.body.len());
    socket.write_all(&reply.body[..send]).await?;
    socket.flush().await?;
    if let Some((_, pause)) = reply.stall_after {
        tokio::time::sleep(pause).await;
    }
    socket.shutdown().await
}

/// A listener that only counts connections: proof that nothing reached a denied address.
pub struct Tripwire {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    pub async fn on(ip: &str) -> Tripwire {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    drop(socket);
                }
            }
        });
        Tripwire { port, connections, task }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}
