//! The metadata store's contract (see `meta/mod.rs`), written once against `&dyn MetaStore` and run on
//! every engine: SQLite always, PostgreSQL when `FILEGATE_TEST_POSTGRES_URL` names a server this suite may
//! create databases on (`scripts/test.sh` starts one). Racing callers run on a multi-threaded runtime.
//! After every scenario the project counters must agree with the rows (`recompute_usage` finds no drift).
//!
//! The scenarios speak to the store only through its own interface, as any client of it must (lock the
//! project, read, write, count, commit); the business rules built on it (`services/lifecycle.rs`) are
//! tested with the services.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::sql::SqlMeta;
use super::*;
use crate::domain::Origin;

/// A store on a fresh database, and how to throw it away.
pub(super) struct Engine {
    pub(super) name: &'static str,
    pub(super) store: Arc<dyn MetaStore>,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Engine {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlMeta::open_sqlite(&dir.path().join("meta.db"), 8, true).await.unwrap();
        Self { name: "sqlite", store: Arc::new(store), _dir: Some(dir), postgres: None }
    }

    async fn postgres(admin_url: &str) -> Self {
        use sqlx::Connection as _;
        let name = format!("fg_conformance_{}", crate::domain::random_alphanumeric(10));
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let mut url = url::Url::parse(admin_url).unwrap();
        url.set_path(&name);
        let store = SqlMeta::open_postgres(url.as_str(), 16, true).await.unwrap();
        Self { name: "postgres", store: Arc::new(store), _dir: None, postgres: Some((admin_url.to_owned(), name)) }
    }

    pub(super) async fn drop_database(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.postgres {
            use sqlx::Connection as _;
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
        }
    }
}

pub(super) async fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::sqlite().await];
    if let Some(url) = crate::testing::service("postgres", "FILEGATE_TEST_POSTGRES_URL") {
        engines.push(Engine::postgres(&url).await);
    }
    engines
}

/// Runs `scenario` on every engine, then checks that the counters match the rows.
macro_rules! contract {
    ($(#[$meta:meta])* $name:ident, $scenario:expr) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            for engine in engines().await {
                let store = engine.store.clone();
                ($scenario)(store.clone()).await;
                let drift = store.recompute_usage().await.unwrap();
                assert!(drift.is_empty(), "{}: counters drifted from the rows: {drift:?}", engine.name);
                engine.drop_database().await;
            }
        }
    };
}

pub(super) fn project(name: &str) -> ProjectId {
    ProjectId::parse(name).unwrap()
}

pub(super) fn file(project: &ProjectId, id: &str, state: FileState, charged: u64, expires_in: i64) -> FileRecord {
    let now = Timestamp::now();
    FileRecord {
        project: project.clone(),
        id: FileId::from_stored(id.to_owned()),
        display_name: Some(format!("name of {id}")),
        mime_type: "video/mp4".into(),
        size_bytes: Some(charged),
        sha256: None,
        state,
        origin: Origin::Upload,
        blob_key: crate::domain::StorageKey::from_stored(format!(
            "files/{project}/{id}.{}",
            crate::domain::random_alphanumeric(8)
        )),
        charged_bytes: charged,
        created_at: now,
        updated_at: now,
        expires_at: Timestamp::from_micros(now.as_micros() + expires_in * 1_000_000),
        error: None,
        import: None,
    }
}

pub(super) fn session_for(file: &FileRecord) -> NewSession {
    NewSession {
        token_hash: format!("token-{}", file.blob_key),
        project: file.project.clone(),
        file_id: file.id.clone(),
        blob_key: file.blob_key.to_string(),
        declared_size: file.size_bytes,
        hasher_state: vec![1, 2, 3],
        staging_key: format!("staging/{}", file.blob_key.replace('/', "-")),
        created_at: file.created_at,
        expires_at: file.expires_at,
    }
}

