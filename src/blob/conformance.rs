//! The contract every blob store keeps, held against each of them: always the local disk and
//! `object_store`'s `InMemory`; S3 (moto), Azure (Azurite) and GCS (the fake of Google's services in the
//! test tree, `tests/fakes/google.py`) when the run provides them (`scripts/test.sh` exports their
//! variables). object_store's own test suite does the same for its backends; this is filegate's use of
//! them: ranges, sizes, idempotent deletes, staging areas that become objects and leave nothing behind.

use std::ops::Range;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use super::*;
use crate::domain::{FileId, ProjectId, StorageKey, new_object_key, random_alphanumeric, staging_key};

/// A store under test, with what must live as long as it.
struct Subject {
    name: &'static str,
    blobs: Blobs,
    _keep: Option<Box<dyn std::any::Any>>,
}

/// The fake of Google's services, serving Cloud Storage's XML API, for as long as the test runs.
struct FakeGcs {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn subjects() -> Vec<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let local = Blobs::local(dir.path().join("blobs")).await.unwrap();
    let mut subjects = vec![
        Subject { name: "local disk", blobs: local, _keep: Some(Box::new(dir)) },
        Subject { name: "memory", blobs: Blobs::in_memory(), _keep: None },
    ];
    let prefix = format!("conformance-{}", random_alphanumeric(8));
    if let Some(bucket) = crate::testing::service("s3", "AWS_BUCKET") {
        let url = BucketUrl::parse(&format!("s3://{bucket}/{prefix}")).unwrap();
        subjects.push(Subject { name: "S3", blobs: Blobs::from_env(&url).unwrap(), _keep: None });
    }
    if let Some(container) = crate::testing::service("azure", "AZURE_CONTAINER_NAME") {
        let url = BucketUrl::parse(&format!("az://{container}/{prefix}")).unwrap();
        subjects.push(Subject { name: "Azure", blobs: Blobs::from_env(&url).unwrap(), _keep: None });
    }
    if crate::testing::service("gcs", "FILEGATE_TEST_GCS").is_some() {
        let (fake, store) = fake_gcs();
        let url = BucketUrl::parse(&format!("gs://conformance/{prefix}")).unwrap();
        subjects.push(Subject {
            name: "GCS",
            blobs: Blobs::bucket(&url, store.clone(), store),
            _keep: Some(Box::new(fake)),
        });
    }
    subjects
}

