//! `files:register`: objects already in Cloud Storage (the fake's) become files without a copy, read with
//! filegate's credentials, only from buckets the operator allows, never from filegate's own storage.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::FakeGoogle;
use crate::support::*;

async fn register(server: &Server, key: &str, uris: &[&str]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1beta/files:register", server.url))
        .header("x-goog-api-key", key)
        .json(&json!({ "uris": uris }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn registered_objects_are_files_whose_bytes_stay_in_their_bucket() {
    let fake = FakeGoogle::start(&["--bearer", "t"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .on_local_disk()
        .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
        .env("FILEGATE_REGISTER_BUCKETS", "gs://caller-media/talks/*")
        .env("FILEGATE_UPSTREAM", "vertex")
        .env("FILEGATE_VERTEX_PROJECT", "p")
        .env("FILEGATE_VERTEX_ENDPOINT", &fake.url)
        .env("FILEGATE_UPSTREAM_BEARER_TOKEN", "t")
        .env("FILEGATE_INLINE_MAX_BYTES", 10)
        .start();
    let video = data(3 * MIB + 5, 7);
    fake.put_object("caller-media/talks/keynote.mp4", &video).await;
    fake.put_object("caller-media/private/diary.txt", b"secret").await;

    let reply =
        json_of(register(&server, ALPHA_KEY, &["gs://caller-media/talks/keynote.mp4"]).await, StatusCode::OK).await;
    let file = &reply["files"][0];
    assert_eq!(file["storageUri"], "gs://caller-media/talks/keynote.mp4");
    assert_eq!(file["sizeBytes"], video.len().to_string());
    assert_eq!(file["sha256Hash"], sha256_b64(&video));
    assert_eq!(file["mimeType"], "video/mp4");
    assert_eq!((file["state"].as_str(), file["source"].as_str()), (Some("ACTIVE"), Some("REGISTERED")));
    let id = file_id(file);

    // Readable like any file, and Vertex reads it by its own URI, uncopied.
    let gemini = server.gemini(ALPHA_KEY);
    let downloaded = gemini.get(&format!("v1beta/files/{id}:download?alt=media")).await;
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), &video[..]);
    let asked = reqwest::Client::new()
        .post(format!("{}/v1/models/gemini-test:generateContent", server.url))
        .header("x-goog-api-key", ALPHA_KEY)
        .json(
            &json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": file["uri"]}}, {"text": "?"}]}]}),
        )
        .send()
        .await
        .unwrap();
    let answer = json_of(asked, StatusCode::OK).await;
    let text = answer["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    let seen: Value = serde_json::from_str(text).unwrap();
    assert_eq!(seen["saw"][0]["uri"], "gs://caller-media/talks/keynote.mp4");
    assert_eq!(seen["saw"][0]["mime"], "video/mp4");

    // The same object registered again is another file; deleting files never deletes the object.
    let again =
        json_of(register(&server, ALPHA_KEY, &["gs://caller-media/talks/keynote.mp4"]).await, StatusCode::OK).await;
    assert_ne!(file_id(&again["files"][0]), id);
    for name in [id.clone(), file_id(&again["files"][0])] {
        assert_eq!(gemini.delete(&format!("v1beta/files/{name}")).await.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fake.objects("caller-media/talks/").len(), 1, "the caller's object stays");

    // Not allowed, missing, and another project's view: all 403 alike; malformed: 400.
    for uri in ["gs://caller-media/private/diary.txt", "gs://caller-media/talks/nothing.mp4"] {
        let (status, code, message) = rpc_error(register(&server, ALPHA_KEY, &[uri]).await).await;
        assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{uri}: {message}");
    }
    let (status, _, message) = rpc_error(register(&server, ALPHA_KEY, &["https://example.com/x.mp4"]).await).await;
    assert_eq!(status, 400, "{message}");
    // All or nothing: one bad URI registers none of the others.
    let mixed =
        register(&server, ALPHA_KEY, &["gs://caller-media/talks/keynote.mp4", "gs://caller-media/talks/nothing.mp4"])
            .await;
    assert_eq!(mixed.status(), 403);
    let listed = json_of(gemini.get("v1beta/files").await, StatusCode::OK).await;
    assert!(listed.get("files").is_none_or(|f| f.as_array().unwrap().is_empty()), "{listed}");
    assert_eq!(gemini.get(&format!("v1beta/files/{id}")).await.status(), 403);
}

#[tokio::test]
async fn registering_is_off_by_default_and_never_reaches_filegate_s_own_bucket() {
    let off = Server::start();
    let (status, code, message) = rpc_error(register(&off, ALPHA_KEY, &["gs://any/x.mp4"]).await).await;
    assert_eq!((status, code.as_str()), (501, "UNIMPLEMENTED"));
    assert!(message.contains("FILEGATE_REGISTER_BUCKETS"), "{message}");

    // A server keeping its bytes in gs://filegate-own/prod with every bucket allowed: beta cannot register
    // alpha's stored object by guessing its key.
    let fake = FakeGoogle::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .on_local_disk()
        .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
        .env("FILEGATE_BLOB_STORE", "gs://filegate-own/prod")
        .env("FILEGATE_REGISTER_BUCKETS", "gs://*")
        .start();
    let file = server.gemini(ALPHA_KEY).upload(b"alpha's bytes", json!({"file": {"mimeType": "text/plain"}})).await;
    let stored = fake.objects("filegate-own/prod/files/");
    assert_eq!(stored.len(), 1);
    let uri = format!("gs://{}", stored[0]);
    assert_eq!(file["storageUri"], uri);
    // Whatever the spelling (the store drops empty segments, HTTPS URLs decode), and whoever asks.
    let key = uri.strip_prefix("gs://filegate-own/prod/").unwrap();
    for spelling in own_object_spellings("filegate-own", "prod", key) {
        for caller in [BETA_KEY, ALPHA_KEY] {
            let (status, ..) = rpc_error(register(&server, caller, &[&spelling]).await).await;
            assert!(status == 403 || status == 400, "{spelling} registered by {caller}: {status}");
        }
    }
    let listed = json_of(server.gemini(BETA_KEY).get("v1beta/files").await, StatusCode::OK).await;
    assert!(listed.get("files").is_none(), "beta has no file: {listed}");
    fake.put_object("filegate-own/elsewhere/ok.txt", b"fine").await;
    let allowed =
        json_of(register(&server, BETA_KEY, &["gs://filegate-own/elsewhere/ok.txt"]).await, StatusCode::OK).await;
    assert_eq!(allowed["files"][0]["mimeType"], "text/plain");
}

/// Ways to name the object `key` under `gs://{bucket}/{prefix}`, each of which a store or a model could
/// take for it.
pub fn own_object_spellings(bucket: &str, prefix: &str, key: &str) -> Vec<String> {
    let encoded = key.replace('/', "%2F");
    vec![
        format!("gs://{bucket}/{prefix}/{key}"),
        format!("gs://{bucket}//{prefix}/{key}"),
        format!("gs://{bucket}///{prefix}//{key}"),
        format!("gs://{bucket}/{prefix}/{key}/"),
        format!("GS://{bucket}/{prefix}/{key}"),
        format!("gs://{bucket}/./{prefix}/{key}"),
        format!("gs://{bucket}/{prefix}/x/../{key}"),
        format!("gs://{bucket}/{prefix}%2F{key}"),
        format!("gs://{bucket}/%70{}/{key}", &prefix[1..]),
        format!("https://storage.googleapis.com/{bucket}/{prefix}/{key}"),
        format!("https://storage.cloud.google.com/{bucket}//{prefix}/{key}"),
        format!("https://{bucket}.storage.googleapis.com/{prefix}/{encoded}"),
        format!("http://STORAGE.googleapis.com/{bucket}/{prefix}/{key}?alt=media"),
    ]
}

#[tokio::test]
async fn an_allowed_gs_object_reaches_the_gemini_api_inline_or_is_refused_with_what_to_do() {
    let fake = FakeGoogle::start(&["--api-key", crate::fake_google::GEMINI_KEY]);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .on_local_disk()
        .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
        .env("FILEGATE_REGISTER_BUCKETS", "gs://caller-media/*")
        .env("FILEGATE_UPSTREAM", "gemini")
        .env("FILEGATE_GEMINI_ENDPOINT", &fake.url)
        .env("FILEGATE_GEMINI_API_KEY", crate::fake_google::GEMINI_KEY)
        .env("FILEGATE_INLINE_MAX_BYTES", 100_000)
        .start();
    let small = data(50_000, 1);
    fake.put_object("caller-media/photo.png", &small).await;
    fake.put_object("caller-media/talk.mp4", &data(200_000, 2)).await;
    let ask =
        |uri: &str| json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": uri}}, {"text": "?"}]}]});
    let path = "v1beta/models/gemini-test:generateContent";

    // The Gemini API cannot read Cloud Storage: the object goes inline, its type from its name.
    let reply =
        json_of(crate::model::call(&server, ALPHA_KEY, path, ask("gs://caller-media/photo.png")).await, StatusCode::OK)
            .await;
    let seen = crate::model::saw(&reply);
    assert_eq!((&seen[0]["via"], &seen[0]["sha256"]), (&json!("inline"), &json!(sha256_hex(&small))), "{seen:?}");
    assert_eq!(seen[0]["mime"], "image/png");
    let sent = fake.model_calls().last().unwrap()["json"].to_string();
    assert!(!sent.contains("gs://"), "no gs:// URI went to the Gemini API: {sent}");

    // Too large to go inline: refused, saying how it can reach the model, before any call.
    let before = fake.model_calls().len();
    let refused = crate::model::call(&server, ALPHA_KEY, path, ask("gs://caller-media/talk.mp4")).await;
    let (status, _, message) = rpc_error(refused).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("files:register"), "{message}");
    assert_eq!(fake.model_calls().len(), before);
}
