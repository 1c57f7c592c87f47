//! The resumable upload protocol as Google's Files API and the official SDKs speak it (`docs/api-quirks.md`).

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn uploads_of_every_awkward_size_round_trip_with_the_right_digest() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    for (i, size) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 20_000_000].into_iter().enumerate() {
        let bytes = data(size, i as u64);
        let file = gemini.upload(&bytes, json!({"file": {"display_name": format!("size {size}")}})).await;
        assert_eq!(file["sizeBytes"], json!(size.to_string()), "{file}");
        assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
        assert_eq!(file["state"], "ACTIVE");
        assert_eq!(file["displayName"], json!(format!("size {size}")));
        let id = file_id(&file);
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");

        let got = json_of(gemini.get(&format!("v1beta/files/{id}")).await, StatusCode::OK).await;
        assert_eq!(got, file);
        let download = gemini.get(&format!("v1/files/{id}:download?alt=media")).await;
        assert_eq!(download.status(), StatusCode::OK);
        assert_eq!(header(&download, "content-length"), Some(size.to_string().as_str()));
        assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
}

#[tokio::test]
async fn the_file_resource_has_googles_shape() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let file = gemini.upload(b"hello", json!({"file": {"mimeType": "text/plain", "displayName": "Hi"}})).await;
    let id = file_id(&file);
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["source"], "UPLOADED");
    assert_eq!(file["uri"], json!(format!("{}/v1beta/files/{id}", server.url)));
    let create = file["createTime"].as_str().unwrap();
    assert!(create.ends_with('Z') && create.len() == "2026-11-23T18:15:18.225375Z".len(), "{create}");
    let created = chrono::DateTime::parse_from_rfc3339(create).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(file["expirationTime"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_hours(), 48);
    assert!(file.get("size_bytes").is_none() && file.get("mime_type").is_none(), "camelCase only: {file}");
    // Where the bytes are, for services that read buckets directly; nothing on the local disk.
    match server.storage_prefix() {
        None => assert!(file.get("storageUri").is_none(), "{file}"),
        Some(prefix) => {
            let uri = file["storageUri"].as_str().unwrap();
            assert!(uri.starts_with(&format!("{prefix}alpha/{id}.")), "{uri} under {prefix}");
            let key = uri.splitn(4, '/').nth(3).unwrap();
            assert!(server.files_under("blobs/files").iter().any(|p| p.to_str() == Some(key)), "{key} is stored");
        }
    }
}

#[tokio::test]
async fn a_user_chosen_name_is_kept_and_a_duplicate_is_refused_at_start() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let file = gemini.upload(b"one", json!({"file": {"name": "files/my-doc-1"}})).await;
    assert_eq!(file["name"], "files/my-doc-1");
    let (status, code, message) = rpc_error(gemini.start(3, json!({"file": {"name": "my-doc-1"}})).await).await;
    assert_eq!((status, code.as_str()), (409, "ALREADY_EXISTS"));
    assert!(message.contains("files/my-doc-1 already exists"), "{message}");
    // Another project may use the same name.
    let other = server.gemini(BETA_KEY).upload(b"two", json!({"file": {"name": "my-doc-1"}})).await;
    assert_eq!(other["name"], "files/my-doc-1");
}

