//! Get, list, delete and download.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn list_pages_with_a_stable_token_and_clamps_the_page_size() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(file_id(&gemini.upload(&data(10, i), json!({})).await));
    }
    // An open upload is not listed.
    gemini.start_ok(5, json!({})).await;

    let first = json_of(gemini.get("v1/files").await, StatusCode::OK).await;
    assert_eq!(first["files"].as_array().unwrap().len(), 10, "the default page size is 10");

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &token {
            Some(t) => format!("v1/files?pageSize=7&pageToken={t}"),
            None => "v1/files?pageSize=7".into(),
        };
        let page = json_of(gemini.get(&query).await, StatusCode::OK).await;
        pages += 1;
        if pages == 2 {
            // Files added while paging do not shift later pages (they sort first, newest first).
            gemini.upload(b"late", json!({})).await;
        }
        for file in page["files"].as_array().unwrap() {
            seen.push(file_id(file));
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    ids.reverse();
    assert_eq!(seen, ids, "every file once, newest first");

    let clamped = json_of(gemini.get("v1/files?pageSize=1000").await, StatusCode::OK).await;
    assert_eq!(clamped["files"].as_array().unwrap().len(), 26);
    let (status, _, message) = rpc_error(gemini.get("v1/files?pageSize=-1").await).await;
    assert_eq!(status, 400);
    assert!(message.contains("pageSize"), "{message}");
    let (status, _, message) = rpc_error(gemini.get("v1/files?pageToken=garbage!").await).await;
    assert_eq!(status, 400);
    assert!(message.contains("page token"), "{message}");
}

#[tokio::test]
async fn an_empty_project_lists_as_an_empty_object() {
    let server = Server::start();
    let body = json_of(server.gemini(BETA_KEY).get("v1beta/files").await, StatusCode::OK).await;
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn delete_answers_an_empty_object_and_removes_row_and_bytes() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let file = gemini.upload(&data(1000, 1), json!({"file": {"name": "gone-soon"}})).await;
    assert_eq!(server.files_under("blobs/files").len(), 1);
    let resp = gemini.delete("v1/files/gone-soon").await;
    assert_eq!(json_of(resp, StatusCode::OK).await, json!({}));
    let (status, code, message) = rpc_error(gemini.get("v1/files/gone-soon").await).await;
    assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"));
    assert_eq!(message, "You do not have permission to access the File gone-soon or it may not exist.");
    assert!(server.files_under("blobs/files").is_empty(), "the bytes are deleted with the file");
    assert_eq!(rpc_error(gemini.delete("v1/files/gone-soon").await).await.0, 403);
    // The name is free again.
    let again = gemini.upload(b"new", json!({"file": {"name": "gone-soon"}})).await;
    assert_ne!(again["createTime"], file["createTime"]);
}

#[tokio::test]
async fn downloads_honour_ranges() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let bytes = data(5000, 3);
    let id = file_id(&gemini.upload(&bytes, json!({"file": {"mimeType": "application/pdf"}})).await);
    let path = format!("{}/v1/files/{id}:download?alt=media", server.url);
    let ranged =
        |range: &'static str| gemini.http.get(&path).header("x-goog-api-key", ALPHA_KEY).header("Range", range).send();
    let resp = ranged("bytes=100-199").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), Some("bytes 100-199/5000"));
    assert_eq!(header(&resp, "content-type"), Some("application/pdf"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &bytes[100..200]);
    let tail = ranged("bytes=-10").await.unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[4990..]);
    let beyond = ranged("bytes=5000-").await.unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&beyond, "content-range"), Some("bytes */5000"));
}

#[tokio::test]
async fn ids_are_unique_across_many_uploads() {
    use futures_util::StreamExt as _;
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    // Eight at a time: ids are drawn while other uploads draw theirs (and a bucket's round trips overlap).
    let uploads = futures_util::stream::iter(0..30).map(|_| gemini.upload(b"x", json!({}))).buffer_unordered(8);
    let ids: Vec<String> = uploads.map(|file| file_id(&file)).collect().await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 30, "duplicate ids among {ids:?}");
}

#[tokio::test]
async fn unknown_routes_answer_google_style_json() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    for path in ["nope", "v2/files", "v1/models", "v1/files/abc:copy"] {
        let (status, code, _) = rpc_error(gemini.get(path).await).await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{path}");
    }
    let put = gemini.http.put(format!("{}/v1/files/abc", server.url)).send().await.unwrap();
    assert_eq!(rpc_error(put).await.0, 405);
}

#[tokio::test]
async fn a_download_is_never_rendered_as_a_page_of_filegates_origin() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let page = b"<html><script>alert(document.cookie)</script></html>";
    let file =
        gemini.upload(page, json!({"file": {"mimeType": "text/html", "displayName": "x\"; evil=\u{e9}.html"}})).await;
    let resp = gemini.get(&format!("v1beta/files/{}:download?alt=media", file_id(&file))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), Some("text/html"));
    assert_eq!(header(&resp, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&resp, "content-disposition"), Some("attachment; filename*=UTF-8''x%22%3B%20evil%3D%C3%A9.html"));
    assert!(header(&resp, "content-security-policy").unwrap().contains("sandbox"));
    let error = gemini.get("v1beta/files/missing").await;
    assert_eq!(header(&error, "x-content-type-options"), Some("nosniff"), "on every response");
}