pub(super) fn import_for(file: &FileRecord) -> NewImport {
    NewImport {
        blob_key: file.blob_key.to_string(),
        project: file.project.clone(),
        file_id: file.id.clone(),
        source_url: "https://example.test/a.mp4".into(),
        model: "m".into(),
        expected_sha256: None,
        staging_key: format!("staging/import-{}", file.blob_key.replace('/', "-")),
        hasher_state: vec![9],
        created_at: file.created_at,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

/// Why this suite's own start refused (the services' rules and errors are not the store's business).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Quota,
    NameTaken,
}

/// What is inserted with a file.
enum Hanging {
    Session,
    Import,
}

/// Inserts a file with its session or task, and counts them.
async fn insert(tx: &mut dyn WriteTx, file: &FileRecord, hanging: Hanging) {
    tx.insert_file(file).await.unwrap();
    let mut delta = UsageDelta { bytes: file.charged_bytes as i64, files: 1, ..UsageDelta::default() };
    match hanging {
        Hanging::Session => {
            tx.insert_session(&session_for(file)).await.unwrap();
            delta.open_uploads = 1;
        }
        Hanging::Import => {
            tx.insert_import(&import_for(file)).await.unwrap();
            delta.active_imports = 1;
        }
    }
    tx.add_usage(&file.project, delta).await.unwrap();
}

/// Removes files with what hangs on them, uncounts them and queues their bytes (the object and any
/// staging) for deletion.
pub(super) async fn remove(tx: &mut dyn WriteTx, blob_keys: &[String]) -> Vec<RemovedFile> {
    let removed = tx.remove_files(blob_keys, Timestamp::now()).await.unwrap();
    let mut garbage = Vec::new();
    for gone in &removed {
        let delta = UsageDelta {
            bytes: -(gone.file.charged_bytes as i64),
            files: -1,
            open_uploads: -i64::from(gone.open_session.is_some()),
            active_imports: -i64::from(gone.unfinished_import.is_some()),
        };
        tx.add_usage(&gone.file.project, delta).await.unwrap();
        garbage.push(Garbage::object(&gone.file.blob_key));
        let staged = gone.open_session.iter().chain(&gone.unfinished_import);
        garbage.extend(staged.map(|staged| Garbage::Staging(staged.staging.clone())));
    }
    tx.queue_garbage(&garbage, Timestamp::now()).await.unwrap();
    removed
}

/// Opens an upload as a client of the store must: in one transaction, lock the project, read its usage
/// from the lock, check the quota and the name, insert, count.
pub(super) async fn open_upload(store: &dyn MetaStore, file: &FileRecord, quota: u64) -> Result<(), Refused> {
    let mut tx = store.write().await.unwrap();
    let usage = tx.lock_project(&file.project).await.unwrap();
    if usage.used_bytes + file.charged_bytes > quota {
        return Err(Refused::Quota);
    }
    if tx.file(&file.project, &file.id).await.unwrap().is_some() {
        return Err(Refused::NameTaken);
    }
    insert(tx.as_mut(), file, Hanging::Session).await;
    tx.commit().await.unwrap();
    Ok(())
}

pub(super) async fn enqueue_import(store: &dyn MetaStore, file: &FileRecord) {
    let mut tx = store.write().await.unwrap();
    tx.lock_project(&file.project).await.unwrap();
    insert(tx.as_mut(), file, Hanging::Import).await;
    tx.commit().await.unwrap();
}

contract!(
    /// Rows written in a transaction are read back whole; removing a file takes its session and task.
    rows_round_trip_and_removal_takes_what_hangs_on_a_file,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let upload = file(&p, "up-1", FileState::Uploading, 100, 3600);
        open_upload(store.as_ref(), &upload, 1000).await.unwrap();
        let imported = FileRecord { origin: Origin::Import, charged_bytes: 0, ..file(&p, "imp-1", FileState::Pending, 0, 3600) };
        enqueue_import(store.as_ref(), &imported).await;

        let got = store.get_file(&p, &upload.id).await.unwrap().unwrap();
        assert_eq!((got.blob_key.as_str(), got.charged_bytes, got.state), (upload.blob_key.as_str(), 100, FileState::Uploading));
        let session = store.get_upload(&session_for(&upload).token_hash).await.unwrap().unwrap();
        assert_eq!((session.status, session.blob_key.as_deref()), (SessionStatus::Active, Some(upload.blob_key.as_str())));
        let got = store.get_file(&p, &imported.id).await.unwrap().unwrap();
        assert_eq!(got.import.unwrap().source_url, "https://example.test/a.mp4");
        let listed = store.list_files(&p, Timestamp::now(), None, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "an open upload is not listed, a pending import is");

        let usage = store.usage().await.unwrap();
        assert_eq!(usage[0].usage, ProjectUsage { used_bytes: 100, files: 2, open_uploads: 1, active_imports: 1, quota_bytes: None });

        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        let removed = remove(tx.as_mut(), &[upload.blob_key.to_string()]).await;
        let staged = removed[0].open_session.as_ref().expect("the open session's staging");
        assert_eq!(staged.staging.key, session_for(&upload).staging_key);
        assert!(removed[0].unfinished_import.is_none());
        let removed = remove(tx.as_mut(), &[imported.blob_key.to_string()]).await;
        let staged = removed[0].unfinished_import.as_ref().expect("the unfinished import's staging");
        assert_eq!(staged.staging.key, import_for(&imported).staging_key);
        tx.commit().await.unwrap();
        let session = store.get_upload(&session_for(&upload).token_hash).await.unwrap().unwrap();
        assert_eq!((session.status, session.blob_key), (SessionStatus::Cancelled, None));
        assert_eq!(store.garbage(10).await.unwrap().len(), 4);
        let usage = store.usage().await.unwrap();
        assert_eq!(usage[0].usage, ProjectUsage::default());
    }
);