#[tokio::test]
async fn bad_start_requests_get_precise_400s_and_reserve_nothing() {
    let server = Server::builder().env("FILEGATE_MAX_FILE_BYTES", 1000).start();
    let gemini = server.gemini(ALPHA_KEY);
    let cases = [
        (json!({"file": {"name": "Bad_Name"}}), 10, "Invalid file name"),
        (json!({"file": {"name": "-lead"}}), 10, "Invalid file name"),
        (json!({"file": {"name": "files/qfile-abc"}}), 10, "reserved"),
        (json!({"file": {"displayName": "x".repeat(513)}}), 10, "displayName"),
        (json!({"file": {"mimeType": "not a type"}}), 10, "Unsupported MIME type: not a type"),
        (json!({"file": {"mimeType": "bad/mime_type"}}), 10, "Unsupported MIME type: bad/mime_type"),
        (json!({"file": {"sizeBytes": "11"}}), 10, "disagree"),
        (json!({"file": {}}), 1001, "over the limit of 1000 bytes"),
    ];
    for (metadata, size, expected) in cases {
        let (status, code, message) = rpc_error(gemini.start(size, metadata.clone()).await).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"), "{metadata}");
        assert!(message.contains(expected), "{metadata}: {message}");
    }
    let no_protocol = gemini
        .http
        .post(format!("{}/upload/v1/files", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, _, message) = rpc_error(no_protocol).await;
    assert_eq!(status, 400);
    assert!(message.contains("X-Goog-Upload-Protocol"), "{message}");
    let bad_json = gemini
        .http
        .post(format!("{}/upload/v1beta/files", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("X-Goog-Upload-Protocol", "resumable")
        .header("X-Goog-Upload-Command", "start")
        .header("X-Goog-Upload-Header-Content-Length", "5")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, message) = rpc_error(bad_json).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("Invalid JSON payload"), "{message}");
    assert!(server.files_under("blobs/staging").is_empty(), "a refused start leaves no staging file");
}

#[tokio::test]
async fn the_start_body_is_accepted_in_snake_case_and_camel_case() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let py = gemini
        .upload(
            b"abc",
            json!({"file": {"name": "files/py-one", "display_name": "Py", "mime_type": "text/csv", "size_bytes": 3}}),
        )
        .await;
    let js = gemini
        .upload(
            b"abc",
            json!({"file": {"name": "files/js-one", "displayName": "Js", "mimeType": "text/csv", "sizeBytes": "3"}}),
        )
        .await;
    for (file, name) in [(py, "Py"), (js, "Js")] {
        assert_eq!(file["displayName"], name);
        assert_eq!(file["mimeType"], "text/csv");
        assert_eq!(file["sizeBytes"], "3");
    }
}

#[tokio::test]
async fn a_wrong_offset_is_refused_with_final_and_the_session_stays_resumable() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(2 * CHUNK, 7);
    let url = gemini.start_ok(bytes.len() as u64, json!({})).await;
    let first = gemini.command(&url, "upload", Some(0), bytes[..CHUNK].to_vec()).await;
    assert_eq!(header(&first, "x-goog-upload-status"), Some("active"));

    let ahead = gemini.command(&url, "upload", Some(2 * CHUNK as u64), b"xyz".to_vec()).await;
    assert_eq!(header(&ahead, "x-goog-upload-status"), Some("final"), "the SDK must stop, not send the next chunk");
    let (status, code, message) = rpc_error(ahead).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(message.contains(&format!("resume at offset {CHUNK}")), "{message}");

    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(query.status(), StatusCode::OK);
    assert_eq!(header(&query, "x-goog-upload-status"), Some("active"));
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some(CHUNK.to_string().as_str()));

    let done = gemini.command(&url, "upload, finalize", Some(CHUNK as u64), bytes[CHUNK..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)));
}

#[tokio::test]
async fn an_identical_resent_chunk_is_accepted_and_a_different_one_is_a_conflict() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(CHUNK + 1000, 9);
    let url = gemini.start_ok(bytes.len() as u64, json!({})).await;
    for _ in 0..2 {
        let resp = gemini.command(&url, "upload", Some(0), bytes[..CHUNK].to_vec()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "x-goog-upload-status"), Some("active"));
        assert_eq!(header(&resp, "x-goog-upload-size-received"), Some(CHUNK.to_string().as_str()));
    }
    let mut changed = bytes[..CHUNK].to_vec();
    changed[CHUNK / 2] ^= 1;
    let conflict = gemini.command(&url, "upload", Some(0), changed).await;
    assert_eq!(header(&conflict, "x-goog-upload-status"), Some("final"));
    let (status, code, _) = rpc_error(conflict).await;
    assert_eq!((status, code.as_str()), (409, "ABORTED"));
    // A resend that is shorter than the chunk it repeats is not identical either.
    let short = gemini.command(&url, "upload", Some(0), bytes[..100].to_vec()).await;
    assert_eq!(short.status(), StatusCode::CONFLICT);

    let done = gemini.command(&url, "upload, finalize", Some(CHUNK as u64), bytes[CHUNK..].to_vec()).await;
    let file = json_of(done, StatusCode::OK).await["file"].clone();
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&bytes)), "the rejected resends changed nothing");

    // The finalize reply was "lost": resending the last chunk answers the same file again.
    let replay = gemini.command(&url, "upload, finalize", Some(CHUNK as u64), bytes[CHUNK..].to_vec()).await;
    assert_eq!(header(&replay, "x-goog-upload-status"), Some("final"));
    assert_eq!(json_of(replay, StatusCode::OK).await["file"], file);
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-status"), Some("final"));
    assert_eq!(json_of(query, StatusCode::OK).await["file"], file);
}

