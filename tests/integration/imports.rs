//! URL import (`POST /v1/files`): fetch, resume, retries, limits, SSRF guard, idempotency, crash.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sources::{Nginx, Reply, Scripted, Tripwire};
use crate::support::*;

fn import_server() -> ServerBuilder {
    Server::builder().env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
}

async fn error_of(resp: reqwest::Response, status: StatusCode) -> (String, String) {
    let body = json_of(resp, status).await;
    let error = &body["error"];
    assert!(error["type"].is_string(), "{body}");
    (error["code"].as_str().unwrap().to_owned(), error["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_import_from_nginx_becomes_a_ready_gemini_file_with_the_right_digest() {
    let nginx = Nginx::start();
    let bytes = data(20 * MIB + 333, 1);
    let url = nginx.put("lecture.mp4", &bytes);
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);

    let created = json_of(
        importer
            .create(
                json!({"source_url": format!("{url}?rate=2m"), "model": "gemini-3.0-pro-preview", "expires_in": 3600}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["model"], "gemini-3.0-pro-preview");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("qfile-") && id.len() <= 40, "{id}");
    assert_eq!(created["expires_at"].as_i64().unwrap() - created["created_at"].as_i64().unwrap(), 3600);

    // While it runs, the Gemini view says PROCESSING: looked at once its first bytes have arrived. (2 MiB/s
    // per connection: with its 4 ranged connections the import takes ~2.6 s after that.)
    let gemini_id = id.strip_prefix("qfile-").unwrap().to_owned();
    let asked = std::time::Instant::now();
    loop {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        assert!(task["status"] == "pending" || task["status"] == "processing", "ended before a look: {task}");
        if task["progress"]["received_bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(asked.elapsed() < Duration::from_secs(30), "no byte arrived: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during =
        json_of(server.gemini(ALPHA_KEY).get(&format!("v1beta/files/{gemini_id}")).await, StatusCode::OK).await;
    assert_eq!(during["state"], "PROCESSING", "{during}");

    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["bytes"], json!(bytes.len()));
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));
    assert_eq!(task["mime_type"], "video/mp4");
    assert_eq!(task["filename"], "lecture.mp4");
    assert_eq!(
        task["progress"],
        json!({"received_bytes": bytes.len(), "stored_bytes": bytes.len(), "total_bytes": bytes.len()})
    );
    assert_eq!(task["gemini_file"]["name"], json!(format!("files/{gemini_id}")));
    assert_eq!(task["error"], Value::Null);
    match server.storage_prefix() {
        None => assert_eq!(task["storage_uri"], Value::Null),
        Some(prefix) => {
            assert!(task["storage_uri"].as_str().unwrap().starts_with(&format!("{prefix}alpha/{gemini_id}.")), "{task}")
        }
    }

    let gemini = server.gemini(ALPHA_KEY);
    let file = json_of(gemini.get(&format!("v1beta/files/{gemini_id}")).await, StatusCode::OK).await;
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
    let listed = json_of(gemini.get("v1/files").await, StatusCode::OK).await;
    assert_eq!(listed["files"][0]["name"], json!(format!("files/{gemini_id}")));
    let download = gemini.get(&format!("v1/files/{gemini_id}:download?alt=media")).await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn a_source_without_content_length_is_counted_and_a_type_is_sniffed() {
    let nginx = Nginx::start();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(data(3 * MIB, 2));
    nginx.put("picture.bin", &png);
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let id =
        importer.create_ok(json!({"source_url": format!("{}/chunked/picture.bin", nginx.url), "model": "m"})).await;
    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["bytes"], json!(png.len()));
    assert_eq!(task["sha256"], json!(sha256_hex(&png)));
    assert_eq!(task["mime_type"], "image/png", "octet-stream from the source, so the bytes decide");
}

#[tokio::test]
async fn redirects_are_followed_up_to_five_and_the_sixth_fails() {
    let nginx = Nginx::start();
    let bytes = data(1000, 3);
    let target = nginx.put("r.txt", &bytes);
    // nginx answers `302 $arg_to` with the argument as sent (not decoded): nest the URLs unencoded.
    let redirect = |to: &str| format!("{}/redirect?to={to}", nginx.url);
    let mut chain = target.clone();
    for _ in 0..5 {
        chain = redirect(&chain);
    }
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let ok = importer.settle(&importer.create_ok(json!({"source_url": chain, "model": "m"})).await).await;
    assert_eq!(ok["status"], "ready", "five redirects are fine: {ok}");
    assert_eq!(ok["sha256"], json!(sha256_hex(&bytes)));

    let too_many = redirect(&chain);
    let failed = importer.settle(&importer.create_ok(json!({"source_url": too_many, "model": "m"})).await).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "too_many_redirects", "{failed}");
}