contract!(
    /// Many files removed in one call: each takes what hangs on it, keys without a row are skipped, the
    /// counters and the garbage queue come out as if they had been removed one by one.
    a_batch_removal_takes_each_file_s_session_and_task,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let upload = file(&p, "up-1", FileState::Uploading, 100, 3600);
        open_upload(store.as_ref(), &upload, 10_000).await.unwrap();
        let imported = FileRecord { origin: Origin::Import, charged_bytes: 0, ..file(&p, "imp-1", FileState::Pending, 0, 3600) };
        enqueue_import(store.as_ref(), &imported).await;
        let mut more = Vec::new();
        for i in 0..150 {
            let f = file(&p, &format!("more-{i}"), FileState::Uploading, 7, 3600);
            open_upload(store.as_ref(), &f, 10_000).await.unwrap();
            more.push(f);
        }
        let mut keys: Vec<String> = more.iter().map(|f| f.blob_key.to_string()).collect();
        keys.extend([upload.blob_key.to_string(), "files/alpha/missing.x".into(), imported.blob_key.to_string()]);

        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        let removed = remove(tx.as_mut(), &keys).await;
        tx.commit().await.unwrap();
        assert_eq!(removed.len(), 152, "the missing key is skipped");
        let removal_of = |f: &FileRecord| removed.iter().find(|r| r.file.blob_key == f.blob_key).unwrap();
        assert!(removal_of(&upload).open_session.is_some() && removal_of(&upload).unfinished_import.is_none());
        assert!(removal_of(&imported).unfinished_import.is_some() && removal_of(&imported).open_session.is_none());
        assert!(removal_of(&more[7]).open_session.is_some());
        let session = store.get_upload(&session_for(&upload).token_hash).await.unwrap().unwrap();
        assert_eq!((session.status, session.blob_key), (SessionStatus::Cancelled, None));
        assert!(store.get_file(&p, &more[42].id).await.unwrap().is_none());
        assert_eq!(store.garbage(1000).await.unwrap().len(), 2 * 152);
        assert_eq!(store.usage().await.unwrap()[0].usage, ProjectUsage::default());
    }
);

contract!(
    /// A transaction dropped before its commit leaves nothing, and its connection serves again.
    a_dropped_transaction_leaves_nothing_and_poisons_nothing,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        for i in 0..20 {
            let mut tx = store.write().await.unwrap();
            tx.lock_project(&p).await.unwrap();
            tx.insert_file(&file(&p, &format!("gone-{i}"), FileState::Ready, 5, 3600)).await.unwrap();
            drop(tx);
        }
        assert!(store.list_files(&p, Timestamp::now(), None, 100).await.unwrap().is_empty());
        open_upload(store.as_ref(), &file(&p, "kept", FileState::Uploading, 5, 3600), 1000).await.unwrap();
        assert!(store.get_file(&p, &FileId::from_stored("kept".into())).await.unwrap().is_some());
    }
);

contract!(
    /// Of requests racing to commit a chunk at one offset, exactly one wins.
    chunks_racing_at_one_offset_commit_once,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let upload = file(&p, "race", FileState::Uploading, 1000, 3600);
        open_upload(store.as_ref(), &upload, 10_000).await.unwrap();
        let token = session_for(&upload).token_hash;
        let wins = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, token, wins) = (store.clone(), token.clone(), wins.clone());
                tokio::spawn(async move {
                    let chunk = ChunkRecord { offset: 0, length: 10 + u64::from(i), hasher_state: vec![i] };
                    let part = [PartRecord { index: 0, id: format!("part-by-{i}") }];
                    if store.commit_chunk(&token, &chunk, &part, &[], None, Timestamp::now()).await.unwrap() {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for racer in racers {
            racer.await.unwrap();
        }
        assert_eq!(wins.load(Ordering::SeqCst), 1);
        let session = store.get_upload(&token).await.unwrap().unwrap();
        let parts = store.parts(&session.staging_key).await.unwrap();
        assert_eq!(parts.len(), 1, "only the winner's part is recorded");
        assert_eq!(parts[0].id, format!("part-by-{}", session.hasher_state[0]));
        let (before, chunk) = store.chunk_at(&token, 0).await.unwrap().unwrap();
        assert_eq!((before, session.received_bytes, session.hasher_state), (None, chunk.length, chunk.hasher_state));
    }
);

contract!(
    /// Workers claiming at once get every due task exactly once.
    racing_claims_hand_out_every_task_exactly_once,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        for i in 0..12 {
            enqueue_import(store.as_ref(), &file(&p, &format!("task-{i}"), FileState::Pending, 0, 3600)).await;
        }
        let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (store, claimed) = (store.clone(), claimed.clone());
                tokio::spawn(async move {
                    loop {
                        let now = Timestamp::now();
                        let lease = now.plus_seconds(600);
                        match store.claim_import(&format!("worker-{w}"), now, lease).await.unwrap() {
                            Some(task) => claimed.lock().unwrap().push(task.blob_key),
                            None => return,
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let mut claimed = claimed.lock().unwrap().clone();
        claimed.sort();
        let before = claimed.len();
        claimed.dedup();
        assert_eq!((before, claimed.len()), (12, 12), "each of 12 tasks claimed once");
        let file = store.get_file(&p, &FileId::from_stored("task-0".into())).await.unwrap().unwrap();
        assert_eq!(file.state, FileState::Processing);
    }
);

contract!(
    /// Concurrent starts near the quota: as many succeed as fit, never one more.
    concurrent_starts_never_overspend_the_quota,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let ok = Arc::new(AtomicUsize::new(0));
        let starts: Vec<_> = (0..24)
            .map(|i| {
                let (store, ok, p) = (store.clone(), ok.clone(), p.clone());
                tokio::spawn(async move {
                    let upload = file(&p, &format!("q-{i}"), FileState::Uploading, 100, 3600);
                    match open_upload(store.as_ref(), &upload, 1000).await {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(refused) => assert_eq!(refused, Refused::Quota),
                    }
                })
            })
            .collect();
        for start in starts {
            start.await.unwrap();
        }
        assert_eq!(ok.load(Ordering::SeqCst), 10);
        assert_eq!(store.usage().await.unwrap()[0].usage.used_bytes, 1000);
    }
);

contract!(
    /// Starts racing for one name: exactly one gets it.
    name_reuse_racing_itself_lets_one_through,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let ok = Arc::new(AtomicUsize::new(0));
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (store, ok, p) = (store.clone(), ok.clone(), p.clone());
                tokio::spawn(async move {
                    match open_upload(store.as_ref(), &file(&p, "same-name", FileState::Uploading, 1, 3600), 1000).await {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(refused) => assert_eq!(refused, Refused::NameTaken),
                    }
                })
            })
            .collect();
        for start in starts {
            start.await.unwrap();
        }
        assert_eq!(ok.load(Ordering::SeqCst), 1);
    }
);

