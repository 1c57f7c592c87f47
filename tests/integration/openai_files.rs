//! The OpenAI surfaces: Files on the paths it shares with the Gemini Files API and the import API (uploads
//! as `multipart/form-data` streamed like any upload, OpenAI's shapes, one file in both id spellings, each
//! client told apart by what it sends), and what chat completions and responses refuse before any call.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::model::{call, gemini_api, upload};
use crate::support::*;

/// A `multipart/form-data` body: `fields` (name, value) around one file part.
fn form(
    before: &[(&str, &str)],
    filename: &str,
    mime: &str,
    bytes: &[u8],
    after: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let boundary = "filegate-test-boundary-7f3a";
    let mut body = Vec::new();
    let field = |body: &mut Vec<u8>, name: &str, value: &str| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    };
    for (name, value) in before {
        field(&mut body, name, value);
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    for (name, value) in after {
        field(&mut body, name, value);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn create(server: &Server, key: &str, (content_type, body): (String, Vec<u8>)) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/files", server.url))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn openai_get(server: &Server, key: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{}/{path}", server.url)).bearer_auth(key).send().await.unwrap()
}

#[tokio::test]
async fn an_openai_upload_is_one_file_on_every_surface() {
    let server = Server::start();
    let bytes = data(300_000, 4);
    let created = create(
        &server,
        ALPHA_KEY,
        form(&[("purpose", "user_data")], "talk.mp4", "application/octet-stream", &bytes, &[]),
    )
    .await;
    let file = json_of(created, StatusCode::OK).await;
    let id = file["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-") && id.len() <= 64, "{id}");
    assert_eq!(
        (&file["object"], &file["bytes"], &file["filename"], &file["purpose"], &file["status"]),
        (&json!("file"), &json!(bytes.len()), &json!("talk.mp4"), &json!("user_data"), &json!("processed"))
    );
    let gemini_id = id.strip_prefix("file-").unwrap();

    // The Gemini surface sees the same file, typed from its name, with the bytes' SHA-256.
    let gemini = json_of(server.gemini(ALPHA_KEY).get(&format!("v1/files/{gemini_id}")).await, StatusCode::OK).await;
    assert_eq!((&gemini["mimeType"], &gemini["sha256Hash"]), (&json!("video/mp4"), &json!(sha256_b64(&bytes))));
    let expiry = chrono::DateTime::parse_from_rfc3339(gemini["expirationTime"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(file["expires_at"].as_i64().unwrap(), expiry, "one expiry, as both surfaces show it");

    // OpenAI's retrieve, list, content (whole and a range) in either id spelling.
    for spelling in [id.as_str(), gemini_id] {
        let got = json_of(openai_get(&server, ALPHA_KEY, &format!("v1/files/{spelling}")).await, StatusCode::OK).await;
        assert_eq!(got["id"], id);
    }
    let listed = json_of(openai_get(&server, ALPHA_KEY, "v1/files?limit=10&order=desc").await, StatusCode::OK).await;
    assert_eq!(
        (&listed["object"], &listed["data"][0]["id"], &listed["has_more"]),
        (&json!("list"), &json!(id), &json!(false))
    );
    let content = openai_get(&server, ALPHA_KEY, &format!("v1/files/{id}/content")).await;
    assert_eq!(content.status(), StatusCode::OK);
    assert_eq!(content.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let ranged = reqwest::Client::new()
        .get(format!("{}/v1/files/{id}/content", server.url))
        .bearer_auth(ALPHA_KEY)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &bytes[10..20]);

    // Another project sees nothing, on either surface.
    assert_eq!(openai_get(&server, BETA_KEY, &format!("v1/files/{id}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(openai_get(&server, BETA_KEY, &format!("v1/files/{id}/content")).await.status(), StatusCode::NOT_FOUND);
    let theirs = json_of(openai_get(&server, BETA_KEY, "v1/files").await, StatusCode::OK).await;
    assert_eq!(theirs["data"], json!([]));

    // expires_after, before the file, sets the expiry; deleting answers OpenAI's shape.
    let short = create(
        &server,
        ALPHA_KEY,
        form(
            &[("purpose", "user_data"), ("expires_after[anchor]", "created_at"), ("expires_after[seconds]", "3600")],
            "a.txt",
            "text/plain",
            b"hello",
            &[],
        ),
    )
    .await;
    let short = json_of(short, StatusCode::OK).await;
    assert_eq!(short["expires_at"].as_i64().unwrap() - short["created_at"].as_i64().unwrap(), 3600);
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/files/{id}", server.url))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(deleted, StatusCode::OK).await, json!({"id": id, "object": "file", "deleted": true}));
    assert_eq!(server.gemini(ALPHA_KEY).get(&format!("v1/files/{gemini_id}")).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_wrong_form_keeps_nothing_and_says_what_is_wrong() {
    let server = Server::start();
    let bytes = data(50_000, 9);
    for (before, after, expected) in [
        (vec![("purpose", "fine-tune")], vec![], "purpose must be \"user_data\""),
        (vec![], vec![], "Missing required parameter: 'purpose'"),
        (vec![], vec![("purpose", "batch")], "purpose must be \"user_data\""),
        (vec![("purpose", "user_data")], vec![("expires_after[seconds]", "3600")], "before the file"),
        (
            vec![("purpose", "user_data"), ("expires_after[anchor]", "created_at"), ("expires_after[seconds]", "60")],
            vec![],
            "between 3600",
        ),
        (vec![("purpose", "user_data"), ("color", "blue")], vec![], "Unrecognized request argument supplied: color"),
    ] {
        let refused =
            create(&server, ALPHA_KEY, form(&before, "x.bin", "application/octet-stream", &bytes, &after)).await;
        let body = json_of(refused, StatusCode::BAD_REQUEST).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message} should say {expected}");
    }
    // The purpose after the file (as the Node SDK orders the form) is fine.
    let late = create(
        &server,
        ALPHA_KEY,
        form(&[], "late.bin", "application/octet-stream", &bytes, &[("purpose", "user_data")]),
    )
    .await;
    json_of(late, StatusCode::OK).await;
    let listed: Value = json_of(openai_get(&server, ALPHA_KEY, "v1/files").await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "only the good upload was kept: {listed}");
    let usage = json_of(server.gemini(ALPHA_KEY).get("v1beta/files").await, StatusCode::OK).await;
    assert_eq!(usage["files"].as_array().unwrap().len(), 1);
    let asc = openai_get(&server, ALPHA_KEY, "v1/files?order=asc").await;
    assert!(json_of(asc, StatusCode::BAD_REQUEST).await["error"]["message"].as_str().unwrap().contains("newest first"));
}

#[tokio::test]
async fn lists_page_with_after_and_the_gemini_client_keeps_its_shape_on_v1() {
    let server = Server::start();
    let mut ids = Vec::new();
    for i in 0..5 {
        let made = create(
            &server,
            ALPHA_KEY,
            form(&[("purpose", "user_data")], &format!("f{i}.txt"), "text/plain", b"x", &[]),
        )
        .await;
        ids.push(json_of(made, StatusCode::OK).await["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "v1/files?limit=2".to_owned();
    loop {
        let page = json_of(openai_get(&server, ALPHA_KEY, &path).await, StatusCode::OK).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        if page["has_more"] == false {
            break;
        }
        path = format!("v1/files?limit=2&after={}", page["last_id"].as_str().unwrap());
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    // google-genai on v1 (x-goog-api-key) still gets Gemini's list.
    let gemini = json_of(server.gemini(ALPHA_KEY).get("v1/files?pageSize=2").await, StatusCode::OK).await;
    assert_eq!(gemini["files"].as_array().unwrap().len(), 2);
    assert!(gemini["nextPageToken"].is_string());
}

#[tokio::test]
async fn a_file_the_model_cannot_read_is_refused_on_the_openai_surfaces_before_any_call() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let archive = upload(&server, &data(2_000, 6), "application/zip").await;
    let file_part = json!({"type": "file", "file": {"file_id": format!("file-{}", file_id(&archive))}});
    let asked = json!({"model": "gemini-test", "messages": [{"role": "user", "content": [file_part, {"type": "text", "text": "Read it"}]}]});
    let refused = json_of(crate::model::chat(&server, ALPHA_KEY, asked).await, StatusCode::BAD_REQUEST).await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("application/zip") && message.contains("cannot read"), "{message}");
    let responses = reqwest::Client::new()
        .post(format!("{}/v1/responses", server.url))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"model": "gemini-test", "input": [{"role": "user", "content": [
            {"type": "input_file", "file_id": format!("file-{}", file_id(&archive))}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(responses.status(), StatusCode::BAD_REQUEST);
    assert!(fake.model_calls().is_empty(), "nothing reached the model");
    // The native route leaves the verdict to the upstream, as Google's own API would give it.
    let native = call(
        &server,
        ALPHA_KEY,
        "v1beta/models/gemini-test:generateContent",
        json!({"contents": [{"role": "user",
        "parts": [{"fileData": {"fileUri": archive["uri"]}}]}]}),
    )
    .await;
    assert_eq!(native.status(), StatusCode::OK);
    assert_eq!(fake.model_calls().len(), 1);
}
