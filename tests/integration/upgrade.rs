//! A rolling upgrade, as an operator runs one on a deployment of several nodes: the previous release's
//! node keeps serving while `filegate migrate` moves the schema forward and a node of this release joins;
//! an upload started on the old node finishes on the new one, and every node reads it back.
//!
//! The previous release is built by `scripts/previous-release.sh` (`scripts/test.sh` passes its path in
//! `FILEGATE_TEST_PREVIOUS_BINARY`).

use std::path::PathBuf;

use serde_json::json;

use crate::support::*;

fn version_of(binary: &std::path::Path) -> String {
    let out = std::process::Command::new(binary).arg("--version").output().expect("--version");
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_upload_started_on_the_previous_release_finishes_on_this_one_while_both_serve() {
    let Some(previous) = std::env::var_os("FILEGATE_TEST_PREVIOUS_BINARY").map(PathBuf::from) else {
        return skip("FILEGATE_TEST_PREVIOUS_BINARY names no previous release's binary");
    };
    let current = version_of(std::path::Path::new(env!("CARGO_BIN_EXE_filegate")));
    assert_ne!(version_of(&previous), current, "two different releases");

    let old = Server::builder().binary(previous.clone()).start();
    if !old.can_have_siblings() {
        return skip("needs PostgreSQL and a bucket");
    }
    let on_old = old.gemini(ALPHA_KEY);
    let bytes = data(2 * CHUNK + 1000, 17);
    let before = on_old.upload(&data(1000, 3), json!({})).await;
    let upload = on_old.start_ok(bytes.len() as u64, json!({})).await;
    let first = on_old.command(&upload, "upload", Some(0), bytes[..CHUNK].to_vec()).await;
    assert_eq!(first.status(), 200);

    // The schema moves forward under the running old node.
    let migrated = old.filegate().arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));

    // The old node keeps working on it: the next chunk, a list, a read.
    let second = on_old.command(&upload, "upload", Some(CHUNK as u64), bytes[CHUNK..2 * CHUNK].to_vec()).await;
    assert_eq!(second.status(), 200, "the previous release on the new schema");
    let listed = json_of(on_old.get("v1beta/files").await, reqwest::StatusCode::OK).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1, "{listed}");

    // A node of this release joins and finishes the upload; both read it back whole.
    let new = old.sibling_with(&[]);
    let on_new = new.gemini(ALPHA_KEY);
    let last = on_new.command(&upload, "upload, finalize", Some(2 * CHUNK as u64), bytes[2 * CHUNK..].to_vec()).await;
    let file = json_of(last, reqwest::StatusCode::OK).await;
    assert_eq!(file["file"]["sha256Hash"], json!(sha256_b64(&bytes)), "{file}");
    let id = file_id(&file["file"]);
    for (node, client) in [("old", &on_old), ("new", &on_new)] {
        let read = client.get(&format!("v1beta/files/{id}:download?alt=media")).await;
        assert_eq!(read.bytes().await.unwrap().len(), bytes.len(), "read back on the {node} node");
    }
    let earlier = on_new.get(&format!("v1beta/files/{}", file_id(&before))).await;
    assert_eq!(earlier.status(), 200, "a file of the old node, on the new");

    // Restarted, the previous release refuses the schema it does not know instead of serving it.
    let refused = std::process::Command::new(&previous)
        .arg("serve")
        .env_clear()
        .envs(old.filegate().get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .env("FILEGATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("migrat"), "the previous release must not start: {said}");
    drop(new);
}