contract!(
    /// Creations racing with one Idempotency-Key create one import; the others find it.
    idempotent_creation_racing_itself_creates_once,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let created = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (store, created, p) = (store.clone(), created.clone(), p.clone());
                tokio::spawn(async move {
                    let task_file = file(&p, &format!("idem-{i}"), FileState::Pending, 0, 3600);
                    let mut tx = store.write().await.unwrap();
                    tx.lock_project(&p).await.unwrap();
                    if tx.idempotency(&p, "key-1").await.unwrap().is_some_and(|r| r.file.is_some()) {
                        return;
                    }
                    insert(tx.as_mut(), &task_file, Hanging::Import).await;
                    tx.put_idempotency(&p, "key-1", "hash", &task_file.blob_key, Timestamp::now()).await.unwrap();
                    tx.commit().await.unwrap();
                    created.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for racer in racers {
            racer.await.unwrap();
        }
        assert_eq!(created.load(Ordering::SeqCst), 1);
        assert_eq!(store.usage().await.unwrap()[0].usage.active_imports, 1);
    }
);

contract!(
    /// Expired files are listed for the janitor and, inside a project's lock, for that project only.
    expired_files_are_listed_for_the_janitor_and_per_project,
    |store: Arc<dyn MetaStore>| async move {
        let (p, other) = (project("alpha"), project("beta"));
        let old = file(&p, "old", FileState::Uploading, 900, -10);
        open_upload(store.as_ref(), &old, 1000).await.unwrap();
        open_upload(store.as_ref(), &file(&p, "young", FileState::Uploading, 10, 3600), 1000).await.unwrap();
        open_upload(store.as_ref(), &file(&other, "old", FileState::Uploading, 10, -10), 1000).await.unwrap();
        let mut expired = store.expired_files(Timestamp::now(), 10).await.unwrap();
        expired.sort();
        assert_eq!(expired.len(), 2);
        assert!(expired.contains(&(p.clone(), old.blob_key.to_string())));
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        assert_eq!(tx.expired_files(&p, Timestamp::now(), 10).await.unwrap(), &[old.blob_key.to_string()]);
        remove(tx.as_mut(), &[old.blob_key.to_string()]).await;
        tx.commit().await.unwrap();
        assert!(store.get_file(&p, &old.id).await.unwrap().is_none());
        assert_eq!(store.expired_files(Timestamp::now(), 10).await.unwrap().len(), 1, "beta's is still listed");
    }
);

contract!(
    /// Counters that drifted from the rows are repaired, and said to be.
    recomputing_usage_repairs_drift,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        open_upload(store.as_ref(), &file(&p, "a", FileState::Uploading, 10, 3600), 1000).await.unwrap();
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        tx.add_usage(&p, UsageDelta { bytes: 77, files: 3, open_uploads: 0, active_imports: 2 }).await.unwrap();
        tx.commit().await.unwrap();
        let repaired = store.recompute_usage().await.unwrap();
        assert_eq!(repaired.len(), 1);
        assert_eq!(repaired[0].before.used_bytes, 87);
        assert_eq!(repaired[0].after, ProjectUsage { used_bytes: 10, files: 1, open_uploads: 1, active_imports: 0, quota_bytes: None });
    }
);

