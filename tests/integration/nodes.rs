//! Several nodes of one deployment (PostgreSQL and a bucket; the PostgreSQL + S3 run of `scripts/test.sh`):
//! the chunks of one upload alternate between nodes, two requests race on one offset, and an import whose
//! node is killed is taken over by another and finished without fetching the source twice.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::sources::Nginx;
use crate::support::*;

/// The same upload URL on another node (as a load balancer would route it).
fn on(node: &Server, upload_url: &str) -> String {
    format!("{}/{}", node.url, upload_url.splitn(4, '/').nth(3).unwrap())
}

#[tokio::test]
async fn the_chunks_of_one_upload_may_alternate_between_nodes() {
    let a = Server::start();
    if !a.can_have_siblings() {
        return skip("several nodes need PostgreSQL and a bucket");
    }
    let b = a.sibling();
    let (ga, gb) = (a.gemini(ALPHA_KEY), b.gemini(ALPHA_KEY));
    let bytes = data(4 * CHUNK + 777, 61);
    let url = ga.start_ok(bytes.len() as u64, json!({"file": {"displayName": "two nodes"}})).await;
    for i in 0..4 {
        let (node, client) = if i % 2 == 0 { (&a, &ga) } else { (&b, &gb) };
        let chunk = bytes[i * CHUNK..(i + 1) * CHUNK].to_vec();
        let resp = client.command(&on(node, &url), "upload", Some((i * CHUNK) as u64), chunk).await;
        assert_eq!(resp.status(), StatusCode::OK, "chunk {i}");
        for (n, c) in [(&a, &ga), (&b, &gb)] {
            let query = c.command(&on(n, &url), "query", None, vec![]).await;
            let expected = ((i + 1) * CHUNK).to_string();
            assert_eq!(header(&query, "x-goog-upload-size-received"), Some(expected.as_str()), "both nodes agree");
        }
    }
    let done =
        gb.command(&on(&b, &url), "upload, finalize", Some((4 * CHUNK) as u64), bytes[4 * CHUNK..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let download = ga.get(&format!("v1/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    eventually(|| a.files_under("blobs/staging").is_empty(), "no tail and no open upload is left").await;
}

#[tokio::test]
async fn two_requests_racing_at_one_offset_on_two_nodes_leave_one_winner() {
    let a = Server::start();
    if !a.can_have_siblings() {
        return skip("several nodes need PostgreSQL and a bucket");
    }
    let b = a.sibling();
    let (ga, gb) = (a.gemini(ALPHA_KEY), b.gemini(ALPHA_KEY));
    let winner_bytes = data(2 * CHUNK, 71);
    let other_bytes = data(CHUNK, 72);
    let url = ga.start_ok(winner_bytes.len() as u64, json!({})).await;
    let (url_a, url_b) = (on(&a, &url), on(&b, &url));
    let (first, second) = tokio::join!(
        ga.command(&url_a, "upload", Some(0), winner_bytes[..CHUNK].to_vec()),
        gb.command(&url_b, "upload", Some(0), other_bytes.clone()),
    );
    let statuses = [first.status(), second.status()];
    assert!(statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");
    let loser = if first.status() == StatusCode::CONFLICT { &first } else { &second };
    assert_eq!(header(loser, "x-goog-upload-status"), Some("final"), "the protocol's answer to a different resend");
    let a_won = first.status() == StatusCode::OK;
    let bytes =
        if a_won { winner_bytes.clone() } else { [other_bytes.clone(), winner_bytes[CHUNK..].to_vec()].concat() };
    let done = ga.command(&on(&a, &url), "upload, finalize", Some(CHUNK as u64), bytes[CHUNK..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)), "the winner's bytes, whole");
    let download = gb.get(&format!("v1/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn a_node_killed_mid_import_is_taken_over_and_the_source_is_read_once() {
    let lease = 3;
    let mut a = Server::builder()
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("FILEGATE_IMPORT_LEASE_SECONDS", lease)
        .start();
    if !a.can_have_siblings() {
        return skip("several nodes need PostgreSQL and a bucket");
    }
    let nginx = Nginx::start();
    let bytes = data(24 * MIB + 5, 81);
    let url = nginx.put("takeover.bin", &bytes);
    let importer = a.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=4m"), "model": "m"})).await;
    // Node A fetches until at least one part is stored, then dies.
    let mut received = 0;
    for _ in 0..100 {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        received = task["progress"]["stored_bytes"].as_u64().unwrap();
        if received >= 8 * MIB as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(received >= 8 * MIB as u64, "node A stored a part before it died");
    let b = a.sibling();
    a.kill9();
    let taken_over = std::time::Instant::now();
    let task = b.importer(ALPHA_KEY).settle(&id).await;
    let warned: Vec<String> = b.log().lines().filter(|l| l.contains("WARN")).map(str::to_owned).collect();
    assert_eq!(task["status"], "ready", "{task}\n{}", warned.join("\n"));
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));
    assert!(taken_over.elapsed() < Duration::from_secs(60), "taken over and finished");
    assert!(b.log().contains("attempt=2"), "node B ran the second attempt");
    // Node B asked the source for the rest only: a 206 for fewer bytes than the file, or, when node A had
    // stored every byte before it died, a 416 that says there is nothing after them.
    let requests = nginx.requests("takeover.bin");
    let (status, sent) = *requests.last().unwrap();
    assert!(status == 206 || status == 416, "taken over with Range, not started over: {requests:?}");
    assert!(
        status == 416 || sent <= (bytes.len() - 8 * MIB) as u64,
        "node A's stored part was not fetched again: {requests:?}"
    );
}

#[tokio::test]
async fn chunks_that_are_not_whole_parts_leave_a_tail_any_node_continues_even_after_a_crash() {
    let mut a = Server::start();
    if !a.can_have_siblings() {
        return skip("several nodes need PostgreSQL and a bucket");
    }
    let b = a.sibling();
    let bytes = data(3 * 3 * MIB + 11, 91);
    let url = a.gemini(ALPHA_KEY).start_ok(bytes.len() as u64, json!({})).await;
    // 3 MiB chunks: every one ends mid-part, so the bytes after the last full part wait as a tail object.
    let first = a.gemini(ALPHA_KEY).command(&on(&a, &url), "upload", Some(0), bytes[..3 * MIB].to_vec()).await;
    assert_eq!(first.status(), StatusCode::OK);
    a.kill9(); // the node that stored the tail is gone
    let gb = b.gemini(ALPHA_KEY);
    let resp = gb.command(&on(&b, &url), "upload", Some(3 * MIB as u64), bytes[3 * MIB..6 * MIB].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let done = gb.command(&on(&b, &url), "upload, finalize", Some(6 * MIB as u64), bytes[6 * MIB..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let download = gb.get(&format!("v1/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    eventually(|| b.files_under("blobs/staging").is_empty(), "tails and the upload are gone").await;
}

#[tokio::test]
async fn a_slow_request_keeps_its_claim_and_the_racer_on_another_node_is_told_the_offset_is_taken() {
    // Claims last 3 s unless renewed; the slow client pauses longer than that halfway through its chunk.
    let a = Server::builder().env("FILEGATE_UPLOAD_CLAIM_SECONDS", 3).start();
    if !a.can_have_siblings() {
        return skip("several nodes need PostgreSQL and a bucket");
    }
    let b = a.sibling();
    let (ga, gb) = (a.gemini(ALPHA_KEY), b.gemini(ALPHA_KEY));
    let slow_bytes = data(CHUNK, 101);
    let fast_bytes = data(CHUNK, 102);
    let url = ga.start_ok(2 * CHUNK as u64, json!({})).await;
    let (slow_tx, slow_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let slow = {
        let url = on(&a, &url);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("x-goog-upload-command", "upload")
                .header("x-goog-upload-offset", "0")
                .header("content-length", CHUNK.to_string())
                .body(reqwest::Body::wrap_stream(futures_util::stream::unfold(slow_rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                })))
                .send()
                .await
                .unwrap()
        })
    };
    slow_tx.send(Ok(slow_bytes[..CHUNK / 2].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // node A holds the claim now
    let racer = tokio::spawn({
        let url = on(&b, &url);
        let bytes = fast_bytes.clone();
        async move { gb.command(&url, "upload", Some(0), bytes).await }
    });
    tokio::time::sleep(Duration::from_secs(7)).await; // more than two claim lengths
    slow_tx.send(Ok(slow_bytes[CHUNK / 2..].to_vec())).await.unwrap();
    drop(slow_tx);
    let (slow, racer) = (slow.await.unwrap(), racer.await.unwrap());
    assert_eq!(slow.status(), StatusCode::OK, "the slow request kept its claim: {:?}", slow.text().await);
    assert_eq!(racer.status(), StatusCode::CONFLICT, "the racer waited, then found the offset taken");
    assert_eq!(header(&racer, "x-goog-upload-status"), Some("final"));
    let done = ga.command(&on(&a, &url), "upload, finalize", Some(CHUNK as u64), fast_bytes.clone()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&[slow_bytes, fast_bytes].concat())), "the slow request's bytes");
}
