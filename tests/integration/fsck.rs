//! `filegate fsck` against a deployment broken behind filegate's back in each way it looks for, on every
//! store: it names each problem, changes nothing unless asked, repairs what is safe, leaves lost bytes to a
//! person, and never mistakes a live upload for debris.

use std::collections::BTreeMap;

use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::support::*;

/// Runs fsck on `server`'s deployment with `args` and `--json`: its exit code and report.
fn fsck(server: &Server, args: &[&str]) -> (i32, Value) {
    let out = server.filegate().arg("fsck").arg("--json").args(args).output().expect("filegate fsck");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// `problem kind → [(key or project, outcome)]`.
fn by_kind(report: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    let mut kinds: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for finding in report["findings"].as_array().unwrap() {
        let name = finding["key"].as_str().or(finding["owner"].as_str()).or(finding["project"].as_str()).unwrap_or("");
        kinds
            .entry(finding["problem"].as_str().unwrap().to_owned())
            .or_default()
            .push((name.to_owned(), finding["outcome"].as_str().unwrap().to_owned()));
    }
    kinds
}

/// The key of `file`'s object, found in the store (the API never shows it).
async fn object_key(store: &dyn object_store::ObjectStore, prefix: &str, file: &Value) -> String {
    use futures_util::TryStreamExt as _;
    let id = file_id(file);
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&Path::from(format!("{prefix}files/alpha")))).try_collect().await.unwrap();
    let path = listed
        .iter()
        .map(|m| m.location.to_string())
        .find(|p| p.rsplit('/').next().unwrap().starts_with(&format!("{id}.")))
        .unwrap_or_else(|| panic!("no object of {id} in {listed:?}"));
    path.strip_prefix(prefix).unwrap().to_owned()
}