#[tokio::test]
async fn a_connection_cut_mid_body_resumes_with_range_and_downloads_nothing_twice() {
    let bytes = data(12 * MIB + 77, 4);
    let cut = 5 * MIB + 1234;
    let source = {
        let bytes = bytes.clone();
        Scripted::start(move |i, req| {
            let full = Reply::new(200, bytes.clone()).header("accept-ranges", "bytes").header("etag", "\"v1\"");
            match (i, req.headers.get("range")) {
                (0, None) => Reply { cut_after: Some(cut), ..full },
                (_, Some(range)) => {
                    let start: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
                    Reply::new(206, bytes[start..].to_vec())
                        .header("etag", "\"v1\"")
                        .header("content-range", format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()))
                }
                _ => full,
            }
        })
        .await
    };
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{}/video.mp4", source.url), "model": "m"})).await;
    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));

    let requests = source.requests();
    assert_eq!(requests.len(), 2, "one cut request and one resume: {requests:?}");
    assert!(requests.iter().all(|r| r.path == "/video.mp4"));
    assert_eq!(requests[1].headers.get("range"), Some(&format!("bytes={cut}-")), "resumed exactly where the cut was");
    assert_eq!(requests[1].headers.get("if-range").map(String::as_str), Some("\"v1\""));
}

#[tokio::test]
async fn a_source_that_changed_is_started_over_never_spliced() {
    let old = data(6 * MIB, 5);
    let new = data(6 * MIB, 6);
    let source = {
        let (old, new) = (old.clone(), new.clone());
        Scripted::start(move |i, req| {
            if i == 0 {
                let reply = Reply::new(200, old.clone()).header("accept-ranges", "bytes").header("etag", "\"old\"");
                return Reply { cut_after: Some(2 * MIB), ..reply };
            }
            // If-Range no longer matches: a real server sends the whole new version.
            assert_eq!(req.headers.get("if-range").map(String::as_str), Some("\"old\""));
            Reply::new(200, new.clone()).header("accept-ranges", "bytes").header("etag", "\"new\"")
        })
        .await
    };
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{}/f.bin", source.url), "model": "m"})).await;
    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&new)), "the new version, whole");
    assert_eq!(task["bytes"], json!(new.len()));
}

/// A source that takes ranges: `version(i)` is the file and its ETag when request `i` arrives.
fn ranged_source(
    version: impl Fn(usize) -> (Vec<u8>, &'static str) + Send + Sync + 'static,
) -> impl Fn(usize, &crate::sources::Seen) -> Reply + Send + Sync + 'static {
    move |i, req| {
        let (bytes, etag) = version(i);
        let whole = || Reply::new(200, bytes.clone()).header("accept-ranges", "bytes").header("etag", etag);
        if req.headers.get("if-range").is_some_and(|v| v != etag) {
            return whole(); // a real server's answer when the version changed
        }
        let Some(range) = req.headers.get("range").and_then(|r| r.strip_prefix("bytes=")) else { return whole() };
        let (from, to) = range.split_once('-').unwrap();
        let from: usize = from.parse().unwrap();
        let to: usize = if to.is_empty() { bytes.len() - 1 } else { to.parse().unwrap() };
        Reply::new(206, bytes[from..=to].to_vec())
            .header("accept-ranges", "bytes")
            .header("etag", etag)
            .header("content-range", format!("bytes {from}-{to}/{}", bytes.len()))
    }
}

