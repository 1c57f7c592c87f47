//! The model front door: calls that reference filegate files, forwarded to the fake of Vertex AI and the
//! Gemini API (`fake_google.rs`), which says which bytes its "model" could read (their SHA-256) and
//! records every request filegate made.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::sources::Nginx;
use crate::support::*;

pub(crate) const BEARER: &str = "vertex-test-token";

/// A fake Vertex AI that reads `gs://` objects where this run's filegate stores files (the shared fake of
/// Cloud Storage when the run tests GCS).
pub(crate) fn fake_vertex() -> FakeGoogle {
    if std::env::var("FILEGATE_TEST_BLOBS").as_deref() == Ok("gcs") {
        FakeGoogle::start(&["--bearer", BEARER, "--gcs-url", &FakeGoogle::shared_gcs().gcs_url()])
    } else {
        FakeGoogle::start(&["--bearer", BEARER])
    }
}

/// A filegate whose model calls go to Vertex AI at `fake`, with a fixed bearer token.
pub(crate) fn vertex(fake: &FakeGoogle) -> crate::support::ServerBuilder {
    Server::builder()
        .env("FILEGATE_UPSTREAM", "vertex")
        .env("FILEGATE_VERTEX_PROJECT", "test-project")
        .env("FILEGATE_VERTEX_ENDPOINT", &fake.url)
        .env("FILEGATE_UPSTREAM_BEARER_TOKEN", BEARER)
        .env("FILEGATE_SWEEP_INTERVAL_SECONDS", 1)
}

/// A filegate whose model calls go to the Gemini API at `fake`.
pub(crate) fn gemini_api(fake: &FakeGoogle) -> crate::support::ServerBuilder {
    Server::builder()
        .env("FILEGATE_UPSTREAM", "gemini")
        .env("FILEGATE_GEMINI_ENDPOINT", &fake.url)
        .env("FILEGATE_GEMINI_API_KEY", GEMINI_KEY)
        .env("FILEGATE_SWEEP_INTERVAL_SECONDS", 1)
}

