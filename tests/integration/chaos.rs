//! Network faults between filegate and each of its dependencies, played by a proxy in the test tree
//! (`faultproxy.rs`): PostgreSQL that stops answering without closing anything (for one node of two, which
//! holds a lease), a bucket that resets its connections mid-part or is far away, the model upstream
//! vanishing, webhook receivers that reset or vanish, an import source that resets mid-body. Each test
//! checks what a client and an operator see — no 500, no request over its bound, readiness telling the
//! truth within a second, other work going on at its pace — and that everything acknowledged is intact,
//! every transfer finishes and every event is told once the fault ends.
//!
//! `peer_` tests do not depend on where filegate keeps its data and run once; `postgres_`, `s3_` and
//! `two_nodes_` tests run where their dependency is (`scripts/test.sh`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::faultproxy::{Fault, FaultProxy};
use crate::support::*;

/// The address of the PostgreSQL server the run tests on.
pub(crate) fn postgres_address() -> SocketAddr {
    let admin = std::env::var("FILEGATE_TEST_POSTGRES_URL").expect("the run's PostgreSQL");
    let url = url::Url::parse(&admin).unwrap();
    let host = url.host_str().unwrap().trim_matches(['[', ']']).parse().expect("PostgreSQL on an IP address");
    SocketAddr::new(host, url.port().unwrap_or(5432))
}

/// The address of the run's S3 server (moto).
pub(crate) fn s3_address() -> SocketAddr {
    let endpoint = std::env::var("AWS_ENDPOINT").expect("the run's S3 endpoint");
    let url = url::Url::parse(&endpoint).unwrap();
    SocketAddr::new(url.host_str().unwrap().parse().unwrap(), url.port().unwrap())
}

/// A client that gives up on any answer after 20 s (a bound a test can fail on, not a hang).
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// `/readyz`'s status, asserting that it and `/healthz` both answer within a second.
async fn readiness(server: &Server) -> StatusCode {
    let asked = Instant::now();
    let ready = client().get(format!("{}/readyz", server.url)).send().await.unwrap();
    let alive = client().get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2), "/readyz and /healthz took {:?}", asked.elapsed());
    assert_eq!(alive.status(), StatusCode::OK, "alive whatever the database does");
    ready.status()
}

fn assert_no_500(server: &Server) {
    let log = server.log();
    assert!(!log.contains("status=500") && !log.contains("internal error"), "a 500 was answered:\n{log}");
}

