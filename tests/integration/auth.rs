//! API keys and project isolation.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn keys_are_accepted_in_every_form_google_accepts() {
    let server = Server::start();
    let gemini = server.gemini(ALPHA_KEY);
    let http = &gemini.http;
    let by_query = http.get(format!("{}/v1/files?key={ALPHA_KEY}", server.url)).send().await.unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    let by_bearer = http.get(format!("{}/v1beta/files", server.url)).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert!(json_of(by_bearer, StatusCode::OK).await.get("object").is_none(), "Gemini's list");
    // On v1 the paths are shared with the OpenAI surface: a bare Bearer there is an OpenAI client.
    let openai = http.get(format!("{}/v1/files", server.url)).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(json_of(openai, StatusCode::OK).await["object"], "list");
}

#[tokio::test]
async fn a_missing_key_is_403_and_a_wrong_key_is_api_key_invalid() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let missing = http.get(format!("{}/v1beta/files", server.url)).send().await.unwrap();
    let (status, code, _) = rpc_error(missing).await;
    assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"));
    let missing_openai = http.get(format!("{}/v1/files", server.url)).send().await.unwrap();
    assert_eq!(json_of(missing_openai, StatusCode::UNAUTHORIZED).await["error"]["code"], "missing_api_key");
    let wrong = server.gemini("not-a-key").get("v1/files").await;
    let body = json_of(wrong, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["error"]["message"], "API key not valid. Please pass a valid API key.");
    assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let start = server.gemini("not-a-key").start(3, json!({})).await;
    assert_eq!(start.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn another_projects_file_answers_exactly_like_a_missing_one() {
    let server = Server::start();
    let alpha = server.gemini(ALPHA_KEY);
    let beta = server.gemini(BETA_KEY);
    let id = file_id(&alpha.upload(b"secret", json!({})).await);
    for path in [format!("v1/files/{id}"), format!("v1/files/{id}:download?alt=media")] {
        let foreign = rpc_error(beta.get(&path).await).await;
        let missing = rpc_error(beta.get(&path.replace(&id, "zzzzzzzzzzzzzzzz")).await).await;
        assert_eq!(foreign.0, 403);
        assert_eq!(foreign.1, missing.1);
        assert_eq!(foreign.2.replace(&id, "ID"), missing.2.replace("zzzzzzzzzzzzzzzz", "ID"));
    }
    assert_eq!(rpc_error(beta.delete(&format!("v1/files/{id}")).await).await.0, 403);
    assert!(json_of(beta.get("v1/files").await, StatusCode::OK).await.get("files").is_none());
    assert_eq!(alpha.get(&format!("v1/files/{id}")).await.status(), StatusCode::OK, "still there for its owner");
}

#[tokio::test]
async fn a_first_start_without_keys_creates_one_that_works_and_stores_only_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let database = TestDatabase::create();
    let output =
        filegate(&database, tmp.path()).args(["create-key", "--project", "team-x", "--label", "ci"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("fg_") && key.len() == 43, "{key}");
    let dump = database.dump(tmp.path());
    assert!(dump.windows(64).any(|w| w == sha256_hex(key.as_bytes()).as_bytes()), "the key's hash is stored");
    assert!(!dump.windows(key.len()).any(|w| w == key.as_bytes()), "the key must not be stored in clear");

    // A server without FILEGATE_API_KEYS accepts the key from the database and creates none.
    let mut cmd = filegate(&database, tmp.path());
    cmd.arg("serve")
        .env("FILEGATE_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let url = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_owned();
    let resp =
        reqwest::Client::new().get(format!("{url}/v1/files")).header("x-goog-api-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn an_empty_database_gets_a_default_key_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let database = TestDatabase::create();
    let start = || {
        let mut child = filegate(&database, tmp.path())
            .arg("serve")
            .env("FILEGATE_LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut before_listening = String::new();
        let mut url = String::new();
        for line in std::io::BufRead::lines(stdout) {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("listening on ") {
                url = u.to_owned();
                break;
            }
            before_listening.push_str(&line);
            before_listening.push('\n');
        }
        (child, before_listening, url)
    };
    let (mut child, printed, url) = start();
    let key = printed.split_whitespace().find(|w| w.starts_with("fg_")).expect("a key is printed").to_owned();
    let resp =
        reqwest::Client::new().get(format!("{url}/v1/files")).header("x-goog-api-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, printed, _) = start();
    assert!(!printed.contains("fg_"), "a second start prints no key: {printed}");
    child.kill().unwrap();
    child.wait().unwrap();
}