pub(crate) async fn call(server: &Server, key: &str, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/{path}", server.url))
        .header("x-goog-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn chat(server: &Server, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A user turn with one file part and a question.
pub(crate) fn asking_about(uri: &str, mime: Option<&str>) -> Value {
    let mut file_data = json!({"fileUri": uri});
    if let Some(mime) = mime {
        file_data["mimeType"] = json!(mime);
    }
    json!({"contents": [{"role": "user", "parts": [{"fileData": file_data}, {"text": "Describe it"}]}]})
}

/// What the fake model says it saw: its answer text is JSON.
pub(crate) fn saw(response: &Value) -> Vec<Value> {
    let text = response["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    serde_json::from_str::<Value>(text).unwrap()["saw"].as_array().unwrap().clone()
}

pub(crate) async fn upload(server: &Server, bytes: &[u8], mime: &str) -> Value {
    server.gemini(ALPHA_KEY).upload(bytes, json!({"file": {"mimeType": mime}})).await
}

/// No request the fake received carries a filegate key, in any header or body.
pub(crate) fn assert_no_client_key(fake: &FakeGoogle) {
    for request in fake.requests() {
        let text = request.to_string();
        assert!(!text.contains(ALPHA_KEY) && !text.contains(BETA_KEY), "a filegate key went upstream: {text}");
    }
}

#[tokio::test]
async fn vertex_reads_an_uploaded_file_by_gs_uri_or_inline_with_filegate_s_credentials() {
    let fake = fake_vertex();
    let server = vertex(&fake).start();
    let bytes = data(300_000, 1);
    let file = upload(&server, &bytes, "video/mp4").await;
    let uri = file["uri"].as_str().unwrap();

    // google-genai sends the file's uri and MIME type; a bare `files/{id}` without a type works too.
    for reference in [asking_about(uri, Some("video/mp4")), asking_about(&format!("files/{}", file_id(&file)), None)] {
        let response = json_of(
            call(&server, ALPHA_KEY, "v1beta/models/gemini-test:generateContent", reference).await,
            StatusCode::OK,
        )
        .await;
        let seen = saw(&response);
        assert_eq!(seen[0]["sha256"], sha256_hex(&bytes), "the model read the file's bytes: {seen:?}");
        assert_eq!(seen[0]["mime"], "video/mp4");
        assert_eq!(seen[1]["text"], "Describe it");
        let in_gcs = file["storageUri"].as_str().is_some_and(|u| u.starts_with("gs://"));
        assert_eq!(seen[0]["via"], if in_gcs { "gs" } else { "inline" });
        if in_gcs {
            assert_eq!(seen[0]["uri"], file["storageUri"], "a file in Cloud Storage goes by its own URI, uncopied");
        }
    }
    let calls = fake.model_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0]["path"],
        "/v1/projects/test-project/locations/global/publishers/google/models/gemini-test:generateContent"
    );
    assert_eq!(calls[0]["headers"]["authorization"], format!("Bearer {BEARER}"));
    assert!(calls[0]["headers"].get("x-goog-api-key").is_none());
    assert_no_client_key(&fake);
}

#[tokio::test]
async fn large_local_files_are_staged_in_a_bucket_once_and_removed_with_their_file() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let tmp = tempfile::tempdir().unwrap();
    let small_inline = |builder: crate::support::ServerBuilder| {
        builder
            .on_local_disk()
            .env("FILEGATE_INLINE_MAX_BYTES", 1000)
            .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
    };
    let bytes = data(5000, 2);

    // Without a staging bucket, a file too large to inline is refused before any call, naming the setting.
    let server = small_inline(vertex(&fake)).start();
    let file = upload(&server, &bytes, "application/pdf").await;
    let refused = call(
        &server,
        ALPHA_KEY,
        "v1/models/gemini-test:generateContent",
        asking_about(file["uri"].as_str().unwrap(), None),
    )
    .await;
    let (status, code, message) = rpc_error(refused).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(message.contains("FILEGATE_VERTEX_STAGING_BUCKET"), "{message}");
    assert!(fake.model_calls().is_empty());
    drop(server);

    let server =
        small_inline(vertex(&fake)).env("FILEGATE_VERTEX_STAGING_BUCKET", "gs://staging-bucket/copies").start();
    let file = upload(&server, &bytes, "application/pdf").await;
    let reference = asking_about(file["uri"].as_str().unwrap(), None);
    for _ in 0..2 {
        let response = call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", reference.clone()).await;
        let seen = saw(&json_of(response, StatusCode::OK).await);
        assert_eq!(
            (seen[0]["via"].as_str(), seen[0]["sha256"].as_str()),
            (Some("gs"), Some(sha256_hex(&bytes).as_str()))
        );
        assert!(seen[0]["uri"].as_str().unwrap().starts_with("gs://staging-bucket/copies/files/alpha/"), "{seen:?}");
        assert_eq!(seen[0]["mime"], "application/pdf", "the MIME type is filled in from the file");
    }
    assert_eq!(fake.objects("staging-bucket/").len(), 1, "one copy, reused by the second call");

    assert_eq!(server.gemini(ALPHA_KEY).delete(&format!("v1beta/files/{}", file_id(&file))).await.status(), 200);
    eventually(|| fake.objects("staging-bucket/").is_empty(), "the staged copy is deleted with its file").await;
}

