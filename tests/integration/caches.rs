//! Context caches (`cachedContents`) and the Vertex AI shaped routes, against the fake of Google's services:
//! a cache made from a filegate file reaches the upstream with the reference rewritten (one copy, shared by
//! every cache), belongs to its project, and holds its copy until it expires, whatever happens to the file.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::model::{assert_no_client_key, call, fake_vertex, gemini_api, saw, upload, vertex};
use crate::support::*;

fn video_contents(file: &Value) -> Value {
    json!([{"role": "user", "parts": [{"fileData": {"fileUri": file["uri"], "mimeType": "video/mp4"}}]}])
}

async fn send(
    server: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().request(method, format!("{}/{path}", server.url)).header("x-goog-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The bodies of the cache creations the upstream received.
fn cache_creations(fake: &FakeGoogle) -> Vec<Value> {
    let creations = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/cachedContents")));
    creations.map(|r| r["json"].clone()).collect()
}

#[tokio::test]
async fn a_cache_of_an_uploaded_video_reads_one_files_api_copy_that_outlives_the_file_until_the_cache_expires() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    // Small enough to go inline in a model call: a cache at the Gemini API still gets a Files API file.
    let bytes = data(200_000, 7);
    let file = upload(&server, &bytes, "video/mp4").await;
    let create = |ttl: &str| json!({"model": "models/gemini-test", "contents": video_contents(&file), "ttl": ttl, "displayName": "talk"});
    let short = json_of(call(&server, ALPHA_KEY, "v1beta/cachedContents", create("5s")).await, StatusCode::OK).await;
    // Taken before the request: the server counts the ttl from the moment it makes the cache, which is
    // before its answer arrives here.
    let made = std::time::Instant::now();
    let long = json_of(call(&server, ALPHA_KEY, "v1beta/cachedContents", create("10s")).await, StatusCode::OK).await;
    for cache in [&short, &long] {
        assert!(cache["name"].as_str().unwrap().starts_with("cachedContents/"), "{cache}");
        assert_eq!((&cache["model"], &cache["displayName"]), (&json!("models/gemini-test"), &json!("talk")));
    }
    assert_ne!(short["name"], long["name"]);

    // One copy at the Files API, named in both creations; the model part of each is the upstream's name.
    let google_files = fake.google_files();
    assert_eq!(google_files.len(), 1, "one upload, shared: {google_files:?}");
    let (google_name, copy) = google_files.iter().next().unwrap();
    assert_eq!(copy["sha256"], sha256_hex(&bytes));
    let creations = cache_creations(&fake);
    assert_eq!(creations.len(), 2);
    for creation in &creations {
        assert_eq!(creation["model"], "models/gemini-test");
        let uri = creation["contents"][0]["parts"][0]["fileData"]["fileUri"].as_str().unwrap();
        assert!(uri.ends_with(&format!("/files/{google_name}")), "{uri}");
    }

    // generateContent with the cache: the model reads what the cache holds, then the prompt.
    let ask = json!({"contents": [{"role": "user", "parts": [{"text": "Summarize"}]}], "cachedContent": short["name"]});
    let path = "v1beta/models/gemini-test:generateContent";
    let reply = json_of(call(&server, ALPHA_KEY, path, ask.clone()).await, StatusCode::OK).await;
    let seen = saw(&reply);
    assert_eq!((&seen[0]["sha256"], &seen[0]["via"]), (&json!(sha256_hex(&bytes)), &json!("files")));
    assert_eq!(seen[1]["text"], "Summarize");

    // The file goes; its copy stays while a cache holds it (the sweeper runs every second).
    let deleted = server.gemini(ALPHA_KEY).delete(&format!("v1beta/files/{}", file_id(&file))).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.google_files()[google_name]["deleted"], false, "held by two live caches");
    json_of(call(&server, ALPHA_KEY, path, ask).await, StatusCode::OK).await;

    // Deleting the longer cache does not shorten the hold it raised: the copy outlives the shorter one, and
    // goes once the deleted cache would have expired.
    let long_path = format!("v1beta/{}", long["name"].as_str().unwrap());
    let gone = send(&server, ALPHA_KEY, reqwest::Method::DELETE, &long_path, None).await;
    assert_eq!(json_of(gone, StatusCode::OK).await, json!({}));
    let again = send(&server, ALPHA_KEY, reqwest::Method::GET, &long_path, None).await;
    assert_eq!(rpc_error(again).await.0, 403, "a deleted cache answers like a missing one");
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(made.elapsed())).await;
    assert_eq!(fake.google_files()[google_name]["deleted"], false, "held until the deleted cache's expiry");
    let swept = std::time::Instant::now();
    while fake.google_files()[google_name]["deleted"] == false {
        assert!(swept.elapsed() < Duration::from_secs(20), "the copy outlived every hold");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(made.elapsed() >= Duration::from_secs(10), "not before the last hold ran out");
    assert_no_client_key(&fake);
}