contract!(
    /// Of requests racing to write one bucket session, one holds the claim; a claim that lapsed can be
    /// taken over, the commit of a request that lost its claim is refused, and a commit keeps the claim
    /// until it is released.
    one_writer_at_a_time_claims_a_session,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let upload = file(&p, "claimed", FileState::Uploading, 100, 3600);
        open_upload(store.as_ref(), &upload, 1000).await.unwrap();
        let token = session_for(&upload).token_hash;
        let now = Timestamp::now();
        let later = now.plus_seconds(60);
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (store, token) = (store.clone(), token.clone());
                tokio::spawn(async move { store.claim_writer(&token, &format!("w{i}"), later, now).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            won += usize::from(racer.await.unwrap());
        }
        assert_eq!(won, 1);
        assert!(!store.claim_writer(&token, "late", later, now).await.unwrap(), "a live claim holds");
        let lapsed = later.plus_seconds(1);
        assert!(store.claim_writer(&token, "taker", lapsed.plus_seconds(60), lapsed).await.unwrap(), "a lapsed one does not");
        let chunk = ChunkRecord { offset: 0, length: 5, hasher_state: vec![5] };
        assert!(!store.commit_chunk(&token, &chunk, &[], &[], Some("w0"), lapsed).await.unwrap(), "the loser cannot commit");
        assert!(store.commit_chunk(&token, &chunk, &[], &[], Some("taker"), lapsed).await.unwrap());
        let after_commit = lapsed.plus_seconds(1);
        assert!(
            !store.claim_writer(&token, "next", after_commit.plus_seconds(60), after_commit).await.unwrap(),
            "a commit keeps the claim: its request may go on to finalize"
        );
        store.release_writer(&token, "taker").await.unwrap();
        assert!(store.claim_writer(&token, "next", after_commit.plus_seconds(60), after_commit).await.unwrap());
    }
);

contract!(
    /// Garbage is queued once per key and leaves the queue when done; keys and pings work.
    the_garbage_queue_and_keys_behave,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let mut tx = store.write().await.unwrap();
        let staging = crate::domain::Staging { key: "staging/y".into(), dest: "files/y".into(), upload_id: Some("u-1".into()) };
        let g = [Garbage::object("files/x"), Garbage::Staging(staging)];
        tx.queue_garbage(&g, Timestamp::now()).await.unwrap();
        tx.queue_garbage(&g[..1], Timestamp::now()).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.garbage(10).await.unwrap(), g.to_vec());
        store.garbage_done(&["files/x"]).await.unwrap();
        assert_eq!(store.garbage(10).await.unwrap(), g[1..].to_vec());
        store.ensure_project(&p).await.unwrap();
        store.insert_api_key(&p, "hash-1", "label").await.unwrap();
        assert_eq!(store.project_for_key("hash-1").await.unwrap(), Some(p.clone()));
        assert_eq!(store.count_api_keys().await.unwrap(), 1);
        store.ping().await.unwrap();
        store.probe_write(Timestamp::now()).await.unwrap();

        // Several keys at once; a staging area taken off the queue takes its part records with it.
        let upload = file(&p, "parted", FileState::Uploading, 1000, 3600);
        open_upload(store.as_ref(), &upload, 10_000).await.unwrap();
        let token = session_for(&upload).token_hash;
        let chunk = ChunkRecord { offset: 0, length: 10, hasher_state: vec![1] };
        let part = [PartRecord { index: 0, id: "part-0".into() }];
        assert!(store.commit_chunk(&token, &chunk, &part, &[], None, Timestamp::now()).await.unwrap());
        let staging_key = store.get_upload(&token).await.unwrap().unwrap().staging_key;
        assert_eq!(store.parts(&staging_key).await.unwrap().len(), 1);
        store.garbage_done(&["files/never-queued", &staging_key]).await.unwrap();
        assert!(store.parts(&staging_key).await.unwrap().is_empty());
        assert_eq!(store.garbage(10).await.unwrap(), g[1..].to_vec(), "other keys stay queued");
    }
);

