//! `filegate fsck`'s part of the store contract (`meta/audit.rs`), on every engine as `conformance.rs`
//! runs it: which keys and uploads rows refer to, drift seen without changing anything, stale leases and
//! leftover part records found and cleared, and nothing a live transfer owns mistaken for either.

use super::conformance::{engines, enqueue_import, file, import_for, open_upload, project, remove, session_for};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_reads_what_rows_own_and_clears_only_what_nobody_does() {
    for engine in engines().await {
        let store = engine.store.clone();
        let p = project("alpha");
        let (upload, imported, gone, ended) = (
            file(&p, "open", FileState::Uploading, 100, 3600),
            FileRecord { origin: crate::domain::Origin::Import, ..file(&p, "importing", FileState::Pending, 0, 3600) },
            file(&p, "gone", FileState::Uploading, 10, 3600),
            file(&p, "ended", FileState::Uploading, 10, 3600),
        );
        open_upload(store.as_ref(), &upload, 10_000).await.unwrap();
        enqueue_import(store.as_ref(), &imported).await;
        for f in [&gone, &ended] {
            open_upload(store.as_ref(), f, 10_000).await.unwrap();
        }
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        remove(tx.as_mut(), &[gone.blob_key.to_string()]).await;
        tx.commit().await.unwrap();

        // Objects: a file's, a queued one's, and one nobody's.
        let unknown = "files/alpha/nobody.x1".to_owned();
        let asked = [upload.blob_key.to_string(), gone.blob_key.to_string(), unknown.clone()];
        let mut known = store.known_objects(&asked).await.unwrap();
        known.sort();
        let mut expected = vec![upload.blob_key.clone(), gone.blob_key.clone()];
        expected.sort();
        assert_eq!(known, expected, "{}", engine.name);

        // Staging areas: a live session's and a running import's, with what they committed.
        let (upload_staging, import_staging) = (session_for(&upload).staging_key, import_for(&imported).staging_key);
        let token = session_for(&upload).token_hash;
        let chunk = ChunkRecord { offset: 0, length: 7, hasher_state: vec![7] };
        assert!(store.commit_chunk(&token, &chunk, &[], &[], None, Timestamp::now()).await.unwrap());
        let asked = [upload_staging.clone(), import_staging.clone(), "staging/nobody".to_owned()];
        let mut owned: Vec<(String, u64)> =
            store.owned_staging(&asked).await.unwrap().into_iter().map(|s| (s.staging.key, s.received)).collect();
        owned.sort();
        let mut expected = vec![(upload_staging.clone(), 7), (import_staging.clone(), 0)];
        expected.sort();
        assert_eq!(owned, expected, "{}", engine.name);

        // Multipart upload ids: a live session's is known, another is not.
        assert!(store.set_upload_id(&upload_staging, "upload-live").await.unwrap());
        let ids = ["upload-live".to_owned(), "upload-lost".to_owned()];
        assert_eq!(store.known_upload_ids(&ids).await.unwrap(), ["upload-live"], "{}", engine.name);

        // A session that ended without its staging area queued leaves its part records behind.
        let ended_token = session_for(&ended).token_hash;
        let parts = [PartRecord { index: 0, id: "p0".into() }, PartRecord { index: 1, id: "p1".into() }];
        let chunk = ChunkRecord { offset: 0, length: 20, hasher_state: vec![2] };
        assert!(store.commit_chunk(&ended_token, &chunk, &parts, &[], None, Timestamp::now()).await.unwrap());
        let live_parts = [PartRecord { index: 0, id: "live".into() }];
        let chunk = ChunkRecord { offset: 7, length: 3, hasher_state: vec![3] };
        assert!(store.commit_chunk(&token, &chunk, &live_parts, &[], None, Timestamp::now()).await.unwrap());
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        tx.set_session_status(&ended_token, SessionStatus::Final, Timestamp::now()).await.unwrap();
        tx.add_usage(&p, UsageDelta { open_uploads: -1, ..UsageDelta::default() }).await.unwrap();
        tx.commit().await.unwrap();
        let leftover = store.leftover_parts(None, 10).await.unwrap();
        let ended_staging = session_for(&ended).staging_key;
        assert_eq!(leftover, [LeftoverParts { staging_key: ended_staging.clone(), parts: 2 }], "{}", engine.name);
        assert!(store.leftover_parts(Some(&ended_staging), 10).await.unwrap().is_empty(), "paged by key");
        let both = [ended_staging.clone(), upload_staging.clone()];
        assert_eq!(store.delete_leftover_parts(&both).await.unwrap(), 2, "only nobody's go: {}", engine.name);
        assert_eq!(store.parts(&upload_staging).await.unwrap().len(), 1, "the live session keeps its part");

        // Drift is seen, and seeing it changes nothing.
        assert!(store.usage_drift().await.unwrap().is_empty(), "{}", engine.name);
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        tx.add_usage(&p, UsageDelta { bytes: 5, files: 1, ..UsageDelta::default() }).await.unwrap();
        tx.commit().await.unwrap();
        for _ in 0..2 {
            let drift = store.usage_drift().await.unwrap();
            assert_eq!(drift.len(), 1, "{}", engine.name);
            assert_eq!(drift[0].before.used_bytes, drift[0].after.used_bytes + 5);
            assert_eq!(drift[0].before.files, drift[0].after.files + 1);
        }
        assert_eq!(store.recompute_usage().await.unwrap().len(), 1);

        // Leases that ended long ago are listed and released; a live one is neither.
        let now = Timestamp::now();
        let long_ago = |seconds: i64| Timestamp::from_micros(now.as_micros() - seconds * 1_000_000);
        assert!(store.claim_writer(&token, "node-gone", long_ago(7200), long_ago(7300)).await.unwrap());
        let task = store.claim_import("node-cut-off", now, long_ago(7200)).await.unwrap().expect("the import is due");
        assert_eq!(task.blob_key, imported.blob_key);
        let cutoff = long_ago(3600);
        let mut stale: Vec<(LeaseKind, String)> =
            store.stale_leases(cutoff, 10).await.unwrap().into_iter().map(|l| (l.kind, l.owner)).collect();
        stale.sort_by_key(|(kind, _)| kind.as_str());
        assert_eq!(
            stale,
            [(LeaseKind::Import, "node-cut-off".to_owned()), (LeaseKind::UploadWriter, "node-gone".to_owned())],
            "{}",
            engine.name
        );
        assert!(store.stale_leases(long_ago(9000), 10).await.unwrap().is_empty(), "not before they ended");
        assert_eq!(store.release_stale_leases(cutoff).await.unwrap(), 2);
        assert!(store.stale_leases(cutoff, 10).await.unwrap().is_empty());
        assert!(store.claim_writer(&token, "node-new", now.plus_seconds(60), now).await.unwrap(), "free to claim");

        // Garbage: the queued removal is old only once the cutoff has passed it.
        assert_eq!(store.old_garbage(long_ago(60)).await.unwrap(), 0);
        assert!(store.old_garbage(now.plus_seconds(1)).await.unwrap() >= 1, "{}", engine.name);

        assert!(store.recompute_usage().await.unwrap().is_empty(), "{}", engine.name);
        engine.drop_database().await;
    }
}