#[tokio::test]
async fn caches_belong_to_their_project_and_only_their_expiry_changes() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let file = upload(&server, &data(1000, 3), "text/plain").await;
    let body = json!({"model": "models/gemini-test", "contents": video_contents(&file), "ttl": "300s"});
    let cache = json_of(call(&server, ALPHA_KEY, "v1beta/cachedContents", body.clone()).await, StatusCode::OK).await;
    let name = cache["name"].as_str().unwrap();
    let path = format!("v1beta/{name}");

    // Another project cannot use, read, change or delete it, nor make a cache of alpha's file.
    let calls_before = fake.requests().len();
    let ask = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "cachedContent": name});
    let used = call(&server, BETA_KEY, "v1beta/models/gemini-test:generateContent", ask.clone()).await;
    let (status, code, message) = rpc_error(used).await;
    assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"));
    assert_eq!(message, "CachedContent not found (or permission denied)");
    for (method, body) in [
        (reqwest::Method::GET, None),
        (reqwest::Method::PATCH, Some(json!({"ttl": "900s"}))),
        (reqwest::Method::DELETE, None),
    ] {
        assert_eq!(rpc_error(send(&server, BETA_KEY, method, &path, body).await).await.0, 403);
    }
    let foreign = call(&server, BETA_KEY, "v1beta/cachedContents", body).await;
    assert_eq!(rpc_error(foreign).await.0, 403, "alpha's file is not beta's to cache");
    let listed = send(&server, BETA_KEY, reqwest::Method::GET, "v1beta/cachedContents", None).await;
    assert_eq!(json_of(listed, StatusCode::OK).await, json!({"cachedContents": []}));
    assert_eq!(fake.requests().len(), calls_before, "refused before any upstream call");

    // Its owner lists, reads and extends it; nothing but the expiry may change.
    let listed = send(&server, ALPHA_KEY, reqwest::Method::GET, "v1beta/cachedContents", None).await;
    assert_eq!(json_of(listed, StatusCode::OK).await["cachedContents"][0]["name"], name);
    let longer = send(&server, ALPHA_KEY, reqwest::Method::PATCH, &path, Some(json!({"ttl": "7200s"}))).await;
    let longer = json_of(longer, StatusCode::OK).await;
    assert!(longer["expireTime"].as_str().unwrap() > cache["expireTime"].as_str().unwrap());
    let read = json_of(send(&server, ALPHA_KEY, reqwest::Method::GET, &path, None).await, StatusCode::OK).await;
    assert_eq!((&read["name"], &read["expireTime"]), (&json!(name), &longer["expireTime"]));
    let renamed = send(&server, ALPHA_KEY, reqwest::Method::PATCH, &path, Some(json!({"displayName": "x"}))).await;
    let (status, _, message) = rpc_error(renamed).await;
    assert_eq!(status, 400);
    assert!(message.contains("ttl or expireTime"), "{message}");
    json_of(call(&server, ALPHA_KEY, "v1beta/models/gemini-test:generateContent", ask).await, StatusCode::OK).await;
}