#[tokio::test]
async fn the_gemini_api_gets_small_files_inline_and_large_ones_uploaded_once() {
    let fake = FakeGoogle::start(&[]);
    let server = gemini_api(&fake).env("FILEGATE_INLINE_MAX_BYTES", 2000).start();
    let small = data(1500, 3);
    let large = data(3 * MIB + 17, 4);
    let small_file = upload(&server, &small, "image/png").await;
    let large_file = upload(&server, &large, "video/mp4").await;
    let body = json!({"contents": [{"role": "user", "parts": [
        {"fileData": {"fileUri": small_file["uri"], "mimeType": "image/png"}},
        {"fileData": {"file_uri": large_file["uri"], "mime_type": "video/mp4"}},
        {"text": "Compare"}
    ]}]});
    for _ in 0..2 {
        let response = json_of(
            call(&server, ALPHA_KEY, "v1beta/models/gemini-test:generateContent", body.clone()).await,
            StatusCode::OK,
        )
        .await;
        let seen = saw(&response);
        assert_eq!(
            (seen[0]["via"].as_str(), seen[0]["sha256"].as_str()),
            (Some("inline"), Some(sha256_hex(&small).as_str()))
        );
        assert_eq!(
            (seen[1]["via"].as_str(), seen[1]["sha256"].as_str()),
            (Some("files"), Some(sha256_hex(&large).as_str()))
        );
    }
    let uploaded = fake.google_files();
    assert_eq!(uploaded.len(), 1, "uploaded once, reused: {uploaded:?}");
    // An error that is not about the copy (an unknown model) does not make filegate copy again.
    let missing = call(&server, ALPHA_KEY, "v1beta/models/missing-model:generateContent", body.clone()).await;
    assert_eq!(rpc_error(missing).await.0, 404);
    assert_eq!(fake.google_files().len(), 1);
    let (name, google) = uploaded.iter().next().unwrap();
    assert_eq!(
        (google["sha256"].as_str(), google["mime"].as_str()),
        (Some(sha256_hex(&large).as_str()), Some("video/mp4"))
    );
    for request in fake.requests() {
        assert_eq!(request["headers"]["x-goog-api-key"], GEMINI_KEY, "{}", request["path"]);
    }
    assert_no_client_key(&fake);

    // The upstream loses the copy: the next call makes it again, once, and succeeds.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1beta/files/{name}", fake.url))
        .header("x-goog-api-key", GEMINI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let response = call(&server, ALPHA_KEY, "v1beta/models/gemini-test:generateContent", body.clone()).await;
    assert_eq!(saw(&json_of(response, StatusCode::OK).await)[1]["sha256"], sha256_hex(&large));
    assert_eq!(fake.google_files().len(), 2);

    assert_eq!(server.gemini(ALPHA_KEY).delete(&format!("v1beta/files/{}", file_id(&large_file))).await.status(), 200);
    eventually(
        || fake.google_files().values().all(|f| f["deleted"] == true),
        "the Google copy is deleted with its file",
    )
    .await;
}

#[tokio::test]
async fn references_are_checked_for_the_caller_before_any_upstream_call() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let server = vertex(&fake).start();
    let theirs = server.gemini(BETA_KEY).upload(b"beta's", json!({"file": {"mimeType": "text/plain"}})).await;
    for uri in
        [theirs["uri"].as_str().unwrap().to_owned(), "files/nosuchfile".into(), format!("qfile-{}", file_id(&theirs))]
    {
        let response =
            call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", asking_about(&uri, None)).await;
        let (status, code, message) = rpc_error(response).await;
        assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{uri}");
        assert!(message.starts_with("You do not have permission to access the File"), "{message}");
    }
    let chat_reply = chat(
        &server,
        ALPHA_KEY,
        json!({"model": "gemini-test", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"},
            {"type": "file", "file": {"file_id": format!("qfile-{}", file_id(&theirs)), "format": "text/plain"}}
        ]}]}),
    )
    .await;
    let error = json_of(chat_reply, StatusCode::FORBIDDEN).await;
    assert_eq!(error["error"]["type"], "permission_error");

    // An upload still open is invisible (403); a broken request is named.
    let _open = server.gemini(ALPHA_KEY).start_ok(10, json!({"file": {"name": "files/still-open"}})).await;
    let response =
        call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", asking_about("files/still-open", None)).await;
    assert_eq!(rpc_error(response).await.0, 403);
    let response = call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", json!([1])).await;
    assert_eq!(rpc_error(response).await.1, "INVALID_ARGUMENT");
    let response = call(&server, ALPHA_KEY, "v1/models/a%2Fb:generateContent", json!({"contents": []})).await;
    assert!(rpc_error(response).await.2.contains("Invalid model name"));
    let response = call(&server, ALPHA_KEY, "v1/models/gemini-test:explode", json!({})).await;
    assert_eq!(rpc_error(response).await.0, 404);
    assert!(fake.model_calls().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn a_file_not_yet_active_answers_failed_precondition() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let server = vertex(&fake).env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32").start();
    // An import whose source never answers stays PROCESSING.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = format!("http://{}/slow.mp4", silent.local_addr().unwrap());
    let id = server.importer(ALPHA_KEY).create_ok(json!({"source_url": source, "model": "gemini-test"})).await;
    let response = call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", asking_about(&id, None)).await;
    let (status, code, message) = rpc_error(response).await;
    assert_eq!((status, code.as_str()), (400, "FAILED_PRECONDITION"));
    assert!(message.contains("not in an ACTIVE state"), "{message}");
    assert!(fake.model_calls().is_empty());
}

