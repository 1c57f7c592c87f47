//! `filegate migrate-store`: a deployment's files copied to another store, verified, resumable.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn files_move_to_another_store_verified_and_a_second_run_skips_them() {
    let mut server = Server::builder().on_local_disk().start();
    let gemini = server.gemini(ALPHA_KEY);
    let contents = [data(0, 1), data(1, 2), data(9 * MIB + 3, 3)];
    let mut ids = Vec::new();
    for bytes in &contents {
        ids.push(file_id(&gemini.upload(bytes, json!({})).await));
    }
    gemini.start_ok(10, json!({})).await; // still arriving: left out, and said
    server.kill9();

    // The destination: this run's bucket (a prefix of its own), or another directory.
    let dir = tempfile::tempdir().unwrap();
    let destination = TestBlobs::create(dir.path());
    let mut env = destination.env();
    let to = match env.iter().position(|(k, _)| k == "FILEGATE_BLOB_STORE") {
        Some(i) => env.remove(i).1,
        None => format!("file://{}", dir.path().join("moved").display()),
    };
    let run = || {
        let out = server.filegate().envs(env.clone()).args(["migrate-store", "--to", &to]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let first = run();
    assert!(first.contains("copied 3 file(s)") && first.contains("1 still arriving"), "{first}");
    let second = run();
    assert!(second.contains("copied 0 file(s), 0 bytes; 3 already there"), "{second}");

    // The same database, now on the destination: every file downloads whole.
    for (key, value) in env {
        server.set_env(&key, value);
    }
    server.set_env("FILEGATE_BLOB_STORE", &to);
    server.restart();
    let gemini = server.gemini(ALPHA_KEY);
    for (id, bytes) in ids.iter().zip(&contents) {
        let download = gemini.get(&format!("v1/files/{id}:download?alt=media")).await;
        assert_eq!(download.status(), StatusCode::OK);
        assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
}
