//! Expiry, crashes, restarts and shutdown.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_crash_mid_chunk_keeps_exactly_the_acknowledged_bytes_and_the_upload_completes() {
    let mut server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(4 * CHUNK + 12_345, 42);
    let url = gemini.start_ok(bytes.len() as u64, json!({"file": {"displayName": "survivor"}})).await;
    for i in 0..3 {
        let resp =
            gemini.command(&url, "upload", Some((i * CHUNK) as u64), bytes[i * CHUNK..(i + 1) * CHUNK].to_vec()).await;
        assert_eq!(header(&resp, "x-goog-upload-status"), Some("active"));
    }

    // The fourth chunk is half sent when the server dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(bytes[3 * CHUNK..3 * CHUNK + CHUNK / 2].to_vec())).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let in_flight = tokio::spawn(
        gemini
            .http
            .post(&url)
            .header("X-Goog-Upload-Command", "upload")
            .header("X-Goog-Upload-Offset", (3 * CHUNK).to_string())
            .header("Content-Length", CHUNK.to_string())
            .body(body)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill9();
    assert!(in_flight.await.unwrap().is_err(), "the interrupted request got no reply");
    drop(tx);

    server.restart();
    let gemini = server.gemini(ALPHA_KEY);
    let url = format!("{}/{}", server.url, url.splitn(4, '/').nth(3).unwrap());
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(query.status(), StatusCode::OK);
    assert_eq!(header(&query, "x-goog-upload-status"), Some("active"));
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some((3 * CHUNK).to_string().as_str()));

    let done = gemini.command(&url, "upload, finalize", Some((3 * CHUNK) as u64), bytes[3 * CHUNK..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let download = gemini.get(&format!("v1/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(sha256_b64(&download.bytes().await.unwrap()), sha256_b64(&bytes));
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[tokio::test]
async fn expired_files_and_abandoned_uploads_vanish_with_their_bytes_and_quota() {
    // The lifetime leaves the setup below several seconds however busy the machine is (16 tests at once
    // on a bucket took more than the 2 s it once had), and the wait is counted from before the first
    // upload, not from after the last step.
    const TTL: u64 = 6;
    let server = Server::builder()
        .env("FILEGATE_DEFAULT_TTL_SECONDS", TTL)
        .env("FILEGATE_SWEEP_INTERVAL_SECONDS", 1)
        .env("FILEGATE_PROJECT_QUOTA_BYTES", 3000)
        .start();
    let gemini = server.gemini(ALPHA_KEY);
    let born = std::time::Instant::now();
    let file = gemini.upload(&data(1000, 1), json!({"file": {"name": "short-lived"}})).await;
    let abandoned = gemini.start_ok(2000, json!({})).await;
    let last_born = std::time::Instant::now();
    gemini.command(&abandoned, "upload", Some(0), data(500, 2)).await;
    let refused = gemini.start(1, json!({})).await;
    assert!(born.elapsed() < Duration::from_secs(TTL), "the setup outlived the files' lifetime: {:?}", born.elapsed());
    assert_eq!(rpc_error(refused).await.0, 429, "quota full while both live");

    tokio::time::sleep(
        (last_born + Duration::from_secs(TTL) + Duration::from_millis(500))
            .saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    let (status, _, _) = rpc_error(gemini.get(&format!("v1/files/{}", file_id(&file))).await).await;
    assert_eq!(status, 403);
    assert!(json_of(gemini.get("v1/files").await, StatusCode::OK).await.get("files").is_none());
    let resp = gemini.command(&abandoned, "query", None, vec![]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The janitor sweeps every second; give it a few under load.
    eventually(|| server.files_under("blobs").is_empty(), "expired and abandoned bytes are deleted").await;
    gemini.upload(&data(3000, 3), json!({"file": {"name": "short-lived"}})).await;
}

#[tokio::test]
async fn a_restart_removes_bytes_the_database_does_not_know_and_keeps_the_rest() {
    // The local disk only: a shared bucket is never listed (another node's open uploads would look like
    // orphans), its cleanup is driven from the database.
    let mut server = Server::builder().on_local_disk().start();
    let gemini = server.gemini(ALPHA_KEY);
    let kept = gemini.upload(&data(2000, 1), json!({})).await;
    let open = gemini.start_ok(100, json!({})).await;
    gemini.command(&open, "upload", Some(0), data(40, 2)).await;
    std::fs::write(server.data_dir.join("blobs/staging/orphan"), b"left by a crash").unwrap();
    std::fs::create_dir_all(server.data_dir.join("blobs/files/alpha")).unwrap();
    std::fs::write(server.data_dir.join("blobs/files/alpha/orphan.abc"), b"left by a crash").unwrap();

    server.restart();
    assert_eq!(server.files_under("blobs/files").len(), 1);
    assert_eq!(server.files_under("blobs/staging").len(), 1, "the open upload keeps its staging file");
    let gemini = server.gemini(ALPHA_KEY);
    let download = gemini.get(&format!("v1/files/{}:download", file_id(&kept))).await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), data(2000, 1).as_slice());
    let open = format!("{}/{}", server.url, open.splitn(4, '/').nth(3).unwrap());
    let file =
        json_of(gemini.command(&open, "upload, finalize", Some(40), data(100, 2)[..60].to_vec()).await, StatusCode::OK)
            .await;
    assert_eq!(file["file"]["sizeBytes"], "100");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    server.gemini(ALPHA_KEY).upload(b"x", json!({})).await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[tokio::test]
async fn a_client_that_goes_silent_is_dropped_and_its_half_chunk_is_not_committed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = Server::builder().env("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", 1).start();
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();

    // Headers that never end.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection is closed after the idle timeout");

    // A chunk whose body stops halfway.
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(1000, json!({})).await;
    let path = url.splitn(4, '/').nth(3).unwrap();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: x\r\nX-Goog-Upload-Command: upload, finalize\r\nX-Goog-Upload-Offset: 0\r\nContent-Length: 1000\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&data(1000, 1)[..500]).await.unwrap();
    let mut reply = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut reply)).await;
    assert!(answered.is_ok(), "the server gives up on the silent body");
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some("0"), "half a chunk is never acknowledged");
    let done = gemini.command(&url, "upload, finalize", Some(0), data(1000, 1)).await;
    assert_eq!(done.status(), StatusCode::OK);
}