#[tokio::test]
async fn streams_pass_through_as_they_arrive_and_a_client_that_leaves_cancels_the_upstream() {
    let fake = fake_vertex();
    // alpha's key is an operator's: the public /metrics shows it the per-project series.
    let server = vertex(&fake).env("FILEGATE_ADMIN_KEYS", key_id(ALPHA_KEY)).start();
    let file = upload(&server, b"a short text", "text/plain").await;
    let body = asking_about(file["uri"].as_str().unwrap(), None);

    // Server-sent events: one `data:` line per response, the text across them the fake's whole answer.
    let sse = call(&server, ALPHA_KEY, "v1beta/models/gemini-test:streamGenerateContent?alt=sse", body.clone()).await;
    assert_eq!(sse.status(), 200);
    assert!(header(&sse, "content-type").unwrap().starts_with("text/event-stream"));
    let text = sse.text().await.unwrap();
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(events.len(), 3);
    let answer: String =
        events.iter().map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["saw"][0]["sha256"], sha256_hex(b"a short text"));
    assert_eq!(events[2]["usageMetadata"]["totalTokenCount"], 25);
    assert_eq!(fake.model_calls()[0]["query"]["alt"], "sse");

    // Without alt=sse, the stream is one JSON array.
    let array = json_of(
        call(&server, ALPHA_KEY, "v1beta/models/gemini-test:streamGenerateContent", body.clone()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(array.as_array().unwrap().len(), 3);

    // countTokens passes through too.
    let counted =
        json_of(call(&server, ALPHA_KEY, "v1beta/models/gemini-test:countTokens", body.clone()).await, StatusCode::OK)
            .await;
    assert_eq!(counted["totalTokens"], 20);

    // A slow stream: the first event arrives before the upstream has finished; leaving cancels it.
    fake.script(json!([{"chunk_delay": 2}])).await;
    let mut slow =
        call(&server, ALPHA_KEY, "v1beta/models/gemini-test:streamGenerateContent?alt=sse", body.clone()).await;
    let first =
        tokio::time::timeout(Duration::from_secs(1), slow.chunk()).await.expect("the first event is not held back");
    assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).starts_with("data: "));
    drop(slow);
    eventually(
        || fake.model_calls().last().is_some_and(|c| c["aborted"] == true),
        "the upstream request is dropped with the client's",
    )
    .await;
    let metrics = server.gemini(ALPHA_KEY).get("metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"filegate_model_calls_total{model="gemini-test",method="streamGenerateContent",outcome="cancelled"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"filegate_model_tokens_total{project="alpha",model="gemini-test",kind="prompt"} 40"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_errors_keep_their_meaning_on_both_surfaces() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let server = vertex(&fake).env("FILEGATE_UPSTREAM_IDLE_TIMEOUT_SECONDS", 1).start();
    let simple = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let quota =
        json!({"error": {"code": 429, "message": "Resource exhausted, try later.", "status": "RESOURCE_EXHAUSTED"}});

    fake.script(json!([{"status": 429, "body": quota, "headers": {"Retry-After": "7"}}])).await;
    let limited = call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple.clone()).await;
    assert_eq!(header(&limited, "retry-after"), Some("7"));
    assert_eq!(json_of(limited, StatusCode::TOO_MANY_REQUESTS).await, quota, "Google's own error, verbatim");

    fake.script(json!([{"status": 429, "body": quota, "headers": {"Retry-After": "7"}}])).await;
    let limited =
        chat(&server, ALPHA_KEY, json!({"model": "gemini-test", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
    assert_eq!(header(&limited, "retry-after"), Some("7"));
    let error = json_of(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        (error["error"]["type"].as_str(), error["error"]["message"].as_str()),
        (Some("rate_limit_error"), Some("Resource exhausted, try later."))
    );

    let missing = call(&server, ALPHA_KEY, "v1/models/missing-model:generateContent", simple.clone()).await;
    assert_eq!(rpc_error(missing).await.0, 404);

    // A proxy's HTML page in front of the upstream: callers get JSON in their surface's format, no markup.
    let page = "<html><body><h1>502 Bad Gateway</h1><script>alert(1)</script></body></html>";
    fake.script(json!([{"status": 502, "body": page, "content_type": "text/html"}, {"status": 502, "body": page, "content_type": "text/html"}])).await;
    let (status, code, message) =
        rpc_error(call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple.clone()).await).await;
    assert_eq!((status, code.as_str()), (502, "UNKNOWN"));
    assert!(!message.contains('<') && message.contains("text/html"), "{message}");
    let from_chat =
        chat(&server, ALPHA_KEY, json!({"model": "gemini-test", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
    let error = json_of(from_chat, StatusCode::BAD_GATEWAY).await;
    assert!(!error["error"]["message"].as_str().unwrap().contains('<'), "{error}");

    fake.script(json!([{"hang": 3}])).await;
    let (status, code, message) =
        rpc_error(call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple.clone()).await).await;
    assert_eq!((status, code.as_str()), (504, "DEADLINE_EXCEEDED"), "{message}");
    assert!(message.contains("Vertex AI sent nothing for 1 s"), "{message}");

    // Credentials the upstream refuses are filegate's problem, not the caller's: 502, saying so.
    let refused = vertex(&fake).env("FILEGATE_UPSTREAM_BEARER_TOKEN", "wrong-token").start();
    let (status, _, message) =
        rpc_error(call(&refused, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple.clone()).await).await;
    assert_eq!(status, 502);
    assert!(message.contains("refused filegate's credentials"), "{message}");

    // An upstream that is not there: 502 naming it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let nowhere = vertex(&fake).env("FILEGATE_VERTEX_ENDPOINT", format!("http://{closed}")).start();
    let (status, _, message) =
        rpc_error(call(&nowhere, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple.clone()).await).await;
    assert_eq!(status, 502);
    assert!(message.starts_with("Vertex AI is unreachable"), "{message}");

    // Model calls off (the default): 501 with what to set.
    let off = Server::start();
    let (status, code, message) =
        rpc_error(call(&off, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple).await).await;
    assert_eq!((status, code.as_str()), (501, "UNIMPLEMENTED"));
    assert!(message.contains("FILEGATE_UPSTREAM"), "{message}");
}

#[tokio::test]
async fn chat_completions_read_an_imported_file_copied_ahead_for_the_gemini_api() {
    let nginx = Nginx::start();
    let fake = FakeGoogle::start(&[]);
    let server = gemini_api(&fake)
        .env("FILEGATE_INLINE_MAX_BYTES", 1000)
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .start();
    let bytes = data(2 * MIB, 5);
    let importer = server.importer(ALPHA_KEY);
    let id = importer.create_ok(json!({"source_url": nginx.put("talk.mp3", &bytes), "model": "gemini-test"})).await;
    assert_eq!(importer.settle(&id).await["status"], "ready");
    // The copy the model will need is made as soon as the import is ready, before any call.
    eventually(|| fake.google_files().len() == 1, "the imported file is uploaded ahead").await;
    assert!(fake.model_calls().is_empty());

    let request = json!({
        "model": "gemini-test",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [
                {"type": "text", "text": "Summarize the audio."},
                {"type": "file", "file": {"file_id": id, "format": "audio/mpeg"}}
            ]}
        ],
        "max_tokens": 64
    });
    let completion = json_of(chat(&server, ALPHA_KEY, request.clone()).await, StatusCode::OK).await;
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let answer: Value = serde_json::from_str(completion["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    let seen = answer["saw"].as_array().unwrap();
    assert_eq!(seen[1]["sha256"], sha256_hex(&bytes), "{seen:?}");
    assert_eq!(seen[1]["mime"], "audio/mpeg");
    assert_eq!(seen[2]["text"], "Answer briefly.", "the system message is the system instruction");
    assert_eq!(completion["usage"], json!({"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}));
    let sent = &fake.model_calls()[0]["json"];
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 64);
    assert_eq!(fake.google_files().len(), 1, "the copy made ahead was used");

    // Streaming: chunks, the role first, usage when asked, then [DONE].
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let reply = chat(&server, ALPHA_KEY, streamed).await;
    assert!(header(&reply, "content-type").unwrap().starts_with("text/event-stream"));
    let text = reply.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&content).unwrap()["saw"][1]["sha256"], sha256_hex(&bytes));
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 35);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn application_default_credentials_sign_as_the_service_account() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let tmp = tempfile::tempdir().unwrap();
    let key_path = tmp.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key_path)
        .output()
        .expect("openssl makes a throwaway key");
    assert!(made.status.success());
    let account = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "key-1",
        "private_key": std::fs::read_to_string(&key_path).unwrap(),
        "client_email": "filegate@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token"
    });
    let credentials = tmp.path().join("adc.json");
    std::fs::write(&credentials, account.to_string()).unwrap();
    // On local disk: a run on GCS gives its servers a service-account file (the fake's), which, being
    // first in the credential chain, would be used instead.
    let server = Server::builder()
        .on_local_disk()
        .env("FILEGATE_UPSTREAM", "vertex")
        .env("FILEGATE_VERTEX_PROJECT", "test-project")
        .env("FILEGATE_VERTEX_ENDPOINT", &fake.url)
        .env("GOOGLE_APPLICATION_CREDENTIALS", credentials.display())
        .start();
    let simple = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    json_of(call(&server, ALPHA_KEY, "v1/models/gemini-test:generateContent", simple).await, StatusCode::OK).await;
    let authorization = fake.model_calls()[0]["headers"]["authorization"].as_str().unwrap().to_owned();
    let jwt = authorization.strip_prefix("Bearer ").unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["iss"], "filegate@test-project.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
}