/// Starts the fake of Cloud Storage and builds `object_store`'s real GCS client against it.
fn fake_gcs() -> (FakeGcs, Arc<object_store::gcp::GoogleCloudStorage>) {
    use std::io::BufRead as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes/google.py");
    let mut child = Command::new("python3")
        .args([script, "--parent-pid", &std::process::id().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 tests/fakes/google.py");
    let line = std::io::BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let url = line.rsplit(' ').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("account.json");
    let json = serde_json::json!({"private_key": "unused", "private_key_id": "unused",
        "client_email": "t@example.invalid", "disable_oauth": true, "gcs_base_url": format!("{url}/gcs")});
    std::fs::write(&account, json.to_string()).unwrap();
    let store = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_service_account_path(account.to_str().unwrap())
        .with_bucket_name("conformance")
        .build()
        .unwrap();
    (FakeGcs { child, _dir: dir }, Arc::new(store))
}

async fn read_all(blobs: &Blobs, key: &StorageKey, range: Range<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = blobs.read(key, range).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

fn body(bytes: &[u8]) -> ByteStream {
    let pieces: Vec<crate::error::Result<Bytes>> =
        bytes.chunks(100_003).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed()
}

/// A staging area begun in `blobs`, for a new object.
async fn begun(blobs: &Blobs) -> Staging {
    let project = ProjectId::parse("conformance").unwrap();
    let mut staging = Staging {
        key: staging_key(&random_alphanumeric(12)),
        dest: new_object_key(&project, &FileId::generate()).to_string(),
        upload_id: None,
    };
    staging.upload_id = blobs.begin(&staging).await.unwrap();
    staging
}

/// Stages `data` as the store takes bytes (at offsets, or in parts of its granule) and completes it into
/// a new object; returns the object's key.
async fn upload(blobs: &Blobs, data: &[u8]) -> StorageKey {
    let staging = begun(blobs).await;
    match blobs.writer() {
        Writer::Positional(store) => {
            let half = data.len() / 2;
            assert_eq!(store.write_at(&staging, 0, body(&data[..half])).await.unwrap(), half as u64);
            // Bytes past what was committed are overwritten by the next write.
            store.write_at(&staging, half as u64, body(b"uncommitted")).await.unwrap();
            assert_eq!(
                store.write_at(&staging, half as u64, body(&data[half..])).await.unwrap(),
                (data.len() - half) as u64
            );
            store.complete(&staging, data.len() as u64).await.unwrap();
        }
        Writer::Parts(store) => {
            let upload_id = staging.upload_id.clone().expect("a multipart upload");
            let granule = usize::try_from(store.granule()).unwrap();
            let mut ids = Vec::new();
            for (index, part) in data.chunks(granule).enumerate() {
                ids.push(
                    store
                        .put_part(&staging.dest, &upload_id, index as u64, Bytes::copy_from_slice(part))
                        .await
                        .unwrap(),
                );
            }
            store.complete(&staging.dest, &upload_id, ids).await.unwrap();
        }
    }
    blobs.abort(&staging).await.unwrap();
    StorageKey::from_stored(staging.dest)
}

#[tokio::test]
async fn every_store_keeps_objects_and_turns_staging_areas_into_them() {
    let data: Vec<u8> = (0..(PART_BYTES as usize * 2 + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
    for subject in subjects().await {
        let (name, blobs) = (subject.name, &subject.blobs);
        let key = upload(blobs, &data).await;
        assert_eq!(blobs.size(&key).await.unwrap(), Some(data.len() as u64), "{name}");
        assert_eq!(read_all(blobs, &key, 0..data.len() as u64).await, data, "{name}: whole");
        let len = data.len() as u64;
        for range in [0..1, 5..PART_BYTES + 5, len - 3..len, PART_BYTES..2 * PART_BYTES] {
            let expected = &data[range.start as usize..range.end as usize];
            assert_eq!(read_all(blobs, &key, range.clone()).await, expected, "{name}: {range:?}");
        }
        assert!(read_all(blobs, &key, 7..7).await.is_empty(), "{name}: an empty range");

        let empty = upload(blobs, b"").await;
        assert_eq!(blobs.size(&empty).await.unwrap(), Some(0), "{name}: an empty file is an empty object");

        blobs.delete(&key).await.unwrap();
        blobs.delete(&key).await.unwrap();
        assert_eq!(blobs.size(&key).await.unwrap(), None, "{name}: deleted, twice");
        let missing = blobs.read(&key, 0..10).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(missing, crate::error::Error::Internal(_)),
            "{name}: a missing object is lost data: {missing:?}"
        );
        blobs.delete(&empty).await.unwrap();
        blobs.probe().await.unwrap();
    }
}

#[tokio::test]
async fn small_objects_tails_and_abandoned_staging_areas() {
    for subject in subjects().await {
        let (name, blobs) = (subject.name, &subject.blobs);
        let tail = format!("{}/tail-17", staging_key(&random_alphanumeric(12)));
        blobs.objects().put(&tail, Bytes::from_static(b"seventeen bytes!!")).await.unwrap();
        assert_eq!(
            read_all(blobs, &StorageKey::from_stored(tail.clone()), 0..17).await,
            b"seventeen bytes!!",
            "{name}"
        );
        assert_eq!(read_all(blobs, &StorageKey::from_stored(tail.clone()), 10..17).await, b"bytes!!", "{name}");
        blobs.objects().delete(&tail).await.unwrap();
        assert_eq!(blobs.objects().size(&tail).await.unwrap(), None, "{name}");

        // A staging area begun and abandoned leaves nothing: its file, or its multipart upload, goes.
        let staging = begun(blobs).await;
        if let Writer::Parts(store) = blobs.writer() {
            store
                .put_part(&staging.dest, staging.upload_id.as_ref().unwrap(), 0, Bytes::from(vec![1; 1000]))
                .await
                .unwrap();
        }
        blobs.abort(&staging).await.unwrap();
        blobs.abort(&staging).await.unwrap();
        assert_eq!(blobs.objects().size(&staging.dest).await.unwrap(), None, "{name}: no object");
        if let Some(staged) = blobs.list("staging").await.unwrap() {
            assert!(!staged.contains(&staging.key), "{name}: the staging file is gone: {staged:?}");
        }
    }
}

#[tokio::test]
async fn many_objects_are_deleted_at_once_and_each_one_gone_is_reported() {
    for subject in subjects().await {
        let (name, blobs) = (subject.name, &subject.blobs);
        let base = staging_key(&random_alphanumeric(12));
        let present: Vec<String> = (0..5).map(|i| format!("{base}/tail-{i}")).collect();
        for key in &present {
            blobs.objects().put(key, Bytes::from_static(b"bytes")).await.unwrap();
        }
        let absent = format!("{base}/never-written");
        let registered = crate::domain::registered_key("gs://caller-bucket/their-object");
        let mut keys = present.clone();
        keys.extend([absent, registered.to_string()]);
        let mut gone = blobs.delete_many(&keys).await;
        gone.sort();
        keys.sort();
        assert_eq!(gone, keys, "{name}: every key reported gone, the absent and the registered included");
        for key in &present {
            assert_eq!(blobs.objects().size(key).await.unwrap(), None, "{name}: {key} deleted");
        }
        assert!(blobs.delete_many(&[]).await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn storage_uris_and_listing_follow_the_kind_of_store() {
    let dir = tempfile::tempdir().unwrap();
    let local = Blobs::local(dir.path().to_owned()).await.unwrap();
    let key = upload(&local, b"listed").await;
    assert_eq!(local.storage_uri(&key), None, "the local disk has no URI");
    assert_eq!(local.list("files").await.unwrap(), Some(vec![key.to_string()]));
    assert_eq!(local.list("staging").await.unwrap(), Some(vec![]), "completed and aborted");
    let outside = StorageKey::from_stored("files/../../etc/passwd".into());
    assert!(local.read(&outside, 0..1).await.is_err(), "a key is checked again by the store that takes it");

    let url = BucketUrl::parse("gs://media/filegate/prod").unwrap();
    let store = Arc::new(object_store::memory::InMemory::new());
    let bucket = Blobs::bucket(&url, store.clone(), store);
    let own = StorageKey::from_stored("files/p/x.1".into());
    assert_eq!(bucket.storage_uri(&own).as_deref(), Some("gs://media/filegate/prod/files/p/x.1"));
    assert_eq!(bucket.list("files").await.unwrap(), None, "a shared bucket is never listed");
    let registered = crate::domain::registered_key("gs://theirs/a.mp4");
    assert_eq!(bucket.storage_uri(&registered).as_deref(), Some("gs://theirs/a.mp4"));
    bucket.delete(&registered).await.unwrap();
}