#[tokio::test]
async fn vertex_mode_paths_reach_the_configured_upstream_with_caches_and_clips() {
    let fake = fake_vertex();
    let server = vertex(&fake).start();
    let bytes = data(100_000, 9);
    let file = upload(&server, &bytes, "video/mp4").await;
    let clip = json!({"startOffset": "1s", "endOffset": "5s", "fps": 2});
    let contents = json!([{"role": "user", "parts": [
        {"fileData": {"fileUri": file["uri"], "mimeType": "video/mp4"}, "videoMetadata": clip,
         "mediaResolution": {"level": "MEDIA_RESOLUTION_LOW"}},
        {"text": "What happens?"}]}]);

    // Express mode (an API key, no project) and the project-scoped path alike; the caller's project and
    // location are not filegate's and never reach the upstream.
    for path in [
        "v1beta1/publishers/google/models/gemini-test:generateContent",
        "v1/projects/callers-project/locations/europe-west4/publishers/google/models/gemini-test:generateContent",
    ] {
        let reply = json_of(call(&server, ALPHA_KEY, path, json!({"contents": contents})).await, StatusCode::OK).await;
        let seen = saw(&reply);
        assert_eq!(seen[0]["sha256"], sha256_hex(&bytes), "{path}");
        assert_eq!(seen[0]["videoMetadata"], clip, "the clip reached the model");
        assert_eq!(seen[0]["mediaResolution"]["level"], "MEDIA_RESOLUTION_LOW");
    }
    let upstream_paths: Vec<String> =
        fake.model_calls().iter().map(|c| c["path"].as_str().unwrap().to_owned()).collect();
    let expected = "/v1/projects/test-project/locations/global/publishers/google/models/gemini-test:generateContent";
    assert_eq!(upstream_paths, [expected, expected]);
    let unknown = call(&server, ALPHA_KEY, "v1beta/publishers/google/models/gemini-test:generateContent", json!({}));
    assert_eq!(unknown.await.status(), StatusCode::NOT_FOUND, "v1beta is not a Vertex AI version");

    // The SDK in express mode names the model with "None" for its project and location.
    let model = "projects/None/locations/None/publishers/google/models/gemini-test";
    let create = json!({"model": model, "contents": contents, "ttl": "300s"});
    let path = "v1beta1/projects/callers-project/locations/us-central1/cachedContents";
    let cache = json_of(call(&server, ALPHA_KEY, path, create).await, StatusCode::OK).await;
    assert!(cache["name"].as_str().unwrap().starts_with("cachedContents/"));
    assert_eq!(cache["model"], model);
    let creation = cache_creations(&fake).pop().unwrap();
    assert_eq!(creation["model"], "projects/test-project/locations/global/publishers/google/models/gemini-test");
    assert_eq!(creation["contents"][0]["parts"][0]["videoMetadata"], clip);

    let id = cache["name"].as_str().unwrap().strip_prefix("cachedContents/").unwrap();
    let ask = json!({"contents": [{"role": "user", "parts": [{"text": "And then?"}]}],
                     "cachedContent": format!("projects/callers-project/locations/us-central1/cachedContents/{id}")});
    let reply = call(&server, ALPHA_KEY, "v1beta1/publishers/google/models/gemini-test:generateContent", ask).await;
    let seen = saw(&json_of(reply, StatusCode::OK).await);
    assert_eq!((&seen[0]["sha256"], &seen[0]["videoMetadata"]), (&json!(sha256_hex(&bytes)), &clip));
    let sent = fake.model_calls().pop().unwrap();
    assert!(sent["json"]["cachedContent"].as_str().unwrap().starts_with("projects/test-project/locations/global/"));
    let deleted = send(&server, ALPHA_KEY, reqwest::Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_no_client_key(&fake);
}