#[tokio::test]
async fn more_bytes_than_declared_are_refused_and_nothing_is_committed() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(10, json!({})).await;
    let over = gemini.command(&url, "upload, finalize", Some(0), data(11, 1)).await;
    assert_eq!(header(&over, "x-goog-upload-status"), Some("final"));
    let (status, _, message) = rpc_error(over).await;
    assert_eq!(status, 400);
    assert!(message.contains("exceed the declared size of 10"), "{message}");
    let query = gemini.command(&url, "query", None, vec![]).await;
    assert_eq!(header(&query, "x-goog-upload-size-received"), Some("0"));
}

#[tokio::test]
async fn finalize_with_fewer_bytes_than_declared_is_refused() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(10, json!({})).await;
    let short = gemini.command(&url, "upload, finalize", Some(0), data(4, 1)).await;
    assert_eq!(header(&short, "x-goog-upload-status"), Some("final"));
    let (status, _, message) = rpc_error(short).await;
    assert_eq!(status, 400);
    assert!(message.contains("finalize after 4 bytes, but the upload declared 10"), "{message}");
    // The four bytes are kept: the session can still be completed.
    let rest = gemini.command(&url, "upload", Some(4), data(10, 1)[4..].to_vec()).await;
    assert_eq!(header(&rest, "x-goog-upload-size-received"), Some("10"));
    let finalize = gemini.command(&url, "finalize", None, vec![]).await;
    assert_eq!(json_of(finalize, StatusCode::OK).await["file"]["sizeBytes"], "10");
}

#[tokio::test]
async fn cancel_ends_the_session_and_frees_its_quota_at_once() {
    let server = Server::builder().env("FILEGATE_PROJECT_QUOTA_BYTES", 100).start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(100, json!({})).await;
    gemini.command(&url, "upload", Some(0), data(50, 1)).await;
    let (status, code, _) = rpc_error(gemini.start(1, json!({})).await).await;
    assert_eq!((status, code.as_str()), (429, "RESOURCE_EXHAUSTED"), "the open upload holds the whole quota");

    let cancel = gemini.command(&url, "cancel", None, vec![]).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(header(&cancel, "x-goog-upload-status"), Some("cancelled"));
    for command in ["query", "upload", "cancel"] {
        let later = gemini.command(&url, command, Some(50), vec![1]).await;
        assert!(later.status().is_client_error(), "{command}: {}", later.status());
        assert_eq!(header(&later, "x-goog-upload-status"), Some("cancelled"), "{command}");
    }
    assert!(server.files_under("blobs/staging").is_empty(), "the staged bytes are gone");
    gemini.upload(&data(100, 2), json!({})).await;
}

#[tokio::test]
async fn an_unknown_upload_id_is_a_404_with_final() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = format!("{}/upload/v1/files?upload_id=not-a-real-session&upload_protocol=resumable", server.url);
    let resp = gemini.command(&url, "upload", Some(0), vec![1, 2, 3]).await;
    assert_eq!(header(&resp, "x-goog-upload-status"), Some("final"));
    let (status, code, _) = rpc_error(resp).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn upload_url_requests_need_a_command_and_an_offset() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(3, json!({})).await;
    let no_command = gemini.http.post(&url).body("abc").send().await.unwrap();
    assert_eq!(header(&no_command, "x-goog-upload-status"), Some("final"));
    assert!(rpc_error(no_command).await.2.contains("X-Goog-Upload-Command"));
    let no_offset = gemini.command(&url, "upload", None, b"abc".to_vec()).await;
    assert!(rpc_error(no_offset).await.2.contains("X-Goog-Upload-Offset"));
}

#[tokio::test]
async fn the_quota_counts_open_uploads_and_files_and_refuses_at_start() {
    let server = Server::builder().env("FILEGATE_PROJECT_QUOTA_BYTES", 1000).start();
    let gemini = server.gemini(ALPHA_KEY);
    let file = gemini.upload(&data(600, 1), json!({})).await;
    let (status, code, message) = rpc_error(gemini.start(401, json!({})).await).await;
    assert_eq!((status, code.as_str()), (429, "RESOURCE_EXHAUSTED"));
    assert!(message.contains("400 bytes available of 1000"), "{message}");
    gemini.upload(&data(400, 2), json!({})).await;
    // Quotas are per project.
    server.gemini(BETA_KEY).upload(&data(1000, 3), json!({})).await;
    // Deleting frees exactly the file's size.
    assert_eq!(gemini.delete(&format!("v1/files/{}", file_id(&file))).await.status(), StatusCode::OK);
    gemini.upload(&data(600, 4), json!({})).await;
}