contract!(
    /// Keys are listed by project, revoked by the id derived from their hash (which the key no longer
    /// opens), and remember their last use.
    keys_are_listed_revoked_by_id_and_remember_their_last_use,
    |store: Arc<dyn MetaStore>| async move {
        let (alpha, beta) = (project("alpha"), project("beta"));
        store.ensure_project(&alpha).await.unwrap();
        store.ensure_project(&beta).await.unwrap();
        let (a, b) = ("a".repeat(64), format!("{}{}", "b".repeat(16), "c".repeat(48)));
        store.insert_api_key(&alpha, &a, "laptop").await.unwrap();
        store.insert_api_key(&beta, &b, "").await.unwrap();
        let all = store.list_api_keys(None).await.unwrap();
        assert_eq!(all.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["a".repeat(16), "b".repeat(16)]);
        assert_eq!((all[0].project.clone(), all[0].label.as_str(), all[0].last_used_at), (alpha.clone(), "laptop", None));
        assert_eq!(store.list_api_keys(Some(&beta)).await.unwrap().len(), 1);

        let used = Timestamp::from_micros(1_700_000_000_000_000);
        store.key_used(&a, used).await.unwrap();
        assert_eq!(store.list_api_keys(Some(&alpha)).await.unwrap()[0].last_used_at, Some(used));

        assert_eq!(store.revoke_api_key("b", used).await.unwrap(), None, "a prefix is not an id");
        assert_eq!(store.revoke_api_key(&"d".repeat(16), used).await.unwrap(), None);
        let revoked = store.revoke_api_key(&"B".repeat(16), used).await.unwrap().expect("found");
        assert_eq!((revoked.project, revoked.revoked_at), (beta.clone(), Some(used)));
        let again = store.revoke_api_key(&"b".repeat(16), used.plus_seconds(5)).await.unwrap().unwrap();
        assert_eq!(again.revoked_at, Some(used), "the first revocation time stays");
        assert_eq!(store.project_for_key(&b).await.unwrap(), None);
        assert_eq!(store.project_for_key(&a).await.unwrap(), Some(alpha));
        assert_eq!(store.count_api_keys().await.unwrap(), 1);
    }
);

contract!(
    /// A copy is recorded once per file generation even when callers race; it becomes stale when its file
    /// goes or it expires, and only then.
    upstream_copies_are_recorded_once_and_go_stale_with_their_file,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let kept = file(&p, "kept", FileState::Uploading, 10, 3600);
        let gone = file(&p, "gone", FileState::Uploading, 10, 3600);
        open_upload(store.as_ref(), &kept, 1000).await.unwrap();
        open_upload(store.as_ref(), &gone, 1000).await.unwrap();
        let copy = |f: &FileRecord, uri: &str, expires_in: i64| UpstreamCopy {
            blob_key: f.blob_key.to_string(),
            target: CopyTarget::GeminiFiles,
            project: p.clone(),
            uri: uri.into(),
            remote_name: Some(format!("files/{uri}")),
            created_at: Timestamp::now(),
            expires_at: Timestamp::from_micros(Timestamp::now().as_micros() + expires_in * 1_000_000),
        };
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let (store, copy) = (store.clone(), copy(&kept, &format!("uri-{i}"), 3600));
                tokio::spawn(async move { store.put_upstream_copy(&copy).await.unwrap() })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            winners.push(racer.await.unwrap().uri);
        }
        winners.dedup();
        assert_eq!(winners.len(), 1, "every racer reads the one recorded copy: {winners:?}");
        let recorded = store.upstream_copy(&kept.blob_key, CopyTarget::GeminiFiles).await.unwrap().unwrap();
        assert_eq!(recorded.uri, winners[0]);
        assert!(store.upstream_copy(&kept.blob_key, CopyTarget::VertexStaging).await.unwrap().is_none());

        store.put_upstream_copy(&copy(&gone, "of-gone", 3600)).await.unwrap();
        let mut staged = copy(&kept, "gs://staging/kept", -5);
        staged.target = CopyTarget::VertexStaging;
        store.put_upstream_copy(&staged).await.unwrap();
        assert!(
            store.stale_upstream_copies(Timestamp::now(), 10).await.unwrap().iter().all(|c| c.uri == "gs://staging/kept"),
            "only the expired copy is stale while both files live"
        );
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        remove(tx.as_mut(), &[gone.blob_key.to_string()]).await;
        tx.commit().await.unwrap();
        let mut stale: Vec<String> =
            store.stale_upstream_copies(Timestamp::now(), 10).await.unwrap().into_iter().map(|c| c.uri).collect();
        stale.sort();
        assert_eq!(stale, ["gs://staging/kept", "of-gone"]);
        for copy in store.stale_upstream_copies(Timestamp::now(), 10).await.unwrap() {
            store.delete_upstream_copy(&copy.blob_key, copy.target).await.unwrap();
        }
        assert!(store.stale_upstream_copies(Timestamp::now(), 10).await.unwrap().is_empty());
        assert!(store.upstream_copy(&kept.blob_key, CopyTarget::GeminiFiles).await.unwrap().is_some());
    }
);