#[tokio::test]
async fn gs_uris_reach_a_model_only_as_the_caller_s_own_files_or_objects_the_operator_allows() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let tmp = tempfile::tempdir().unwrap();
    let server = vertex(&fake)
        .on_local_disk()
        .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
        .env("FILEGATE_BLOB_STORE", "gs://filegate-own/prod")
        .env("FILEGATE_REGISTER_BUCKETS", "gs://caller-media/*")
        .start();
    let bytes = data(5000, 21);
    let file = upload(&server, &bytes, "text/plain").await;
    let storage = file["storageUri"].as_str().unwrap();
    let key = storage.strip_prefix("gs://filegate-own/prod/").unwrap();
    let generate = "v1beta/models/gemini-test:generateContent";

    // Its owner may name the file by its storage URI, in any spelling that names it: filegate resolves it
    // as that file and sends the one exact URI.
    for spelling in [
        storage.to_owned(),
        format!("gs://filegate-own//prod/{key}"),
        format!("https://storage.googleapis.com/filegate-own/prod/{key}"),
    ] {
        let response = call(&server, ALPHA_KEY, generate, asking_about(&spelling, None)).await;
        let seen = saw(&json_of(response, StatusCode::OK).await);
        assert_eq!(
            (seen[0]["uri"].as_str(), seen[0]["sha256"].as_str()),
            (Some(storage), Some(sha256_hex(&bytes).as_str()))
        );
        assert_eq!(seen[0]["mime"], "text/plain", "the file's own type");
    }
    let calls = fake.model_calls().len();

    // Another project gets what a missing file gets, whatever the spelling, and nothing goes upstream.
    for spelling in crate::register::own_object_spellings("filegate-own", "prod", key) {
        let response = call(&server, BETA_KEY, generate, asking_about(&spelling, Some("text/plain"))).await;
        let (status, code, _) = rpc_error(response).await;
        assert!(
            matches!((status, code.as_str()), (403, "PERMISSION_DENIED") | (400, "INVALID_ARGUMENT")),
            "{spelling}: {status} {code}"
        );
    }
    for elsewhere in ["gs://filegate-own/prod/staging/x/tail-5", "gs://other-bucket/a.txt", "gs://caller-mediax/a.txt"]
    {
        let (status, ..) =
            rpc_error(call(&server, BETA_KEY, generate, asking_about(elsewhere, Some("text/plain"))).await).await;
        assert_eq!(status, 403, "{elsewhere}");
    }
    assert_eq!(fake.model_calls().len(), calls, "no refused reference reached the upstream");

    // An object the operator allows passes, in the spelling that was checked.
    fake.put_object("caller-media/talks/a.txt", b"a public talk").await;
    let response =
        call(&server, BETA_KEY, generate, asking_about("gs://caller-media//talks/a.txt", Some("text/plain"))).await;
    let seen = saw(&json_of(response, StatusCode::OK).await);
    assert_eq!(seen[0]["uri"], "gs://caller-media/talks/a.txt");
}

#[tokio::test]
async fn file_references_are_capped_per_request_and_each_costs_its_inline_bytes() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let server = vertex(&fake).on_local_disk().env("FILEGATE_MODEL_MAX_FILE_REFERENCES", 50).start();
    let bytes = data(300, 31);
    let file = upload(&server, &bytes, "image/png").await;
    let parts = |n: usize| {
        let part = json!({"fileData": {"fileUri": file["uri"], "mimeType": "image/png"}});
        json!({"contents": [{"role": "user", "parts": vec![part; n]}]})
    };
    let generate = "v1beta/models/gemini-test:generateContent";
    let seen = saw(&json_of(call(&server, ALPHA_KEY, generate, parts(50)).await, StatusCode::OK).await);
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|s| s["via"] == "inline" && s["sha256"] == sha256_hex(&bytes)), "every part got the bytes");

    let calls = fake.model_calls().len();
    let (status, code, message) = rpc_error(call(&server, ALPHA_KEY, generate, parts(51)).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(message.contains("more than 50 files"), "{message}");
    assert_eq!(fake.model_calls().len(), calls, "refused before anything went upstream");
}
