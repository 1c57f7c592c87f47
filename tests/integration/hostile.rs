//! Hostile clients, as an attacker without a key would be: invented methods and paths, sockets that say
//! nothing or half of the HTTP/2 preface, bodies that stop halfway, and more connections than allowed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::*;

/// Sends raw bytes and reads until the server closes (or `wait` passes); returns what came back.
async fn exchange(addr: &str, request: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut reply)).await.ok().map(|_| reply)
}

fn status_line(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn invented_methods_and_paths_leave_the_metrics_and_memory_flat() {
    let server = Server::start();
    let addr = server.addr();
    exchange(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(10)).await;
    let rss_before = server.rss_kib();
    for i in 0..300 {
        let method = format!("X{i}{}", "M".repeat(60_000));
        let request = format!("{method} /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = exchange(&addr, request.as_bytes(), Duration::from_secs(10)).await.expect("answered");
        assert!(status_line(&reply).starts_with("HTTP/1.1 4"), "{}", status_line(&reply));
        let request = format!("GET /junk/{i}/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "p".repeat(2000));
        exchange(&addr, request.as_bytes(), Duration::from_secs(10)).await.expect("answered");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.len() < 64 * 1024, "/metrics grew to {} bytes", metrics.len());
    assert!(!metrics.contains("MMMM") && !metrics.contains("/junk/"), "a client-chosen label leaked");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    assert!(metrics.contains(r#"route="unmatched""#), "{metrics}");
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    assert!(grown_kib < 32 * 1024, "600 hostile requests grew the server by {grown_kib} KiB");
}

#[tokio::test]
async fn silent_and_half_preface_connections_are_closed_within_the_idle_timeout() {
    let server = Server::builder().env("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", 2).start();
    let openings: [&[u8]; 4] = [
        b"",                                 // nothing at all
        b"PRI * HTTP/2.0\r\n",               // half of the HTTP/2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", // the preface without the client's first frame
        b"GET /healthz HTTP/1.1\r\n",        // HTTP/1 headers that never end
    ];
    let mut sockets = Vec::new();
    for i in 0..24 {
        let mut socket = TcpStream::connect(server.addr()).await.unwrap();
        socket.write_all(openings[i % openings.len()]).await.unwrap();
        sockets.push(socket);
    }
    for (i, mut socket) in sockets.into_iter().enumerate() {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "socket {i} (opening {:?}) is still open", openings[i % openings.len()]);
    }
    let health = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_connection_limit_holds_new_clients_until_a_connection_closes() {
    let server =
        Server::builder().env("FILEGATE_MAX_CONNECTIONS", 3).env("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", 60).start();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    let url = format!("{}/healthz", server.url);
    let health = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!health.is_finished(), "a fourth connection waits while three are open");
    eventually(|| server.log().contains("connection limit reached"), "the limit is logged").await;
    drop(silent);
    let status = tokio::time::timeout(Duration::from_secs(10), health).await.expect("served once a slot is free");
    assert_eq!(status.unwrap().unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stops_halfway_is_given_up_within_the_idle_timeout_on_every_route() {
    let server = Server::builder().env("FILEGATE_REQUEST_IDLE_TIMEOUT_SECONDS", 1).start();
    let upload_url = server.gemini(ALPHA_KEY).start_ok(1000, json!({})).await;
    let upload_path = format!("/{}", upload_url.splitn(4, '/').nth(3).unwrap());
    let key = format!("x-goog-api-key: {ALPHA_KEY}\r\n");
    let cases = [
        (
            "resumable start",
            "/upload/v1beta/files",
            format!(
                "{key}X-Goog-Upload-Protocol: resumable\r\nX-Goog-Upload-Command: start\r\nX-Goog-Upload-Header-Content-Length: 5\r\nContent-Type: application/json\r\n"
            ),
            "{\"file\": {",
        ),
        (
            "import create",
            "/v1/files",
            format!("Authorization: {ALPHA_KEY}\r\nContent-Type: application/json\r\n"),
            "{\"source_url\":",
        ),
        (
            "multipart metadata",
            "/upload/v1beta/files?uploadType=multipart",
            format!("{key}Content-Type: multipart/related; boundary=XYZ\r\n"),
            "--XYZ\r\nContent-Type: application/json\r\n\r\n{\"file\"",
        ),
        ("raw media", "/upload/v1beta/files", format!("{key}X-Goog-Upload-Protocol: raw\r\n"), "some bytes"),
        (
            "chunk",
            upload_path.as_str(),
            "X-Goog-Upload-Command: upload\r\nX-Goog-Upload-Offset: 0\r\n".to_owned(),
            "some bytes",
        ),
    ];
    for (what, path, headers, partial_body) in cases {
        let request = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 1000\r\n\r\n{partial_body}");
        let reply = exchange(&server.addr(), request.as_bytes(), Duration::from_secs(15)).await;
        let reply = reply.unwrap_or_else(|| panic!("{what}: the server still waits for the body"));
        assert!(status_line(&reply).starts_with("HTTP/1.1 408"), "{what}: {}", String::from_utf8_lossy(&reply));
    }
    let query = server.gemini(ALPHA_KEY).command(&upload_url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some("0"), "nothing of the stalled chunk is kept");
    assert!(!server.log().contains("internal error"), "{}", server.log());
}

#[tokio::test]
async fn an_error_answered_before_the_body_is_read_reaches_a_client_still_sending_it() {
    // A chunk for an upload that does not exist is refused before its 8 MiB are read. Closing the socket on
    // the unread bytes would reset the connection, and the client, still writing, would see "broken pipe"
    // instead of the 404: the server reads the rest first. The connection is then reused.
    let server = Server::start();
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let url = format!("{}/upload/v1beta/files?upload_id=no-such-upload&upload_protocol=resumable", server.url);
    for _ in 0..10 {
        let reply = http
            .post(&url)
            .header("X-Goog-Upload-Command", "upload")
            .header("X-Goog-Upload-Offset", "0")
            .body(vec![7u8; CHUNK])
            .send()
            .await
            .expect("the reply arrives, not a reset");
        assert_eq!(reply.status(), StatusCode::NOT_FOUND);
        assert!(reply.headers().get("connection").is_none(), "the connection stays usable");
        reply.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn a_body_trickled_below_the_minimum_rate_is_dropped_and_a_slow_steady_one_is_served() {
    let server = Server::builder().env("FILEGATE_REQUEST_MIN_BYTES_PER_SECOND", 200).start();
    let addr = server.addr();
    let url = server.gemini(ALPHA_KEY).start_ok(1_000_000, json!({})).await;
    let path = url.splitn(4, '/').nth(3).unwrap().to_owned();
    let head = |len: usize| {
        format!(
            "POST /{path} HTTP/1.1\r\nHost: x\r\nx-goog-upload-command: upload\r\nx-goog-upload-offset: 0\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };
    // One byte every second: far under 200 bytes per second, though never idle for long.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    trickle.write_all(head(1_000_000).as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut reply = Vec::new();
    loop {
        if trickle.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(1), trickle.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the trickle was never dropped");
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("less than 200 bytes per second"), "{reply}");
    assert!(started.elapsed() >= Duration::from_secs(10), "measured over a whole window");

    // 2 000 bytes every second for 12 s: slow, but above the minimum, so it is served.
    let mut steady = TcpStream::connect(&addr).await.unwrap();
    steady.write_all(head(24_000).as_bytes()).await.unwrap();
    for _ in 0..12 {
        steady.write_all(&[b'y'; 2000]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), steady.read(&mut buf)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-goog-upload-size-received: 24000"), "{reply}");
}

/// Sends `head`, then `filler` bytes of `byte` (a part's header that never ends), then `tail`, on one
/// connection, while reading the reply; returns the reply (whatever arrived before the server closed).
async fn send_while_reading(addr: &str, head: Vec<u8>, filler: usize, tail: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&head).await?;
        let block = vec![b'n'; 1 << 20];
        let mut sent = 0;
        while sent < filler {
            let n = block.len().min(filler - sent);
            write.write_all(&block[..n]).await?;
            sent += n;
        }
        write.write_all(&tail).await
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), read.read_to_end(&mut reply)).await;
    writer.abort();
    reply
}

#[tokio::test]
async fn a_part_header_without_end_is_refused_at_its_limit_and_nothing_is_kept() {
    let server = Server::start();
    let before = server.rss_kib();
    let filler = 64 << 20;
    for (path, headers, part) in [
        (
            "/v1/files",
            format!("Authorization: Bearer {ALPHA_KEY}\r\nContent-Type: multipart/form-data; boundary=b\r\n"),
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"",
        ),
        (
            "/upload/v1beta/files?uploadType=multipart",
            format!("x-goog-api-key: {ALPHA_KEY}\r\nContent-Type: multipart/related; boundary=b\r\n"),
            "--b\r\nContent-Type: application/json\r\nX-Long: ",
        ),
    ] {
        let tail = "\"\r\n\r\nx\r\n--b--\r\n";
        let length = part.len() + filler + tail.len();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {length}\r\n\r\n{part}",
            server.addr()
        );
        let reply = send_while_reading(&server.addr(), head.into_bytes(), filler, tail.as_bytes().to_vec()).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(status_line(&reply).contains(" 400 "), "{path}: {text}");
        assert!(text.contains("larger than 16384 bytes"), "{path}: the answer names the limit: {text}");
    }
    let peak = server.peak_rss_kib();
    assert!(peak < before + 48 * 1024, "64 MiB headers were held: {before} KiB before, {peak} KiB at the peak");
    let listed = json_of(server.gemini(ALPHA_KEY).get("v1beta/files").await, StatusCode::OK).await;
    assert!(listed.get("files").is_none(), "nothing was kept: {listed}");
}
