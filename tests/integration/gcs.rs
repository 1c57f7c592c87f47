//! The fake of Cloud Storage (`tests/fakes/google.py`, see `fake_google.rs`) checked against the real
//! `object_store` GCS client: the calls filegate's bucket backend makes, answered as the client expects.

use crate::fake_google::FakeGoogle;

#[tokio::test]
async fn fake_speaks_the_wire_object_store_expects() {
    use futures_util::TryStreamExt as _;
    use object_store::multipart::MultipartStore as _;
    use object_store::path::Path as ObjectPath;
    use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutPayload};

    let fake = FakeGoogle::shared_gcs();
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_service_account_path(fake.service_account(dir.path()).to_str().unwrap())
        .with_bucket_name("wire-check")
        .build()
        .unwrap();
    let path = ObjectPath::from("a/b.bin");
    store.put(&path, PutPayload::from_static(b"0123456789")).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"0123456789");
    let ranged = GetOptions { range: Some(GetRange::Bounded(2..5)), ..GetOptions::default() };
    assert_eq!(store.get_opts(&path, ranged).await.unwrap().bytes().await.unwrap().as_ref(), b"234");
    assert_eq!(store.head(&path).await.unwrap().size, 10);
    let listed: Vec<_> = store.list(Some(&ObjectPath::from("a"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);

    let big = ObjectPath::from("a/multi.bin");
    let id = store.create_multipart(&big).await.unwrap();
    let p0 = store.put_part(&big, &id, 0, PutPayload::from(vec![1u8; 100])).await.unwrap();
    let p1 = store.put_part(&big, &id, 1, PutPayload::from(vec![2u8; 50])).await.unwrap();
    assert_eq!(fake.open_uploads("wire-check/"), 1);
    store.complete_multipart(&big, &id, vec![p0, p1]).await.unwrap();
    let got = store.get(&big).await.unwrap().bytes().await.unwrap();
    assert_eq!((got.len(), got[0], got[149]), (150, 1, 2));
    let aborted = store.create_multipart(&big).await.unwrap();
    store.abort_multipart(&big, &aborted).await.unwrap();
    assert_eq!(fake.open_uploads("wire-check/"), 0);
    store.delete(&path).await.unwrap();
    assert!(matches!(store.get(&path).await, Err(object_store::Error::NotFound { .. })));
}