#[tokio::test]
async fn the_upload_url_is_absolute_and_built_from_the_public_url() {
    let server = Server::builder().env("FILEGATE_PUBLIC_URL", "https://files.example.test/gemini/").start();
    let resp = server.gemini(ALPHA_KEY).start(5, json!({})).await;
    let url = header(&resp, "x-goog-upload-url").unwrap();
    assert!(url.starts_with("https://files.example.test/gemini/upload/v1/files?upload_id="), "{url}");
    assert!(url.ends_with("&upload_protocol=resumable"), "{url}");
    let token = url.split("upload_id=").nth(1).unwrap().split('&').next().unwrap();
    assert!(token.len() >= 43, "the capability is long enough to be unguessable: {token}");
    assert_eq!(header(&resp, "x-goog-upload-chunk-granularity"), Some("8388608"));
    assert_eq!(header(&resp, "x-goog-upload-control-url"), Some(url));
}

#[tokio::test]
async fn the_js_sdk_alias_route_and_every_api_version_start_uploads() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    for path in ["upload/v1/files", "upload/v1beta/files", "upload/v1alpha/files", "v1beta/upload/v1beta/files"] {
        let resp = gemini
            .http
            .post(format!("{}/{path}", server.url))
            .header("x-goog-api-key", ALPHA_KEY)
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", "3")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let url = header(&resp, "x-goog-upload-url").unwrap().to_owned();
        let file = gemini.upload_chunks(&url, b"abc").await;
        assert_eq!(file["sizeBytes"], "3", "{path}");
    }
}