contract!(
    /// A cache belongs to its project; a copy it holds outlives its file until the cache's expiry, and a
    /// hold is only ever raised (several caches may hold one copy).
    cached_contents_are_per_project_and_hold_their_copies,
    |store: Arc<dyn MetaStore>| async move {
        let (alpha, beta) = (project("alpha"), project("beta"));
        let video = file(&alpha, "video", FileState::Uploading, 10, 3600);
        open_upload(store.as_ref(), &video, 1000).await.unwrap();
        let now = Timestamp::now();
        let later = |seconds: u64| now.plus_seconds(seconds);
        let copy = UpstreamCopy {
            blob_key: video.blob_key.to_string(),
            target: CopyTarget::VertexStaging,
            project: alpha.clone(),
            uri: "gs://staging/video".into(),
            remote_name: None,
            created_at: now,
            expires_at: later(3600),
        };
        store.put_upstream_copy(&copy).await.unwrap();
        let cache = |id: &str, expires_at| CachedContent {
            id: id.into(),
            project: alpha.clone(),
            upstream_name: format!("cachedContents/up-{id}"),
            model: "models/gemini-test".into(),
            view: "{}".into(),
            copies: vec![(video.blob_key.to_string(), CopyTarget::VertexStaging)],
            created_at: now,
            expires_at,
        };
        for (id, expires_at) in [("c1", later(7200)), ("c2", later(60)), ("c0", now)] {
            store.put_cached_content(&cache(id, expires_at)).await.unwrap();
        }
        let held = [(video.blob_key.to_string(), CopyTarget::VertexStaging)];
        store.hold_upstream_copies(&held, later(7200)).await.unwrap();
        store.hold_upstream_copies(&held, later(60)).await.unwrap();

        assert_eq!(store.cached_content(&alpha, "c1").await.unwrap(), Some(cache("c1", later(7200))));
        assert_eq!(store.cached_content(&beta, "c1").await.unwrap(), None, "another project's cache is missing");
        let listed = |after| {
            let (store, alpha) = (store.clone(), alpha.clone());
            async move {
                let caches = store.cached_contents(&alpha, now, after, 1).await.unwrap();
                caches.into_iter().map(|c| c.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed(None).await, ["c1"], "the expired c0 is not listed");
        assert_eq!(listed(Some("c1")).await, ["c2"]);
        assert!(store.cached_contents(&beta, now, None, 10).await.unwrap().is_empty());
        assert!(!store.update_cached_content(&beta, "c2", "{\"x\": 1}", later(90)).await.unwrap());
        assert!(store.update_cached_content(&alpha, "c2", "{\"x\": 1}", later(90)).await.unwrap());
        assert_eq!(store.cached_content(&alpha, "c2").await.unwrap().unwrap().expires_at, later(90));

        // The file goes: its copy stays while a cache holds it, past the copy's own expiry too.
        let mut tx = store.write().await.unwrap();
        tx.lock_project(&alpha).await.unwrap();
        remove(tx.as_mut(), &[video.blob_key.to_string()]).await;
        tx.commit().await.unwrap();
        assert!(store.stale_upstream_copies(later(7000), 10).await.unwrap().is_empty(), "held until c1 expires");
        assert_eq!(store.stale_upstream_copies(later(7200), 10).await.unwrap().len(), 1);

        assert!(!store.delete_cached_content(&beta, "c1").await.unwrap());
        assert!(store.delete_cached_content(&alpha, "c1").await.unwrap());
        assert_eq!(store.delete_expired_cached_contents(later(100)).await.unwrap(), 2, "c0 and c2 expired");
        assert!(store.cached_contents(&alpha, now, None, 10).await.unwrap().is_empty());
    }
);

contract!(
    /// A batch belongs to its project; its results are collected by one claimer at a time, and never once
    /// they are recorded.
    batches_are_per_project_and_collected_once,
    |store: Arc<dyn MetaStore>| async move {
        let (alpha, beta) = (project("alpha"), project("beta"));
        let now = Timestamp::now();
        let batch = |id: &str| BatchRecord {
            id: id.into(),
            project: alpha.clone(),
            upstream_name: format!("batches/up-{id}"),
            model: "models/gemini-test".into(),
            display_name: Some("nightly".into()),
            state: "BATCH_STATE_PENDING".into(),
            input_file: Some(FileId::from_stored("requests".into())),
            output_file: None,
            error: None,
            created_at: now,
            updated_at: now,
            end_time: None,
        };
        let unfinished = Unfinished {
            ended: &["BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"],
            succeeded: "BATCH_STATE_SUCCEEDED",
        };
        for id in ["b2", "b1", "b3"] {
            assert!(store.put_batch(&batch(id), unfinished, 3).await.unwrap());
        }
        assert_eq!(store.unfinished_batch_count(&alpha, unfinished).await.unwrap(), 3);
        assert!(!store.put_batch(&batch("b4"), unfinished, 3).await.unwrap(), "a project at its limit");
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (store, beta) = (store.clone(), beta.clone());
                let racing = BatchRecord { project: beta, ..batch(&format!("r{i}")) };
                tokio::spawn(async move { store.put_batch(&racing, unfinished, 5).await.unwrap() })
            })
            .collect();
        let mut kept = 0;
        for racer in racers {
            kept += usize::from(racer.await.unwrap());
        }
        assert_eq!(kept, 5, "racing creates never pass the limit together");
        assert_eq!(store.unfinished_batch_count(&beta, unfinished).await.unwrap(), 5);
        for i in 0..8 {
            store.delete_batch(&beta, &format!("r{i}")).await.unwrap();
        }
        assert_eq!(store.batch(&alpha, "b1").await.unwrap(), Some(batch("b1")));
        assert_eq!(store.batch(&beta, "b1").await.unwrap(), None);
        let ids = |batches: Vec<BatchRecord>| batches.into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(store.batches(&alpha, None, 2).await.unwrap()), ["b1", "b2"]);
        assert_eq!(ids(store.batches(&alpha, Some("b2"), 2).await.unwrap()), ["b3"]);
        assert!(store.batches(&beta, None, 10).await.unwrap().is_empty());

        let racers: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let owner = format!("node-{i}");
                    let until = now.plus_seconds(60);
                    store.claim_item(Queue::BatchCollections, "b1", &owner, now, until).await.unwrap().is_some()
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            won += usize::from(racer.await.unwrap());
        }
        assert_eq!(won, 1, "one claimer collects");

        let done = BatchRecord {
            state: "BATCH_STATE_SUCCEEDED".into(),
            output_file: Some(FileId::from_stored("results".into())),
            end_time: Some(now.plus_seconds(5)),
            updated_at: now.plus_seconds(5),
            ..batch("b1")
        };
        // A change is recorded only from the state it was learnt in: of two nodes, one records it.
        let mut tx = store.write().await.unwrap();
        assert!(!tx.update_batch_from(&done, "BATCH_STATE_RUNNING", false).await.unwrap(), "not from that state");
        assert!(tx.update_batch_from(&done, "BATCH_STATE_PENDING", false).await.unwrap());
        assert!(!tx.update_batch_from(&done, "BATCH_STATE_PENDING", false).await.unwrap(), "recorded already");
        let other = BatchRecord { project: beta.clone(), ..batch("b2") };
        assert!(!tx.update_batch_from(&other, "BATCH_STATE_PENDING", false).await.unwrap(), "another project's");
        tx.commit().await.unwrap();
        assert_eq!(store.batch(&alpha, "b1").await.unwrap(), Some(done));
        let later = now.plus_seconds(800);
        let claimed = store.claim_item(Queue::BatchCollections, "b1", "node", later, later.plus_seconds(60)).await;
        assert_eq!(claimed.unwrap(), None, "collected results are not collected again");
        let first = store.unfinished_batches(unfinished, None, 1).await.unwrap();
        let cursor = (first[0].created_at, first[0].id.clone());
        let rest = store.unfinished_batches(unfinished, Some(&cursor), 10).await.unwrap();
        assert_eq!(ids(first), ["b2"], "oldest first (all made at once: then by id)");
        assert_eq!(ids(rest), ["b3"], "page by page; a batch whose results were collected has ended");
        assert_eq!(store.unfinished_batch_count(&alpha, unfinished).await.unwrap(), 2);
        assert!(!store.delete_batch(&beta, "b1").await.unwrap());
        assert!(store.delete_batch(&alpha, "b1").await.unwrap());
        assert_eq!(store.batch(&alpha, "b1").await.unwrap(), None);
    }
);