#[tokio::test]
async fn fsck_names_each_way_a_deployment_was_broken_and_repairs_what_is_safe() {
    // The janitor stays out of the way: the garbage queued below is for fsck to find.
    let server = Server::builder().env("FILEGATE_SWEEP_INTERVAL_SECONDS", 3600).start();
    let gemini = server.gemini(ALPHA_KEY);
    let lost = gemini.upload(&data(3000, 1), json!({})).await;
    let shrunk = gemini.upload(&data(3000, 2), json!({})).await;
    let kept_bytes = data(3000, 3);
    let kept = gemini.upload(&kept_bytes, json!({})).await;
    // An upload in flight, its first bytes stored (a tail in a bucket, a staging file on disk).
    let open_bytes = data(5000, 4);
    let open = gemini.start_ok(5000, json!({})).await;
    gemini.command(&open, "upload", Some(0), open_bytes[..100].to_vec()).await;

    let (exit, report) = fsck(&server, &["--grace-seconds", "0"]);
    assert_eq!((exit, &report["problems"]), (0, &json!(0)), "a healthy deployment, a live upload: {report}");
    assert_eq!(report["checked"]["files"], 3, "{report}");

    // Broken behind filegate's back.
    let (store, s3, prefix) = server.raw_store();
    let at = |key: &str| Path::from(format!("{prefix}{key}"));
    let (lost_key, shrunk_key) =
        (object_key(store.as_ref(), &prefix, &lost).await, object_key(store.as_ref(), &prefix, &shrunk).await);
    store.delete(&at(&lost_key)).await.unwrap();
    store.put(&at(&shrunk_key), data(1000, 2).into()).await.unwrap();
    store.put(&at("files/alpha/orphan.zz9"), data(10, 5).into()).await.unwrap();
    store.put(&at("staging/nobody/tail-5"), data(5, 6).into()).await.unwrap();
    if let Some(s3) = &s3 {
        use object_store::multipart::MultipartStore as _;
        s3.create_multipart(&at("files/alpha/abandoned.zz8")).await.unwrap();
    }
    server.sql("UPDATE projects SET used_bytes = used_bytes + 77 WHERE id = 'alpha'").await;
    server.sql("UPDATE upload_sessions SET writer = 'node-gone', writer_until = 1 WHERE status = 'active'").await;
    server.sql("INSERT INTO blob_parts (staging_key, part_index, part_id) VALUES ('staging/ended', 0, 'p0')").await;
    server
        .sql("INSERT INTO blob_garbage (blob_key, kind, queued_at) VALUES ('files/alpha/queued.zz7', 'object', 1)")
        .await;

    // Under the default grace of an hour, objects made a moment ago are not judged. (Uploads would not be
    // either, but moto says every upload was initiated in 2010.)
    let (_, report) = fsck(&server, &[]);
    assert!(!by_kind(&report).contains_key("orphan_object"), "{report}");
    assert!(report["checked"]["too_recent"].as_u64().unwrap() >= 2, "{report}");

    // Every problem, named; twice, since looking changes nothing.
    let mut expected: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut expect = |kind: &str, name: &str, outcome: &str| {
        expected.entry(kind.to_owned()).or_default().push((name.to_owned(), outcome.to_owned()));
    };
    expect("missing_object", &lost_key, "for_a_person");
    expect("wrong_size", &shrunk_key, "for_a_person");
    expect("orphan_object", "files/alpha/orphan.zz9", "repairable");
    expect("orphan_object", "staging/nobody/tail-5", "repairable");
    if s3.is_some() {
        expect("unowned_upload", "files/alpha/abandoned.zz8", "repairable");
    }
    expect("counter_drift", "alpha", "repairable");
    expect("stale_lease", "node-gone", "repairable");
    expect("leftover_parts", "staging/ended", "repairable");
    expect("garbage_backlog", "", "repairable");
    for _ in 0..2 {
        let (exit, report) = fsck(&server, &["--grace-seconds", "0"]);
        assert_eq!(exit, 6, "{report}");
        let mut found = by_kind(&report);
        found.values_mut().for_each(|v| v.sort());
        assert_eq!(found, expected, "{report}");
        assert_eq!(report["checked"]["open_uploads"].is_u64(), s3.is_some(), "S3 alone lists its uploads: {report}");
    }

    // Repaired: all but the lost bytes, which are a person's to restore.
    let (exit, report) = fsck(&server, &["--grace-seconds", "0", "--repair"]);
    assert_eq!(exit, 6, "{report}");
    for (kind, found) in by_kind(&report) {
        let person = kind == "missing_object" || kind == "wrong_size";
        for (name, outcome) in found {
            assert_eq!(outcome, if person { "for_a_person" } else { "repaired" }, "{kind} {name}: {report}");
        }
    }
    let (exit, report) = fsck(&server, &["--grace-seconds", "0"]);
    assert_eq!(exit, 6);
    assert_eq!(by_kind(&report).keys().collect::<Vec<_>>(), ["missing_object", "wrong_size"], "{report}");
    assert!(store.head(&at("files/alpha/orphan.zz9")).await.is_err(), "the orphan is gone");

    // For people: a line per problem and what became of it.
    let out = server.filegate().args(["fsck", "--grace-seconds", "0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("missing object  {lost_key}")) && text.contains("for a person: restore"), "{text}");
    assert!(text.contains("2 problem(s); nothing was changed"), "{text}");

    // What was live stayed whole: the upload finishes, the untouched file reads back.
    let done = gemini.upload_chunks_from(&open, &open_bytes, 100).await;
    assert_eq!(done["sizeBytes"], "5000", "{done}");
    let read = gemini.get(&format!("v1beta/files/{}:download?alt=media", file_id(&kept))).await;
    assert_eq!(read.bytes().await.unwrap().as_ref(), kept_bytes.as_slice());
    let (_, report) = fsck(&server, &["--grace-seconds", "0"]);
    assert_eq!(report["problems"], 2, "{report}");
}