#[tokio::test]
async fn a_source_that_takes_ranges_is_fetched_over_several_connections_in_order() {
    let bytes = data(40 * MIB + 123, 41);
    let source = {
        let bytes = bytes.clone();
        Scripted::start(ranged_source(move |_| (bytes.clone(), "\"v1\""))).await
    };
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let task = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/big.bin", source.url), "model": "m"})).await)
        .await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)), "the bytes in order");
    let requests = source.requests();
    let ranges: Vec<&str> = requests.iter().filter_map(|r| r.headers.get("range").map(String::as_str)).collect();
    // One GET for the first 8 MiB, then every other 8 MiB segment by a closed range, each with If-Range.
    assert_eq!(requests.len(), 6, "{ranges:?}");
    assert!(ranges.contains(&"bytes=8388608-16777215") && ranges.contains(&"bytes=41943040-41943162"), "{ranges:?}");
    assert!(requests[1..].iter().all(|r| r.headers.get("if-range").map(String::as_str) == Some("\"v1\"")));
}

#[tokio::test]
async fn a_source_that_changes_between_two_ranges_is_started_over_and_ends_with_the_new_bytes() {
    let old = data(40 * MIB, 42);
    let new = data(40 * MIB + 7, 43);
    let source = {
        let (old, new) = (old.clone(), new.clone());
        // The file changes after the third request: ranges asked for later are of another version.
        Scripted::start(ranged_source(move |i| if i < 3 { (old.clone(), "\"old\"") } else { (new.clone(), "\"new\"") }))
            .await
    };
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let task = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/moving.bin", source.url), "model": "m"})).await)
        .await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&new)), "the new version, whole, never spliced");
    assert_eq!(task["bytes"], json!(new.len()));
    let asked_for_old = source
        .requests()
        .iter()
        .skip(3)
        .filter(|r| r.headers.get("if-range").map(String::as_str) == Some("\"old\""))
        .count();
    assert!(asked_for_old > 0, "the change was met mid-import, by a range of the old version");
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_fail_at_once() {
    let bytes = data(4000, 7);
    let flaky = {
        let bytes = bytes.clone();
        Scripted::start(
            move |i, _| if i < 2 { Reply::new(503, b"busy".to_vec()) } else { Reply::new(200, bytes.clone()) },
        )
        .await
    };
    let missing = Scripted::start(|_, _| Reply::new(404, b"nope".to_vec())).await;
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);

    let ok = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/a", flaky.url), "model": "m"})).await)
        .await;
    assert_eq!(ok["status"], "ready", "{ok}");
    assert_eq!(flaky.requests().len(), 3);

    let failed = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/b", missing.url), "model": "m"})).await)
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "source_http_status");
    assert!(failed["error"]["message"].as_str().unwrap().contains("404"), "{failed}");
    assert_eq!(missing.requests().len(), 1, "a 404 is not retried");
    let gemini = json_of(
        server.gemini(ALPHA_KEY).get(&format!("v1/files/{}", &failed["id"].as_str().unwrap()[6..])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(gemini["state"], "FAILED");
    assert!(gemini["error"]["message"].as_str().unwrap().contains("source_http_status"), "{gemini}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_attempts_run_out() {
    let limited = Scripted::start(|i, _| {
        if i == 0 { Reply::new(429, vec![]).header("retry-after", "2") } else { Reply::new(200, b"fine".to_vec()) }
    })
    .await;
    let down = Scripted::start(|_, _| Reply::new(500, vec![])).await;
    let server = import_server().env("FILEGATE_IMPORT_MAX_ATTEMPTS", 2).start();
    let importer = server.importer(ALPHA_KEY);
    let started = Instant::now();
    let ok = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/x", limited.url), "model": "m"})).await)
        .await;
    assert_eq!(ok["status"], "ready");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited for Retry-After: {:?}", started.elapsed());

    let failed = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/y", down.url), "model": "m"})).await)
        .await;
    assert_eq!(failed["error"]["code"], "source_http_status", "{failed}");
    assert_eq!(down.requests().len(), 2, "FILEGATE_IMPORT_MAX_ATTEMPTS attempts");
}

#[tokio::test]
async fn a_stalled_source_is_abandoned_and_resumed() {
    let bytes = data(3 * MIB, 8);
    let source = {
        let bytes = bytes.clone();
        Scripted::start(move |i, req| {
            if i == 0 {
                let reply = Reply::new(200, bytes.clone()).header("accept-ranges", "bytes").header("etag", "\"s\"");
                return Reply { stall_after: Some((MIB, Duration::from_secs(30))), ..reply };
            }
            let start: usize = req.headers["range"].trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
            Reply::new(206, bytes[start..].to_vec())
                .header("content-range", format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()))
        })
        .await
    };
    let server = import_server().env("FILEGATE_IMPORT_STALL_TIMEOUT_SECONDS", 1).start();
    let importer = server.importer(ALPHA_KEY);
    let task = importer
        .settle(&importer.create_ok(json!({"source_url": format!("{}/s", source.url), "model": "m"})).await)
        .await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));
    assert_eq!(source.requests()[1].headers.get("range"), Some(&format!("bytes={MIB}-")));
}