contract!(
    /// A multipart upload's id is recorded only on a live owner of its staging area: once the upload or
    /// import was removed (a delete racing its start), nothing records it and the caller learns so.
    an_upload_id_is_recorded_only_while_its_staging_area_has_a_live_owner,
    |store: Arc<dyn MetaStore>| async move {
        let p = project("alpha");
        let upload = file(&p, "up-1", FileState::Uploading, 100, 3600);
        open_upload(store.as_ref(), &upload, 1000).await.unwrap();
        let imported = FileRecord { origin: Origin::Import, charged_bytes: 0, ..file(&p, "imp-1", FileState::Pending, 0, 3600) };
        enqueue_import(store.as_ref(), &imported).await;
        let (session_key, import_key) = (session_for(&upload).staging_key, import_for(&imported).staging_key);
        assert!(store.set_upload_id(&session_key, "mpu-1").await.unwrap());
        assert!(store.set_upload_id(&import_key, "mpu-2").await.unwrap());
        assert!(!store.set_upload_id("staging/nobody", "mpu-3").await.unwrap());

        let mut tx = store.write().await.unwrap();
        tx.lock_project(&p).await.unwrap();
        let removed = remove(tx.as_mut(), &[upload.blob_key.to_string(), imported.blob_key.to_string()]).await;
        tx.commit().await.unwrap();
        let mut recorded: Vec<_> = removed
            .iter()
            .flat_map(|r| [&r.open_session, &r.unfinished_import])
            .flatten()
            .map(|staged| staged.staging.upload_id.clone().unwrap())
            .collect();
        recorded.sort();
        assert_eq!(recorded, ["mpu-1", "mpu-2"], "the removal saw the recorded ids");
        assert!(!store.set_upload_id(&session_key, "mpu-4").await.unwrap(), "a cancelled session records nothing");
        assert!(!store.set_upload_id(&import_key, "mpu-5").await.unwrap(), "a removed import records nothing");
    }
);
