//! Every spelling of a filegate file or cache that a model request can carry is resolved for the caller's
//! project or refused, wherever in the request it is — never passed upstream as the caller wrote it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::model::{asking_about, call, gemini_api, saw, upload};
use crate::support::*;

/// The model calls the fake received since `before` of them.
fn calls_since(fake: &FakeGoogle, before: usize) -> usize {
    fake.model_calls().len() - before
}

#[tokio::test]
async fn every_spelling_of_a_file_reaches_the_model_as_that_file_or_is_refused_before_any_call() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let bytes = data(50_000, 3);
    let file = upload(&server, &bytes, "image/png").await;
    let id = file_id(&file);
    let path = "v1beta/models/gemini-test:generateContent";

    // The OpenAI id and the download URI name the same file, read by the model as its bytes.
    let download = file["downloadUri"].as_str().unwrap().to_owned();
    for spelling in [format!("file-{id}"), download] {
        let reply = json_of(call(&server, ALPHA_KEY, path, asking_about(&spelling, None)).await, StatusCode::OK).await;
        assert_eq!(saw(&reply)[0]["sha256"], sha256_hex(&bytes), "{spelling}");
    }
    // Another project's file, in those spellings, is missing; and spellings of filegate's that name no file
    // are refused too — none of them reaches the upstream.
    let before = fake.model_calls().len();
    for spelling in [
        format!("file-{id}"),
        format!("files//{id}"),
        "files/../x".to_owned(),
        format!("{}/upload/v1beta/files?upload_id=x", server.url),
    ] {
        let key = if spelling.starts_with("file-") { BETA_KEY } else { ALPHA_KEY };
        let (status, code, message) = rpc_error(call(&server, key, path, asking_about(&spelling, None)).await).await;
        assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{spelling}: {message}");
    }
    assert_eq!(calls_since(&fake, before), 0, "nothing was sent");
}

#[tokio::test]
async fn a_cache_named_anywhere_in_a_request_is_the_caller_s_or_missing() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let text = json!([{"role": "user", "parts": [{"text": "A long shared context"}]}]);
    let create = json!({"model": "models/gemini-test", "contents": text, "ttl": "600s"});
    let alpha = json_of(call(&server, ALPHA_KEY, "v1beta/cachedContents", create.clone()).await, StatusCode::OK).await;
    let beta = json_of(call(&server, BETA_KEY, "v1beta/cachedContents", create).await, StatusCode::OK).await;
    let upstream_names = fake.caches();
    assert_eq!(upstream_names.len(), 2);
    let question = json!([{"role": "user", "parts": [{"text": "Count me"}]}]);
    let count = |cache: &str| json!({"generateContentRequest": {"model": "models/gemini-test", "contents": question, "cachedContent": cache}});

    // countTokens' nested request: the caller's own cache is renamed for the upstream and counted.
    let path = "v1beta/models/gemini-test:countTokens";
    let counted =
        json_of(call(&server, ALPHA_KEY, path, count(alpha["name"].as_str().unwrap())).await, StatusCode::OK).await;
    assert!(counted["totalTokens"].as_u64().unwrap() > 0, "{counted}");
    let sent = fake.model_calls().last().unwrap()["json"]["generateContentRequest"]["cachedContent"].clone();
    assert!(upstream_names.iter().any(|n| *n == sent), "the upstream's name went up, not filegate's: {sent}");

    // Another project's cache, by filegate's name or by the upstream's, is missing, before any call.
    let before = fake.model_calls().len();
    let mut others = vec![beta["name"].as_str().unwrap().to_owned()];
    others.extend(upstream_names.iter().cloned());
    for other in &others {
        let (status, _, message) = rpc_error(call(&server, ALPHA_KEY, path, count(other)).await).await;
        assert_eq!(status, 403, "{other}: {message}");
    }
    assert_eq!(calls_since(&fake, before), 0, "nothing was sent");
}

#[tokio::test]
async fn a_batch_line_naming_a_cache_uses_the_caller_s_own_or_refuses_the_batch() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let text = json!([{"role": "user", "parts": [{"text": "context"}]}]);
    let create = json!({"model": "models/gemini-test", "contents": text, "ttl": "600s"});
    let alpha = json_of(call(&server, ALPHA_KEY, "v1beta/cachedContents", create.clone()).await, StatusCode::OK).await;
    let beta = json_of(call(&server, BETA_KEY, "v1beta/cachedContents", create).await, StatusCode::OK).await;
    let batch = |cache: &Value| {
        let line =
            json!({"request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "cachedContent": cache}});
        json!({"batch": {"inputConfig": {"requests": {"requests": [line]}}}})
    };
    let path = "v1beta/models/gemini-test:batchGenerateContent";

    let refused = call(&server, ALPHA_KEY, path, batch(&beta["name"])).await;
    let (status, _, message) = rpc_error(refused).await;
    assert_eq!(status, 403, "another project's cache in a line refuses the batch: {message}");

    let made = json_of(call(&server, ALPHA_KEY, path, batch(&alpha["name"])).await, StatusCode::OK).await;
    assert!(made["name"].as_str().unwrap().starts_with("batches/"), "{made}");
    // The requests uploaded to the Gemini API name the upstream's cache, not filegate's.
    let uploads: Vec<String> =
        fake.google_files().values().filter_map(|f| f["text"].as_str().map(str::to_owned)).collect();
    let requests = uploads.iter().find(|t| t.contains("cachedContent")).expect("the requests file was uploaded");
    assert!(!requests.contains(alpha["name"].as_str().unwrap()), "{requests}");
}