#[tokio::test]
async fn size_limits_apply_before_storing_and_while_counting() {
    let nginx = Nginx::start();
    let big = nginx.put("big.bin", &data(3000, 9));
    let server = import_server().env("FILEGATE_MAX_FILE_BYTES", 2000).start();
    let importer = server.importer(ALPHA_KEY);
    let announced = importer.settle(&importer.create_ok(json!({"source_url": big, "model": "m"})).await).await;
    assert_eq!(announced["error"]["code"], "too_large", "{announced}");
    assert_eq!(announced["progress"]["received_bytes"], 0, "nothing stored when Content-Length says too much");
    let counted = importer
        .settle(
            &importer.create_ok(json!({"source_url": format!("{}/chunked/big.bin", nginx.url), "model": "m"})).await,
        )
        .await;
    assert_eq!(counted["error"]["code"], "too_large", "{counted}");
    assert!(server.files_under("blobs/staging").is_empty(), "failed imports leave no staged bytes");
    assert!(server.files_under("blobs/files").is_empty());
}

#[tokio::test]
async fn checksum_and_quota_failures_are_reported_and_hold_nothing() {
    let nginx = Nginx::start();
    let bytes = data(5000, 10);
    let url = nginx.put("c.bin", &bytes);
    let server = import_server().env("FILEGATE_PROJECT_QUOTA_BYTES", 4000).start();
    let importer = server.importer(ALPHA_KEY);
    let quota = importer.settle(&importer.create_ok(json!({"source_url": url, "model": "m"})).await).await;
    assert_eq!(quota["error"]["code"], "quota_exceeded", "{quota}");
    let small = nginx.put("small.bin", &bytes[..1000]);
    let wrong = importer
        .settle(&importer.create_ok(json!({"source_url": small, "model": "m", "sha256": "ab".repeat(32)})).await)
        .await;
    assert_eq!(wrong["error"]["code"], "checksum_mismatch", "{wrong}");
    let right = importer
        .settle(
            &importer
                .create_ok(
                    json!({"source_url": small, "model": "m", "sha256": sha256_hex(&bytes[..1000]).to_uppercase()}),
                )
                .await,
        )
        .await;
    assert_eq!(right["status"], "ready", "{right}");
    // Failed imports charge nothing: 3000 bytes of quota are still free.
    server.gemini(ALPHA_KEY).upload(&data(3000, 11), json!({})).await;
}