#[tokio::test]
async fn postgres_blackholed_answers_503_within_seconds_and_recovers_at_once() {
    if std::env::var("FILEGATE_TEST_DATABASE").as_deref() != Ok("postgres") {
        return skip("needs PostgreSQL");
    }
    let proxy = FaultProxy::start(postgres_address());
    let server = Server::builder().database_via(proxy.addr).start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(2 * CHUNK + 100, 5);
    let upload = gemini.start_ok(bytes.len() as u64, json!({})).await;
    let first = gemini.command(&upload, "upload", Some(0), bytes[..CHUNK].to_vec()).await;
    assert_eq!(first.status(), StatusCode::OK);

    // A slow database is not a dead one: 200 ms each way, and requests still succeed.
    proxy.set(Fault::Latency(Duration::from_millis(200)));
    for _ in 0..3 {
        assert_eq!(gemini.get("v1beta/files").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    proxy.set(Fault::Blackhole);
    let dark = Instant::now();
    let mut answers = Vec::new();
    while dark.elapsed() < Duration::from_secs(12) {
        let asked = Instant::now();
        let listed = client()
            .get(format!("{}/v1beta/files", server.url))
            .header("x-goog-api-key", ALPHA_KEY)
            .send()
            .await
            .expect("an answer, not a hang");
        let took = asked.elapsed();
        assert_eq!(listed.status(), StatusCode::SERVICE_UNAVAILABLE, "after {:?}", asked - dark);
        assert!(listed.headers().get("retry-after").is_some(), "a 503 says when to come back");
        assert!(took < Duration::from_secs(10), "a request waited {took:?} for a dead database");
        if asked.duration_since(dark) > Duration::from_secs(5) {
            assert!(took < Duration::from_secs(1), "once the outage is known, requests fail fast: {took:?}");
            assert_eq!(readiness(&server).await, StatusCode::SERVICE_UNAVAILABLE, "not ready while it lasts");
        }
        answers.push(took);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(answers.len() >= 10, "requests were answered all along: {answers:?}");

    proxy.set(Fault::None);
    let light = Instant::now();
    loop {
        let listed = gemini.get("v1beta/files").await;
        if listed.status() == StatusCode::OK {
            break;
        }
        assert!(light.elapsed() < Duration::from_secs(5), "still {} after {:?}", listed.status(), light.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readiness(&server).await, StatusCode::OK);
    // The upload goes on from what was acknowledged before the outage.
    let query = gemini.command(&upload, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some(CHUNK.to_string().as_str()));
    let file = gemini.upload_chunks_from(&upload, &bytes, CHUNK).await;
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    assert_no_500(&server);
}

#[tokio::test]
async fn s3_connections_reset_mid_part_never_wedge_an_upload() {
    if std::env::var("FILEGATE_TEST_BLOBS").as_deref() != Ok("s3") {
        return skip("needs S3");
    }
    let proxy = FaultProxy::start(s3_address());
    let server = Server::builder().env("AWS_ENDPOINT", format!("http://{}", proxy.address())).start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(3 * CHUNK + 1000, 9);
    let upload = gemini.start_ok(bytes.len() as u64, json!({})).await;
    assert_eq!(gemini.command(&upload, "upload", Some(0), bytes[..CHUNK].to_vec()).await.status(), StatusCode::OK);

    // For a while, every connection to the bucket is reset 64 KiB into what filegate sends: mid-part.
    proxy.set(Fault::ResetAfter(64 * 1024));
    let faulty = Instant::now();
    while faulty.elapsed() < Duration::from_secs(6) {
        let chunk = gemini.command(&upload, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
        assert_eq!(chunk.status(), StatusCode::SERVICE_UNAVAILABLE, "retryable, never a 500");
        assert_eq!(header(&chunk, "x-goog-upload-status"), None, "so the SDKs resend the chunk");
    }

    // Healthy again, if slow (4 MiB/s): the very next attempt at the same chunk is stored, and the upload
    // finishes whole.
    proxy.set(Fault::Bandwidth(4 * MIB as u64));
    let resent = gemini.command(&upload, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
    assert_eq!(resent.status(), StatusCode::OK, "{}", resent.text().await.unwrap());
    proxy.set(Fault::None);
    let file = gemini.upload_chunks_from(&upload, &bytes, 2 * CHUNK).await;
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let downloaded = gemini.get(&format!("v1beta/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_no_500(&server);
}

#[tokio::test]
async fn s3_blackholed_answers_503_within_seconds_and_recovers_at_once() {
    if std::env::var("FILEGATE_TEST_BLOBS").as_deref() != Ok("s3") {
        return skip("needs S3");
    }
    let proxy = FaultProxy::start(s3_address());
    let server = Server::builder().env("AWS_ENDPOINT", format!("http://{}", proxy.address())).start();
    let gemini = server.gemini(ALPHA_KEY);
    let kept = gemini.upload(&data(1000, 1), json!({})).await;
    let bytes = data(2 * CHUNK + 100, 6);
    let upload = gemini.start_ok(bytes.len() as u64, json!({})).await;
    assert_eq!(gemini.command(&upload, "upload", Some(0), bytes[..CHUNK].to_vec()).await.status(), StatusCode::OK);

    proxy.set(Fault::Blackhole);
    let dark = Instant::now();
    let mut chunks = 0;
    while dark.elapsed() < Duration::from_secs(14) {
        let asked = Instant::now();
        let chunk = gemini.command(&upload, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
        let took = asked.elapsed();
        assert_eq!(chunk.status(), StatusCode::SERVICE_UNAVAILABLE, "after {:?}", asked - dark);
        assert!(chunk.headers().get("retry-after").is_some(), "a 503 says when to come back");
        assert!(took < Duration::from_secs(10), "a chunk waited {took:?} for a vanished bucket");
        if asked.duration_since(dark) > Duration::from_secs(7) {
            assert!(took < Duration::from_secs(1), "once the outage is known, chunks fail fast: {took:?}");
            assert_eq!(readiness(&server).await, StatusCode::SERVICE_UNAVAILABLE, "not ready while it lasts");
        }
        // What needs no bytes goes on.
        let light = Instant::now();
        let shown = gemini.get(&format!("v1beta/files/{}", file_id(&kept))).await;
        assert_eq!(shown.status(), StatusCode::OK);
        assert!(light.elapsed() < Duration::from_secs(1), "metadata waited for the bucket: {:?}", light.elapsed());
        chunks += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(chunks >= 3, "chunks were answered all along");

    proxy.set(Fault::None);
    let back = Instant::now();
    loop {
        let chunk = gemini.command(&upload, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
        if chunk.status() == StatusCode::OK {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "still {} after {:?}", chunk.status(), back.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(readiness(&server).await, StatusCode::OK);
    let file = gemini.upload_chunks_from(&upload, &bytes, 2 * CHUNK).await;
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    assert_no_500(&server);
}

/// Sends `bytes` through the upload at `url` as the SDKs do: chunk by chunk, each resent while the
/// answer is a retryable 503, alternating between `nodes` as a load balancer would; returns the file.
async fn upload_through(nodes: &[&Server], url: &str, bytes: &[u8]) -> serde_json::Value {
    let mut offset = 0;
    let mut turn = 0;
    loop {
        let end = (offset + CHUNK).min(bytes.len());
        let command = if end == bytes.len() { "upload, finalize" } else { "upload" };
        let node = nodes[turn % nodes.len()];
        turn += 1;
        let path = url.strip_prefix(&nodes[0].url).unwrap();
        let reply = node
            .gemini(ALPHA_KEY)
            .command(&format!("{}{path}", node.url), command, Some(offset as u64), bytes[offset..end].to_vec())
            .await;
        match reply.status() {
            StatusCode::OK if end == bytes.len() => {
                return reply.json::<serde_json::Value>().await.unwrap()["file"].clone();
            }
            StatusCode::OK => offset = end,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(header(&reply, "x-goog-upload-status"), None, "a 503 on a chunk is to be resent");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("chunk at {offset}: {other} {}", reply.text().await.unwrap()),
        }
    }
}

#[tokio::test]
async fn two_nodes_keep_four_uploads_going_through_bucket_resets_and_lose_nothing() {
    let first = Server::start();
    if !first.can_have_siblings() || std::env::var("FILEGATE_TEST_BLOBS").as_deref() != Ok("s3") {
        return skip("needs PostgreSQL and S3");
    }
    drop(first);
    let proxy = FaultProxy::start(s3_address());
    let a = Server::builder().env("AWS_ENDPOINT", format!("http://{}", proxy.address())).start();
    let b = a.sibling();
    let nodes = [&a, &b];
    let files: Vec<Vec<u8>> = (0..4).map(|i| data(3 * CHUNK + 1000 * i, 40 + i as u64)).collect();
    let mut urls = Vec::new();
    for bytes in &files {
        urls.push(a.gemini(ALPHA_KEY).start_ok(bytes.len() as u64, json!({})).await);
    }
    let faults = {
        let proxy = &proxy;
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            proxy.set(Fault::ResetAfter(256 * 1024));
            tokio::time::sleep(Duration::from_secs(10)).await;
            proxy.set(Fault::None);
            Instant::now()
        }
    };
    let uploads =
        futures_util::future::join_all(files.iter().zip(&urls).map(|(bytes, url)| upload_through(&nodes, url, bytes)));
    let (healed, done) = tokio::join!(faults, uploads);
    let finished = Instant::now();
    assert!(finished.duration_since(healed) < Duration::from_secs(60), "the uploads finished once the bucket healed");
    for (file, bytes) in done.iter().zip(&files) {
        assert_eq!(file["sha256Hash"], json!(sha256_b64(bytes)));
        let downloaded = b.gemini(ALPHA_KEY).get(&format!("v1beta/files/{}:download?alt=media", file_id(file))).await;
        assert_eq!(downloaded.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    assert_no_500(&a);
    assert_no_500(&b);
}

/// Where in an import a node is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Ranges are being fetched and part of the file is stored.
    RangesInFlight,
    /// Every byte has arrived and not all is stored.
    FetchedNotStored,
    /// Every byte is stored and the file is not ready yet.
    StoredNotFinished,
}

/// Runs an import on a node whose bucket goes through `proxy` until `point` is seen, then kills the node;
/// `None` when the import ended before the point was seen (the timing of a busy machine), else the id and
/// the node, dead.
async fn import_until(point: KillPoint, proxy: &FaultProxy, url: &str, total: u64) -> Option<(String, Server)> {
    let mut a = Server::builder()
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("FILEGATE_IMPORT_LEASE_SECONDS", 3)
        .env("AWS_ENDPOINT", format!("http://{}", proxy.address()))
        .start();
    // For the later points the bucket is far (1 s each way), so that they last long enough to be
    // seen; the first is seen while bytes still arrive.
    proxy.set(match point {
        KillPoint::RangesInFlight => Fault::None,
        _ => Fault::Latency(Duration::from_secs(1)),
    });
    let importer = a.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=4m"), "model": "m"})).await;
    let started = Instant::now();
    loop {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        if task["status"] != "pending" && task["status"] != "processing" {
            eprintln!("{point:?} not seen: the import ended first: {task}");
            return None;
        }
        let progress = &task["progress"];
        let (received, stored) =
            (progress["received_bytes"].as_u64().unwrap(), progress["stored_bytes"].as_u64().unwrap());
        let here = match point {
            KillPoint::RangesInFlight => stored >= 8 * MIB as u64 && received > stored && received < total,
            KillPoint::FetchedNotStored => received == total && stored < total,
            KillPoint::StoredNotFinished => stored == total,
        };
        if here {
            a.kill9();
            return Some((id, a));
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{point:?}: the import stands still: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_an_import_taken_over_after_a_kill_at_any_point_ends_ready_with_its_digest() {
    let probe = Server::start();
    if !probe.can_have_siblings() || std::env::var("FILEGATE_TEST_BLOBS").as_deref() != Ok("s3") {
        return skip("needs PostgreSQL and S3");
    }
    drop(probe);
    let nginx = crate::sources::Nginx::start();
    let bytes = data(24_000_000, 83);
    let url = nginx.put("takeover-points.bin", &bytes);
    for point in [KillPoint::RangesInFlight, KillPoint::FetchedNotStored, KillPoint::StoredNotFinished] {
        // Node A reaches the bucket through a proxy that can slow its stores down; node B directly.
        let proxy = FaultProxy::start(s3_address());
        let mut seen = None;
        for _ in 0..3 {
            seen = import_until(point, &proxy, &url, bytes.len() as u64).await;
            if seen.is_some() {
                break;
            }
        }
        let (id, a) = seen.unwrap_or_else(|| panic!("{point:?} was never seen in three imports"));
        let b = a.sibling_with(&[("AWS_ENDPOINT", std::env::var("AWS_ENDPOINT").unwrap())]);
        let task = b.importer(ALPHA_KEY).settle(&id).await;
        assert_eq!(task["status"], "ready", "{point:?}: {task}");
        assert_eq!(task["sha256"], json!(sha256_hex(&bytes)), "{point:?}");
        let downloaded = b.gemini(ALPHA_KEY).get(&format!("v1beta/files/{}:download?alt=media", &id[6..])).await;
        assert_eq!(downloaded.bytes().await.unwrap().as_ref(), bytes.as_slice(), "{point:?}");
        assert_no_500(&b);
    }
}

/// The address of a `http://127.0.0.1:port` URL.
fn address_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    SocketAddr::new(url.host_str().unwrap().parse().unwrap(), url.port().unwrap())
}

#[tokio::test]
async fn peer_upstream_blackholed_costs_a_bounded_error_and_nothing_else() {
    let fake = crate::fake_google::FakeGoogle::start(&[]);
    let proxy = FaultProxy::start(address_of(&fake.url));
    let server = crate::model::gemini_api(&fake)
        .env("FILEGATE_GEMINI_ENDPOINT", format!("http://{}", proxy.address()))
        .env("FILEGATE_UPSTREAM_IDLE_TIMEOUT_SECONDS", 3)
        .start();
    let path = "v1beta/models/gemini-test:generateContent";
    let ask = json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]});
    assert_eq!(crate::model::call(&server, ALPHA_KEY, path, ask.clone()).await.status(), StatusCode::OK);

    proxy.set(Fault::Blackhole);
    let asked = Instant::now();
    let call = tokio::spawn({
        let (url, ask) = (server.url.clone(), ask.clone());
        async move {
            let answer = client().post(format!("{url}/{path}")).header("x-goog-api-key", ALPHA_KEY).json(&ask).send();
            answer.await.unwrap().status()
        }
    });
    // Meanwhile what needs no upstream goes on at its usual pace.
    let gemini = server.gemini(ALPHA_KEY);
    let light = Instant::now();
    gemini.upload(&data(1000, 1), json!({})).await;
    assert_eq!(gemini.get("v1beta/files").await.status(), StatusCode::OK);
    assert!(light.elapsed() < Duration::from_secs(2), "files waited for the upstream: {:?}", light.elapsed());
    let status = call.await.unwrap();
    // The bound: the idle timeout on a pooled connection, the connect timeout (10 s) on a new one.
    assert!(asked.elapsed() < Duration::from_secs(12), "the call took {:?}", asked.elapsed());
    assert!(status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT, "{status}");

    proxy.set(Fault::None);
    let back = Instant::now();
    assert_eq!(crate::model::call(&server, ALPHA_KEY, path, ask).await.status(), StatusCode::OK);
    assert!(back.elapsed() < Duration::from_secs(5), "recovered in {:?}", back.elapsed());
    assert_no_500(&server);
}

#[tokio::test]
async fn peer_webhook_receivers_that_reset_or_vanish_are_told_each_event_exactly_once() {
    use crate::sources::{Reply, Scripted};
    let receiver = Scripted::start(|_, _| Reply::new(200, b"{}".to_vec())).await;
    let proxy = FaultProxy::start(address_of(&receiver.url));
    let server = Server::builder()
        .env("FILEGATE_WEBHOOK_ALLOW_HTTP", "true")
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("FILEGATE_WEBHOOK_FIRST_RETRY_MS", 300)
        .env("FILEGATE_WEBHOOK_TIMEOUT_SECONDS", 2)
        .start();
    let gemini = server.gemini(ALPHA_KEY);
    let hook = json!({"uri": format!("http://{}/hook", proxy.address()), "subscribedEvents": ["file.active"]});
    let made = client()
        .post(format!("{}/v1beta/webhooks", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);

    // Connections to the receiver reset a little way into each delivery, then the receiver vanishes.
    let mut files = std::collections::BTreeSet::new();
    for (fault, seed) in [(Fault::ResetAfter(700), 0), (Fault::Blackhole, 100)] {
        proxy.set(fault);
        for i in 0..8 {
            let started = Instant::now();
            let file = gemini.upload(&data(500, seed + i), json!({})).await;
            assert!(started.elapsed() < Duration::from_secs(2), "an upload waited for the receiver");
            files.insert(file["name"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    proxy.set(Fault::None);

    // Told once each after deduplication by webhook-id: every file, none invented.
    let told = || {
        let mut told = std::collections::BTreeMap::new();
        for seen in receiver.requests() {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&seen.body) else { continue };
            let id = seen.headers.get("webhook-id").cloned().unwrap_or_default();
            assert_eq!(event["id"], json!(id), "the body's id is the webhook-id");
            told.insert(id, event["data"]["file"]["name"].as_str().unwrap_or_default().to_owned());
        }
        told
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while told().len() < files.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let told: std::collections::BTreeSet<String> = told().into_values().collect();
    assert_eq!(told, files, "each file told, after deduplication, exactly once");
    assert!(receiver.requests().len() > files.len(), "the faults made filegate resend some");
    assert_no_500(&server);
}

#[tokio::test]
async fn peer_import_source_resetting_mid_body_is_resumed_with_ranges_and_ends_ready() {
    let nginx = crate::sources::Nginx::start();
    let bytes = data(24_000_000, 91);
    let direct = nginx.put("resets.bin", &bytes);
    let proxy = FaultProxy::start(address_of(&direct));
    let mut through = url::Url::parse(&direct).unwrap();
    through.set_port(Some(proxy.addr.port())).unwrap();
    let server = Server::builder().env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32").start();

    // Every connection to the source is reset after 3 MB (the body is 24), for a while.
    proxy.set(Fault::ResetAfter(3_000_000));
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": through.as_str(), "model": "m"})).await;
    // The fault lasts until the source has seen its connections cut twice (nginx logs each as it ends).
    eventually(|| nginx.requests("resets.bin").len() >= 2, "the source's connections cut twice").await;
    proxy.set(Fault::None);
    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));
    let requests = nginx.requests("resets.bin");
    assert!(requests.iter().skip(1).any(|(status, _)| *status == 206), "resumed with Range: {requests:?}");
    let sent: u64 = requests.iter().map(|(_, sent)| sent).sum();
    assert!(sent < 3 * bytes.len() as u64, "never started over each time: {sent} bytes for {requests:?}");
    assert_no_500(&server);
}

#[tokio::test]
async fn two_nodes_a_node_cut_from_the_database_loses_its_import_and_its_stale_lease_commits_nothing() {
    let probe = Server::start();
    if !probe.can_have_siblings() {
        return skip("needs PostgreSQL and a bucket");
    }
    drop(probe);
    let nginx = crate::sources::Nginx::start();
    let bytes = data(24_000_000, 57);
    let url = nginx.put("cut-off.bin", &bytes);
    // Node A reaches the database through a proxy; node B directly.
    let proxy = FaultProxy::start(postgres_address());
    let a = Server::builder()
        .database_via(proxy.addr)
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("FILEGATE_IMPORT_LEASE_SECONDS", 3)
        .start();
    let importer = a.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=2m"), "model": "m"})).await;
    loop {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        if task["progress"]["received_bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A holds the lease and is cut off from the database: B takes the import over and finishes it.
    proxy.set(Fault::Blackhole);
    let b = a.sibling_with(&[("FILEGATE_DATABASE_URL", a.database().url().unwrap())]);
    let task = b.importer(ALPHA_KEY).settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));

    // A comes back: whatever it still held commits nothing over B's work.
    proxy.set(Fault::None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let task = json_of(b.importer(ALPHA_KEY).get(&id, None).await, StatusCode::OK).await;
    assert_eq!((task["status"].as_str(), task["bytes"].as_u64()), (Some("ready"), Some(bytes.len() as u64)));
    for node in [&a, &b] {
        let read = node.gemini(ALPHA_KEY).get(&format!("v1beta/files/{}:download?alt=media", &id[6..])).await;
        assert_eq!(read.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    assert!(b.log().contains("attempt=2"), "node B ran the second attempt");
    assert_no_500(&a);
    assert_no_500(&b);
}