#[tokio::test]
async fn multipart_related_uploads_store_the_media_part() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let media = data(3 * MIB + 17, 5);
    let mut body = b"--XYZ\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".to_vec();
    body.extend_from_slice(br#"{"file": {"displayName": "multi", "name": "files/multi-1"}}"#);
    body.extend_from_slice(b"\r\n--XYZ\r\nContent-Type: image/png\r\n\r\n");
    body.extend_from_slice(&media);
    body.extend_from_slice(b"\r\n--XYZ--\r\n");
    let resp = gemini
        .http
        .post(format!("{}/upload/v1beta/files?uploadType=multipart", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("Content-Type", "multipart/related; boundary=XYZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let file = json_of(resp, StatusCode::OK).await["file"].clone();
    assert_eq!(file["name"], "files/multi-1");
    assert_eq!(file["displayName"], "multi");
    assert_eq!(file["mimeType"], "image/png");
    assert_eq!(file["sizeBytes"], json!(media.len().to_string()));
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&media)));

    let broken = gemini
        .http
        .post(format!("{}/upload/v1beta/files", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("X-Goog-Upload-Protocol", "multipart")
        .header("Content-Type", "multipart/related; boundary=XYZ")
        .body("--XYZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XYZ--\r\n")
        .send()
        .await
        .unwrap();
    let (status, _, message) = rpc_error(broken).await;
    assert_eq!(status, 400);
    assert!(message.contains("no media part"), "{message}");
    assert!(server.files_under("blobs/staging").is_empty());
}

#[tokio::test]
async fn raw_uploads_take_the_body_as_the_file() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let media = data(100_000, 6);
    let resp = gemini
        .http
        .post(format!("{}/upload/v1/files", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("X-Goog-Upload-Protocol", "raw")
        .header("Content-Type", "audio/mpeg")
        .body(media.clone())
        .send()
        .await
        .unwrap();
    let file = json_of(resp, StatusCode::OK).await["file"].clone();
    assert_eq!(file["mimeType"], "audio/mpeg");
    assert_eq!(file["sha256Hash"], json!(sha256_b64(&media)));
}

/// A part of a multipart body: its content type and bytes.
type Part<'a> = (&'a str, &'a [u8]);

/// A multipart body as a discovery client sends it, with the given parts after the boundary.
fn multipart_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(format!("--XYZ\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XYZ--\r\n");
    body
}

#[tokio::test]
async fn a_multipart_upload_takes_exactly_one_metadata_part_and_one_media_part() {
    let server = Server::builder().env("FILEGATE_PROJECT_QUOTA_BYTES", 10 * MIB).start();
    let gemini = server.gemini(ALPHA_KEY);
    let metadata: &[u8] = br#"{"file": {"displayName": "multi"}}"#;
    let media = data(MIB, 7);
    let cases: [(&str, Vec<Part<'_>>); 3] = [
        ("metadata twice", vec![("application/json", metadata), ("application/json", metadata), ("video/mp4", &media)]),
        ("two media parts", vec![("application/json", metadata), ("video/mp4", &media), ("video/mp4", &media)]),
        ("metadata only", vec![("application/json", metadata)]),
    ];
    for (what, parts) in cases {
        let resp = gemini
            .http
            .post(format!("{}/upload/v1beta/files?uploadType=multipart", server.url))
            .header("x-goog-api-key", ALPHA_KEY)
            .header("Content-Type", "multipart/related; boundary=XYZ")
            .body(multipart_body(&parts))
            .send()
            .await
            .unwrap();
        let (status, code, message) = rpc_error(resp).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"), "{what}: {message}");
        assert!(message.contains("two parts") || message.contains("no media part"), "{what}: {message}");
    }
    let listed = json_of(gemini.get("v1beta/files").await, StatusCode::OK).await;
    assert_eq!(listed, json!({}), "nothing of a refused multipart upload is kept");
    eventually(|| server.files_under("blobs").is_empty(), "no bytes are left behind").await;
    // The quota the refused uploads reserved is free again: the whole quota fits one file.
    gemini.upload(&data(10 * MIB, 8), json!({})).await;

    let wrong_type = gemini
        .http
        .post(format!("{}/upload/v1beta/files", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .header("X-Goog-Upload-Protocol", "multipart")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    let (status, _, message) = rpc_error(wrong_type).await;
    assert_eq!(status, 400);
    assert!(message.contains(r#"(got "text/plain")"#), "the content type is named: {message}");
}

#[tokio::test]
async fn a_cancel_does_not_wait_for_a_chunk_that_is_still_arriving() {
    let server = Server::builder().env("FILEGATE_PROJECT_QUOTA_BYTES", 4 * MIB).start();
    let gemini = server.gemini(ALPHA_KEY);
    let url = gemini.start_ok(4 * MIB as u64, json!({})).await;
    // A chunk that trickles: 16 KiB every 100 ms (4 MiB would take 25 s), always within the idle timeout.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let trickle = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for _ in 0..256 {
                if tx.send(Ok(vec![7u8; 16 * 1024])).await.is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let chunk = {
        let (http, url) = (gemini.http.clone(), url.clone());
        tokio::spawn(async move {
            http.post(url)
                .header("X-Goog-Upload-Command", "upload, finalize")
                .header("X-Goog-Upload-Offset", "0")
                .header("Content-Length", (4 * MIB).to_string())
                .body(body)
                .send()
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let cancel = gemini.command(&url, "cancel", None, vec![]).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(header(&cancel, "x-goog-upload-status"), Some("cancelled"));
    let pieces = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pieces < 100, "the cancel answered while the chunk was still arriving ({pieces} of 256 pieces sent)");
    let chunk = chunk.await.unwrap();
    if let Ok(reply) = chunk {
        // The chunk's request ends with the session: never a success.
        assert!(reply.status().is_client_error(), "{}", reply.status());
        assert_eq!(header(&reply, "x-goog-upload-status"), Some("cancelled"));
    }
    eventually(|| server.files_under("blobs/staging").is_empty(), "the staged bytes are gone").await;
    gemini.upload(&data(4 * MIB, 3), json!({})).await; // the whole quota is free again
    trickle.abort();
}

#[tokio::test]
async fn media_types_must_be_real_and_a_deployment_may_narrow_them() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    for registered in ["application/cu-seeme", "application/octet-stream", "audio/mpeg"] {
        let file = gemini.upload(b"x", json!({"file": {"mimeType": registered}})).await;
        assert_eq!(file["mimeType"], registered);
    }
    let (status, code, message) =
        rpc_error(gemini.start(1, json!({"file": {"mimeType": "bad/mime_type"}})).await).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (400, "INVALID_ARGUMENT", "Unsupported MIME type: bad/mime_type")
    );

    let narrow = Server::builder().env("FILEGATE_ALLOWED_MIME_TYPES", "video/*, application/pdf").start();
    let gemini = narrow.gemini(ALPHA_KEY);
    gemini.upload(b"x", json!({"file": {"mimeType": "video/mp4"}})).await;
    gemini.upload(b"x", json!({"file": {"mimeType": "application/pdf"}})).await;
    let (status, _, message) = rpc_error(gemini.start(1, json!({"file": {"mimeType": "image/png"}})).await).await;
    assert_eq!((status, message.as_str()), (400, "Unsupported MIME type: image/png"));
    let (status, _, _) = rpc_error(gemini.start(1, json!({})).await).await;
    assert_eq!(status, 400, "no type means application/octet-stream, which this deployment refuses");
}