#[tokio::test]
async fn every_rejected_field_gets_a_precise_400_and_nothing_is_created() {
    let server = import_server().env("FILEGATE_IMPORT_MODELS", "gemini-*").start();
    let importer = server.importer(ALPHA_KEY);
    let ok_url = "http://127.0.0.1:9/file.mp4";
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"model": "gemini-x"}), "missing_source_url", "source_url is required"),
        (json!({"source_url": ok_url}), "missing_model", "model is required"),
        (json!({"source_url": "ftp://example.com/a", "model": "gemini-x"}), "invalid_source_url", "http or https"),
        (json!({"source_url": "http://u:p@example.com/a", "model": "gemini-x"}), "invalid_source_url", "credentials"),
        (json!({"source_url": "not a url", "model": "gemini-x"}), "invalid_source_url", "absolute URL"),
        (
            json!({"source_url": format!("http://example.com/{}", "a".repeat(4100)), "model": "gemini-x"}),
            "invalid_source_url",
            "4096",
        ),
        (json!({"source_url": 7, "model": "gemini-x"}), "invalid_type", "source_url must be a string"),
        (json!({"source_url": ok_url, "model": "gpt-4"}), "model_not_allowed", "gemini-*"),
        (json!({"source_url": ok_url, "model": ""}), "invalid_model", "1 to 128"),
        (
            json!({"source_url": ok_url, "model": "gemini-x", "expires_in": 59}),
            "invalid_expires_in",
            "between 60 and 2592000",
        ),
        (
            json!({"source_url": ok_url, "model": "gemini-x", "expires_in": 2_592_001}),
            "invalid_expires_in",
            "between 60",
        ),
        (
            json!({"source_url": ok_url, "model": "gemini-x", "expires_in": "60"}),
            "invalid_expires_in",
            "number of seconds",
        ),
        (json!({"source_url": ok_url, "model": "gemini-x", "sha256": "xyz"}), "invalid_sha256", "64 hexadecimal"),
        (
            json!({"source_url": ok_url, "model": "gemini-x", "display_name": "n".repeat(513)}),
            "invalid_display_name",
            "512",
        ),
    ];
    for (body, code, words) in cases {
        let (got_code, message) = error_of(importer.create(body.clone()).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(got_code, code, "{body}");
        assert!(message.contains(words), "{body}: {message}");
    }
    let malformed = importer
        .http
        .post(format!("{}/v1/files", server.url))
        .header("Authorization", ALPHA_KEY)
        .body("{\"source_url\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(malformed, StatusCode::BAD_REQUEST).await.0, "invalid_json");
    let anonymous =
        reqwest::Client::new().post(format!("{}/v1/files", server.url)).json(&json!({})).send().await.unwrap();
    assert_eq!(error_of(anonymous, StatusCode::UNAUTHORIZED).await.0, "missing_api_key");
    assert_eq!(
        error_of(server.importer("wrong").create(json!({})).await, StatusCode::UNAUTHORIZED).await.0,
        "invalid_api_key"
    );
    assert_eq!(
        error_of(importer.get("qfile-nothinghere", Some(61)).await, StatusCode::BAD_REQUEST).await.0,
        "invalid_wait"
    );

    assert!(json_of(server.gemini(ALPHA_KEY).get("v1/files").await, StatusCode::OK).await.get("files").is_none());
    assert!(server.files_under("blobs").is_empty());
}

#[tokio::test]
async fn ssrf_every_spelling_of_a_denied_address_is_refused_and_nothing_connects() {
    let v4 = Tripwire::on("127.0.0.2").await;
    let v6 = Tripwire::on("::1").await;
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let port = v4.port;
    for url in [
        format!("http://127.0.0.2:{port}/x"),
        format!("http://2130706434:{port}/x"),
        format!("http://0x7f000002:{port}/x"),
        format!("http://0x7f.0.0.2:{port}/x"),
        format!("http://0177.0.0.2:{port}/x"),
        format!("http://127.2:{port}/x"),
        format!("http://[::ffff:127.0.0.2]:{port}/x"),
        format!("http://[::ffff:7f00:2]:{port}/x"),
        format!("http://[::1]:{}/x", v6.port),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/x".to_owned(),
        "http://[fe80::1]/x".to_owned(),
    ] {
        let (code, message) =
            error_of(importer.create(json!({"source_url": url, "model": "m"})).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(code, "forbidden_address", "{url}: {message}");
    }
    // A redirect into a denied address fails the task at that hop.
    let nginx = Nginx::start();
    let hop = format!("{}/redirect?to=http://127.0.0.2:{port}/secret", nginx.url);
    let task = importer.settle(&importer.create_ok(json!({"source_url": hop, "model": "m"})).await).await;
    assert_eq!(task["error"]["code"], "forbidden_address", "{task}");
    let hop6 = format!("{}/redirect?to=http://[::ffff:127.0.0.2]:{port}/", nginx.url);
    let task = importer.settle(&importer.create_ok(json!({"source_url": hop6, "model": "m"})).await).await;
    assert_eq!(task["error"]["code"], "forbidden_address", "{task}");
    assert_eq!(v4.connections(), 0, "nothing reached 127.0.0.2");
    assert_eq!(v6.connections(), 0, "nothing reached [::1]");
}

#[tokio::test]
async fn ssrf_a_host_name_that_resolves_to_a_denied_address_is_refused_without_connecting() {
    let guarded = Tripwire::on("127.0.0.1").await;
    // No allow-list: loopback is denied, and `localhost` (from /etc/hosts) resolves only to it.
    let server = Server::start();
    let importer = server.importer(ALPHA_KEY);
    let id =
        importer.create_ok(json!({"source_url": format!("http://localhost:{}/x", guarded.port), "model": "m"})).await;
    let task = importer.settle(&id).await;
    assert_eq!(task["error"]["code"], "forbidden_address", "{task}");
    assert_eq!(guarded.connections(), 0);
}

#[tokio::test]
async fn idempotency_keys_return_the_same_task_and_refuse_a_different_body() {
    let nginx = Nginx::start();
    let url = nginx.put("i.bin", &data(100, 12));
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let send = |body: Value, key: &'static str| {
        importer
            .http
            .post(format!("{}/v1/files", server.url))
            .header("Authorization", ALPHA_KEY)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"source_url": url, "model": "m"});
    let first = json_of(send(body.clone(), "k-1").await.unwrap(), StatusCode::OK).await;
    let again = json_of(send(body.clone(), "k-1").await.unwrap(), StatusCode::OK).await;
    assert_eq!(first["id"], again["id"]);
    let other = json_of(send(body.clone(), "k-2").await.unwrap(), StatusCode::OK).await;
    assert_ne!(first["id"], other["id"]);
    let (code, _) =
        error_of(send(json!({"source_url": url, "model": "other"}), "k-1").await.unwrap(), StatusCode::CONFLICT).await;
    assert_eq!(code, "idempotency_conflict");
    // Another project has its own keys.
    let beta = server.importer(BETA_KEY);
    let theirs = beta
        .http
        .post(format!("{}/v1/files", server.url))
        .header("Authorization", BETA_KEY)
        .header("Idempotency-Key", "k-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_ne!(json_of(theirs, StatusCode::OK).await["id"], first["id"]);
    // Once the task is deleted, the key creates a new one.
    importer.delete(first["id"].as_str().unwrap()).await;
    let fresh = json_of(send(body, "k-1").await.unwrap(), StatusCode::OK).await;
    assert_ne!(fresh["id"], first["id"]);
}

#[tokio::test]
async fn delete_cancels_a_running_import_and_frees_everything() {
    let nginx = Nginx::start();
    let url = nginx.put("slow.bin", &data(40 * MIB, 13));
    let server = import_server().env("FILEGATE_PROJECT_QUOTA_BYTES", 41 * MIB).start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=4m"), "model": "m"})).await;
    for _ in 0..50 {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        if task["progress"]["received_bytes"].as_u64().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deleted = json_of(importer.delete(&id).await, StatusCode::OK).await;
    assert_eq!(deleted, json!({"id": id, "object": "file", "deleted": true}));
    assert_eq!(error_of(importer.get(&id, None).await, StatusCode::NOT_FOUND).await.0, "file_not_found");
    assert_eq!(rpc_error(server.gemini(ALPHA_KEY).get(&format!("v1/files/{}", &id[6..])).await).await.0, 403);
    eventually(|| server.files_under("blobs").is_empty(), "staged bytes removed").await;
    // The 40 MiB announced by Content-Length are no longer reserved.
    server.gemini(ALPHA_KEY).upload(&data(40 * MIB, 14), json!({})).await;
    assert_eq!(error_of(importer.delete(&id).await, StatusCode::NOT_FOUND).await.0, "file_not_found");
}

#[tokio::test]
async fn wait_answers_as_soon_as_the_import_settles_or_when_time_is_up() {
    let nginx = Nginx::start();
    let quick = nginx.put("quick.bin", &data(1000, 15));
    let slow = nginx.put("slow.bin", &data(10 * MIB, 16));
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": quick, "model": "m"})).await;
    let started = Instant::now();
    let task = json_of(importer.get(&id, Some(30)).await, StatusCode::OK).await;
    assert_eq!(task["status"], "ready");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    let id = importer.create_ok(json!({"source_url": format!("{slow}?rate=1m"), "model": "m"})).await;
    let started = Instant::now();
    let task = json_of(importer.get(&id, Some(2)).await, StatusCode::OK).await;
    assert!(["pending", "processing"].contains(&task["status"].as_str().unwrap()), "{task}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_project_has_a_cap_on_imports_in_flight_and_sees_only_its_own() {
    let nginx = Nginx::start();
    let url = nginx.put("cap.bin", &data(10 * MIB, 17));
    let server = import_server().env("FILEGATE_IMPORT_MAX_ACTIVE_PER_PROJECT", 1).start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=2m"), "model": "m"})).await;
    let (code, _) =
        error_of(importer.create(json!({"source_url": url, "model": "m"})).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "too_many_imports");
    assert_eq!(
        error_of(server.importer(BETA_KEY).get(&id, None).await, StatusCode::NOT_FOUND).await.0,
        "file_not_found"
    );
    server.importer(BETA_KEY).create_ok(json!({"source_url": url, "model": "m"})).await;
}

#[tokio::test]
async fn a_crash_during_an_import_resumes_after_restart_with_the_right_digest() {
    let nginx = Nginx::start();
    let bytes = data(40 * MIB, 18);
    let url = nginx.put("crash.bin", &bytes);
    let mut server = import_server().env("FILEGATE_IMPORT_LEASE_SECONDS", 3).start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=8m"), "model": "m"})).await;
    loop {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        // The first part is committed on its own; the kill then comes while the next span's parts are
        // being fetched and stored (several in flight on a bucket).
        if task["progress"]["stored_bytes"].as_u64().unwrap() >= 8 * MIB as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill9();
    server.restart();
    let importer = server.importer(ALPHA_KEY);
    let task = importer.settle(&id).await;
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], json!(sha256_hex(&bytes)));
    // After the restart the source was asked for the rest only: a 206 for fewer bytes than the file. (What
    // the crash wasted in flight depends on the machine's load, so it is not counted.)
    let requests = nginx.requests("crash.bin");
    let (status, sent) = *requests.last().unwrap();
    assert_eq!(status, 206, "resumed with Range, not started over: {requests:?}");
    assert!(sent <= (bytes.len() - 8 * MIB) as u64, "at least one stored part was not fetched again: {requests:?}");
}

#[tokio::test]
async fn an_import_of_a_type_the_deployment_refuses_fails_before_the_rest_is_fetched() {
    let nginx = Nginx::start();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(data(20 * MIB, 9));
    let url = nginx.put("picture.png", &png);
    let server = import_server().env("FILEGATE_ALLOWED_MIME_TYPES", "video/*").start();
    let importer = server.importer(ALPHA_KEY);
    let task =
        importer.settle(&importer.create_ok(json!({"source_url": format!("{url}?rate=4m"), "model": "m"})).await).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "unsupported_mime_type");
    assert_eq!(task["error"]["message"], "Unsupported MIME type: image/png");
    assert!(task["progress"]["stored_bytes"].as_u64().unwrap() < png.len() as u64 / 2, "nothing more stored: {task}");
    // A small one, whole within its first part: what was staged of it goes too (the check on drop).
    let small = nginx.put("small.png", &png[..1000]);
    let task = importer.settle(&importer.create_ok(json!({"source_url": small, "model": "m"})).await).await;
    assert_eq!(task["error"]["code"], "unsupported_mime_type", "{task}");
}

#[tokio::test]
async fn progress_moves_as_bytes_arrive_not_only_at_each_commit() {
    // 24 MB at 1 MB/s a connection, over ranged connections: commits come at 8 MiB (local disk) or every 8
    // parts (a bucket), so without the fetched count the progress would stand still for seconds.
    let nginx = Nginx::start();
    let bytes = data(24_000_000, 31);
    let url = nginx.put("progress.bin", &bytes);
    let server = import_server().start();
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": format!("{url}?rate=1m"), "model": "m"})).await;
    let mut seen = Vec::new();
    let task = loop {
        let task = json_of(importer.get(&id, None).await, StatusCode::OK).await;
        if task["status"] != "pending" && task["status"] != "processing" {
            break task;
        }
        let received = task["progress"]["received_bytes"].as_u64().unwrap();
        if received > 0 && seen.last() != Some(&received) {
            seen.push(received);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(task["status"], "ready", "{task}");
    assert_eq!(task["sha256"], sha256_hex(&bytes));
    let moving: Vec<_> = seen.iter().filter(|&&r| r < bytes.len() as u64).collect();
    assert!(moving.len() >= 3, "the progress moved before the end: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "and never back: {seen:?}");
}
