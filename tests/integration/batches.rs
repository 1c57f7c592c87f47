//! The Batch API against the fake of Google's services: a JSONL of requests naming filegate files is checked
//! line by line, rewritten (every file by reference), submitted to either upstream, and its results become
//! a filegate file of the project; other projects see none of it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_google::{FakeGoogle, GEMINI_KEY};
use crate::model::{BEARER, assert_no_client_key, call, gemini_api, upload, vertex};
use crate::support::*;

fn line(key: &str, parts: Value) -> String {
    json!({"key": key, "request": {"contents": [{"role": "user", "parts": parts}]}}).to_string() + "\n"
}

async fn upload_jsonl(server: &Server, key: &str, text: &str) -> Value {
    server.gemini(key).upload(text.as_bytes(), json!({"file": {"mimeType": "jsonl"}})).await
}

async fn create(server: &Server, key: &str, input: &Value) -> reqwest::Response {
    let body = json!({"batch": {"displayName": "nightly", "inputConfig": {"fileName": input["name"]}}});
    call(server, key, "v1beta/models/gemini-test:batchGenerateContent", body).await
}

/// Polls the batch until it ends here (its results a file, or a failure). Patient: on a loaded machine the
/// results' copy into a bucket (moto) takes seconds.
async fn finished(server: &Server, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        let batch = json_of(server.gemini(ALPHA_KEY).get(&format!("v1beta/{name}")).await, StatusCode::OK).await;
        if batch["done"] == true {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the batch {name} did not finish: {}", server.log());
}

/// The results file of a finished batch, its lines by key.
async fn results(server: &Server, batch: &Value) -> Vec<Value> {
    let name = batch["metadata"]["output"]["responsesFile"].as_str().expect("a results file");
    let file = json_of(server.gemini(ALPHA_KEY).get(&format!("v1beta/{name}")).await, StatusCode::OK).await;
    assert_eq!((&file["source"], &file["mimeType"]), (&json!("GENERATED"), &json!("application/jsonl")));
    let bytes = server.gemini(ALPHA_KEY).get(&format!("v1beta/{name}:download?alt=media")).await;
    assert_eq!(bytes.status(), StatusCode::OK);
    bytes.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn saw(result: &Value) -> Vec<Value> {
    let text = result["response"]["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    serde_json::from_str::<Value>(text).unwrap()["saw"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_batch_over_uploaded_files_runs_at_the_gemini_api_and_its_results_become_a_file() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let (video, notes) = (data(120_000, 1), data(2_000, 2));
    let video_file = upload(&server, &video, "video/mp4").await;
    let notes_file = upload(&server, &notes, "text/plain").await;
    let jsonl =
        line("a", json!([{"fileData": {"fileUri": video_file["uri"], "mimeType": "video/mp4"}}, {"text": "Describe"}]))
            + "\n"
            + &line("b", json!([{"fileData": {"fileUri": format!("files/{}", file_id(&notes_file))}}]))
            + &line("c", json!([{"text": "Just text"}]))
            + &line("d", json!([{"fileData": {"fileUri": video_file["uri"]}}, {"text": "Again"}]));
    let input = upload_jsonl(&server, ALPHA_KEY, &jsonl).await;
    assert_eq!(input["mimeType"], "application/jsonl", "Google's `jsonl` is a JSONL file");

    let created = json_of(create(&server, ALPHA_KEY, &input).await, StatusCode::OK).await;
    let name = created["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("batches/"), "{created}");
    assert_eq!(created["metadata"]["state"], "BATCH_STATE_PENDING");
    assert_eq!(created["metadata"]["model"], "models/gemini-test");
    assert_eq!(created["metadata"]["inputConfig"]["fileName"], input["name"]);

    // Upstream: each file copied once (never inline in a batch), then the rewritten requests uploaded.
    let google_files = fake.google_files();
    assert_eq!(google_files.len(), 3, "two copies and the requests: {google_files:?}");
    let batch_request =
        fake.requests().into_iter().find(|r| r["path"].as_str().unwrap().ends_with(":batchGenerateContent"));
    let input_name = batch_request.unwrap()["json"]["batch"]["inputConfig"]["fileName"].as_str().unwrap().to_owned();
    assert_eq!(google_files[input_name.strip_prefix("files/").unwrap()]["mime"], "jsonl");

    // Other projects see nothing of it.
    let beta = server.gemini(BETA_KEY);
    assert_eq!(beta.get(&format!("v1beta/{name}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(beta.delete(&format!("v1beta/{name}")).await.status(), StatusCode::NOT_FOUND);
    let listed = json_of(beta.get("v1beta/batches").await, StatusCode::OK).await;
    assert_eq!(listed, json!({"operations": []}));

    let batch = finished(&server, &name).await;
    assert_eq!(batch["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert!(batch["metadata"]["endTime"].is_string());
    let lines = results(&server, &batch).await;
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a", "b", "c", "d"]);
    assert_eq!(
        (&saw(&lines[0])[0]["sha256"], &saw(&lines[0])[0]["via"]),
        (&json!(sha256_hex(&video)), &json!("files"))
    );
    assert_eq!(saw(&lines[1])[0]["sha256"], sha256_hex(&notes));
    assert_eq!(saw(&lines[2]), [json!({"text": "Just text"})]);
    assert_eq!(saw(&lines[3])[0]["sha256"], sha256_hex(&video));

    let listed = json_of(server.gemini(ALPHA_KEY).get("v1beta/batches").await, StatusCode::OK).await;
    assert_eq!(listed["operations"][0]["name"], name);
    let gone = json_of(server.gemini(ALPHA_KEY).delete(&format!("v1beta/{name}")).await, StatusCode::OK).await;
    assert_eq!(gone["done"], true);
    assert_eq!(server.gemini(ALPHA_KEY).get(&format!("v1beta/{name}")).await.status(), StatusCode::NOT_FOUND);
    let output = batch["metadata"]["output"]["responsesFile"].as_str().unwrap();
    assert_eq!(
        server.gemini(ALPHA_KEY).get(&format!("v1beta/{output}")).await.status(),
        StatusCode::OK,
        "results stay"
    );
    assert_no_client_key(&fake);
}

#[tokio::test]
async fn a_bad_line_refuses_the_batch_naming_it_before_anything_is_submitted() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let mine = upload(&server, &data(1000, 1), "text/plain").await;
    let theirs = server.gemini(BETA_KEY).upload(&data(1000, 2), json!({"file": {"mimeType": "text/plain"}})).await;
    let good = line("ok", json!([{"fileData": {"fileUri": mine["uri"]}}]));
    for (jsonl, expected) in [
        (good.clone() + "{not json\n", "line 2: invalid JSON"),
        (
            good.clone() + "\n" + &line("x", json!([{"fileData": {"fileUri": theirs["uri"]}}])),
            "line 3: You do not have permission",
        ),
        (good.clone() + "{\"key\": \"no request\"}\n", "line 2: each line is"),
        (String::new() + "\n\n", "no requests"),
    ] {
        let input = upload_jsonl(&server, ALPHA_KEY, &jsonl).await;
        let (status, code, message) = rpc_error(create(&server, ALPHA_KEY, &input).await).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_ARGUMENT"), "{message}");
        assert!(message.contains(expected), "{message} should contain {expected}");
    }
    // Another project's requests file is missing to this one.
    let foreign = upload_jsonl(&server, BETA_KEY, &good).await;
    assert_eq!(rpc_error(create(&server, ALPHA_KEY, &foreign).await).await.0, 403);
    let submitted = fake.requests().into_iter().filter(|r| r["path"].as_str().unwrap().contains("batch")).count();
    assert_eq!(submitted, 0, "nothing reached the upstream's batch API");
}

#[tokio::test]
async fn a_batch_at_vertex_reads_its_requests_from_the_staging_bucket_and_its_predictions_become_a_file() {
    let fake = FakeGoogle::start(&["--bearer", BEARER]);
    let tmp = tempfile::tempdir().unwrap();
    let server = vertex(&fake)
        .on_local_disk()
        .env("GOOGLE_SERVICE_ACCOUNT", fake.service_account(tmp.path()).display())
        .env("FILEGATE_VERTEX_STAGING_BUCKET", "gs://staging-bucket/copies")
        .start();
    let pdf = data(30_000, 5);
    let file = upload(&server, &pdf, "application/pdf").await;
    let jsonl = line("p1", json!([{"fileData": {"fileUri": file["uri"]}}, {"text": "Summarize"}]))
        + &line("p2", json!([{"text": "Hello"}]));
    let input = upload_jsonl(&server, ALPHA_KEY, &jsonl).await;
    let created = json_of(create(&server, ALPHA_KEY, &input).await, StatusCode::OK).await;
    let name = created["name"].as_str().unwrap().to_owned();

    // The job reads the rewritten requests from the staging bucket: the file by its staged copy.
    let job = fake.requests().into_iter().find(|r| r["path"].as_str().unwrap().ends_with("/batchPredictionJobs"));
    let job = job.expect("a batch prediction job")["json"].clone();
    assert_eq!(job["model"], "publishers/google/models/gemini-test");
    let input_uri = job["inputConfig"]["gcsSource"]["uris"][0].as_str().unwrap();
    assert!(input_uri.starts_with("gs://staging-bucket/copies/"), "{input_uri}");
    assert_eq!(job["outputConfig"]["gcsDestination"]["outputUriPrefix"], format!("{input_uri}-output/"));

    let batch = finished(&server, &name).await;
    assert_eq!(batch["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    let lines = results(&server, &batch).await;
    assert_eq!(lines.len(), 2);
    let staged = saw(&lines[0]);
    assert_eq!((&staged[0]["sha256"], &staged[0]["via"]), (&json!(sha256_hex(&pdf)), &json!("gs")));
    assert!(staged[0]["uri"].as_str().unwrap().starts_with("gs://staging-bucket/copies/"));
    assert_eq!(lines[1]["key"], "p2", "Vertex AI's lines keep the request line's fields");
    assert_no_client_key(&fake);
}

#[tokio::test]
async fn a_copy_the_upstream_lost_is_made_again_before_a_batch_is_submitted() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let bytes = data(5_000, 8);
    let file = upload(&server, &bytes, "text/plain").await;
    let input = upload_jsonl(&server, ALPHA_KEY, &line("k", json!([{"fileData": {"fileUri": file["uri"]}}]))).await;
    let first = json_of(create(&server, ALPHA_KEY, &input).await, StatusCode::OK).await;
    finished(&server, first["name"].as_str().unwrap()).await;
    let copies: Vec<String> = fake
        .google_files()
        .into_iter()
        .filter(|(_, f)| f["sha256"] == sha256_hex(&bytes) && f["deleted"] == false)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(copies.len(), 1);

    // Deleted behind filegate's back (Google's 48 hours, an operator's cleanup).
    let gone = reqwest::Client::new()
        .delete(format!("{}/v1beta/files/{}", fake.url, copies[0]))
        .header("x-goog-api-key", GEMINI_KEY)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    let second = json_of(create(&server, ALPHA_KEY, &input).await, StatusCode::OK).await;
    let batch = finished(&server, second["name"].as_str().unwrap()).await;
    let lines = results(&server, &batch).await;
    assert_eq!(saw(&lines[0])[0]["sha256"], sha256_hex(&bytes), "{lines:?}");
    let live =
        fake.google_files().into_iter().filter(|(_, f)| f["sha256"] == sha256_hex(&bytes) && f["deleted"] == false);
    assert_eq!(live.count(), 1, "a new copy replaced the lost one");
}

#[tokio::test]
async fn a_batch_is_cancelled_by_its_project_only() {
    let fake = FakeGoogle::start(&["--api-key", GEMINI_KEY]);
    let server = gemini_api(&fake).start();
    let input = upload_jsonl(&server, ALPHA_KEY, &line("k", json!([{"text": "Hi"}]))).await;
    let created = json_of(create(&server, ALPHA_KEY, &input).await, StatusCode::OK).await;
    let cancel = format!("v1beta/{}:cancel", created["name"].as_str().unwrap());
    let refused = call(&server, BETA_KEY, &cancel, json!({})).await;
    assert_eq!(rpc_error(refused).await.0, 404, "another project's batch is missing to it");
    let cancelled = json_of(call(&server, ALPHA_KEY, &cancel, json!({})).await, StatusCode::OK).await;
    assert_eq!((&cancelled["metadata"]["state"], &cancelled["done"]), (&json!("BATCH_STATE_CANCELLED"), &json!(true)));
    assert!(cancelled["metadata"].get("output").is_none());
    let cancels = fake.requests().into_iter().filter(|r| r["path"].as_str().unwrap().ends_with(":cancel")).count();
    assert_eq!(cancels, 1, "only the owner's cancel reached the upstream");
}
