//! Where file rows come and go, and the rules that admit them.
//!
//! A project's counters (bytes charged, files, open uploads, imports in flight) move in the same
//! transaction as the rows they count, and only here: [`add`], [`recharge`] and [`remove`] are the one way
//! each change happens, for uploads, imports, deletes, cancels and expiry alike. [`admit`] applies the
//! project's limits to what a new row would add, under the project's lock.
//!
//! An expired file counts until the janitor removes it. So that expiry frees a project's quota and limits
//! at once anyway, [`admit`] removes the project's expired files itself when they are all that stands in
//! the way of a request.
//!
//! A visible file that goes tells its webhooks in the same transaction: `file.expired` if it had
//! expired, else `file.deleted`.

use super::locks::Running;
use super::outbox::{self, EventType};
use crate::blob::Blobs;
use crate::config::Limits;
use crate::domain::{FileId, FileRecord, Limit, ProjectId, Timestamp};
use crate::error::{Error, Result};
use crate::meta::{Garbage, MetaStore, NewImport, NewSession, ProjectUsage, StagedBytes, UsageDelta, WriteTx};

/// How many expired files [`admit`] removes at most before it gives up and refuses.
const INLINE_EXPIRY_BATCH: u32 = 1000;

/// What a new file row will add to its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Bytes reserved at once.
    pub bytes: u64,
    /// A new file row (not more bytes for an existing one).
    pub file: bool,
    /// An upload session opens with it.
    pub upload: bool,
    /// An import task is queued with it (it reserves nothing yet, but needs quota left to start).
    pub import: bool,
}

/// Checks `demand` against the project's limits; the error names the limit.
pub fn check(limits: &Limits, usage: &ProjectUsage, demand: &Demand) -> Result<()> {
    let quota = usage.quota_bytes.unwrap_or(limits.project_quota_bytes);
    let available = quota.saturating_sub(usage.used_bytes);
    if demand.bytes > available || (demand.import && available == 0) {
        return Err(Error::QuotaExceeded { requested: demand.bytes.max(u64::from(demand.import)), available, quota });
    }
    if demand.file && usage.files >= limits.project_max_files {
        return Err(Error::LimitReached(Limit::Files { held: usage.files }));
    }
    if demand.upload && usage.open_uploads >= limits.project_max_open_uploads {
        return Err(Error::LimitReached(Limit::OpenUploads { open: usage.open_uploads }));
    }
    if demand.import && usage.active_imports >= limits.project_max_active_imports {
        return Err(Error::LimitReached(Limit::ActiveImports { active: usage.active_imports }));
    }
    Ok(())
}

/// Locks the project and admits `demand`, removing the project's expired files first when they are all
/// that stands in the way. Their bytes are queued for the janitor.
pub async fn admit(
    tx: &mut dyn WriteTx,
    project: &ProjectId,
    limits: &Limits,
    demand: &Demand,
    now: Timestamp,
) -> Result<ProjectUsage> {
    let usage = tx.lock_project(project).await?;
    let Err(refused) = check(limits, &usage, demand) else { return Ok(usage) };
    if expire_project(tx, project, now).await? == 0 {
        return Err(refused);
    }
    let usage = tx.lock_project(project).await?;
    check(limits, &usage, demand)?;
    Ok(usage)
}

/// Removes up to a batch of the project's expired files; returns how many went.
async fn expire_project(tx: &mut dyn WriteTx, project: &ProjectId, now: Timestamp) -> Result<usize> {
    let keys = tx.expired_files(project, now, INLINE_EXPIRY_BATCH).await?;
    for key in &keys {
        remove(tx, key, now).await?;
    }
    Ok(keys.len())
}

/// What comes with a new file row.
pub enum Companion<'a> {
    Session(&'a NewSession),
    Import(&'a NewImport),
    /// Nothing: the bytes are in the caller's own bucket (`services/register.rs`).
    Registered,
}

/// Inserts a file row with its session or import task, and counts it.
pub async fn add(tx: &mut dyn WriteTx, file: &FileRecord, companion: Companion<'_>) -> Result<()> {
    tx.insert_file(file).await.map_err(|e| match e {
        crate::meta::MetaError::Conflict(_) => Error::AlreadyExists(file.id.to_string()),
        other => other.into(),
    })?;
    let mut delta = UsageDelta { bytes: signed(file.charged_bytes), files: 1, ..UsageDelta::default() };
    match companion {
        Companion::Session(session) => {
            tx.insert_session(session).await?;
            delta.open_uploads = 1;
        }
        Companion::Import(task) => {
            tx.insert_import(task).await?;
            delta.active_imports = 1;
        }
        Companion::Registered => {}
    }
    tx.add_usage(&file.project, delta).await?;
    Ok(())
}

/// Moves a file's charge from `before` to `after` bytes (and ends its session or import, as `delta`
/// says); the caller writes the row's new `charged_bytes`.
pub async fn recharge(
    tx: &mut dyn WriteTx,
    project: &ProjectId,
    before: u64,
    after: u64,
    mut delta: UsageDelta,
) -> Result<()> {
    delta.bytes = signed(after) - signed(before);
    tx.add_usage(project, delta).await?;
    Ok(())
}

/// Removes a file row with what hangs on it (its import task, its open session), uncounts it, and queues
/// its bytes (the object and any staging area) for deletion. Returns the file and what was queued, which
/// the caller may delete at once; `None` when there was no such row.
pub async fn remove(
    tx: &mut dyn WriteTx,
    blob_key: &str,
    now: Timestamp,
) -> Result<Option<(FileRecord, Vec<Garbage>)>> {
    Ok(remove_many(tx, &[blob_key.to_owned()], now).await?.pop())
}

/// [`remove`] for many rows at once, in a few statements: each removed file with the garbage queued for it.
pub async fn remove_many(
    tx: &mut dyn WriteTx,
    blob_keys: &[String],
    now: Timestamp,
) -> Result<Vec<(FileRecord, Vec<Garbage>)>> {
    // An import's own webhooks are read while its row exists.
    let request_webhooks = tx.request_webhooks(blob_keys).await?;
    let removed = tx.remove_files(blob_keys, now).await?;
    let mut deltas: Vec<(ProjectId, UsageDelta)> = Vec::new();
    let mut out = Vec::with_capacity(removed.len());
    for removed in removed {
        let file = removed.file;
        let mut garbage = vec![Garbage::object(&file.blob_key)];
        for staged in removed.open_session.iter().chain(&removed.unfinished_import) {
            garbage.extend(staged_garbage(staged));
        }
        let delta = UsageDelta {
            bytes: -signed(file.charged_bytes),
            files: -1,
            open_uploads: -i64::from(removed.open_session.is_some()),
            active_imports: -i64::from(removed.unfinished_import.is_some()),
        };
        match deltas.iter_mut().find(|(project, _)| *project == file.project) {
            Some((_, sum)) => *sum = sum.plus(delta),
            None => deltas.push((file.project.clone(), delta)),
        }
        out.push((file, garbage));
    }
    let garbage: Vec<Garbage> = out.iter().flat_map(|(_, g)| g.iter().cloned()).collect();
    tx.queue_garbage(&garbage, now).await?;
    let events: Vec<(EventType, &FileRecord)> =
        out.iter().filter_map(|(file, _)| Some((outbox::removal(file, now)?, file))).collect();
    outbox::queue_with(tx, &events, &request_webhooks, now).await?;
    for (project, delta) in deltas {
        tx.add_usage(&project, delta).await?;
    }
    Ok(out)
}

/// Deletes a visible, unexpired file of `project`, from either surface: its row goes at once (freeing its
/// name, quota and limits), a fetch of it running on this node stops (other nodes notice at their next
/// lease renewal), and its bytes go right after (the janitor retries whatever fails).
pub async fn delete(
    meta: &dyn MetaStore,
    blobs: &Blobs,
    running_imports: &Running,
    project: &ProjectId,
    id: &FileId,
) -> Result<FileRecord> {
    let now = Timestamp::now();
    let not_found = || Error::FileNotFound(id.to_string());
    let mut tx = meta.write().await?;
    tx.lock_project(project).await?;
    let file =
        tx.file(project, id).await?.filter(|f| f.state.is_visible() && !f.is_expired(now)).ok_or_else(not_found)?;
    let (file, garbage) = remove(tx.as_mut(), &file.blob_key, now).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    running_imports.cancel(&file.blob_key);
    super::garbage::reclaim_now(meta, blobs, &garbage).await;
    Ok(file)
}

/// What an ended staging area leaves to delete: the area itself (a local staging file, or a multipart
/// upload to abort) and, on a bucket, the tail object past its last full part, if there is one (the
/// metadata layer does not know the store's granule, and deleting a tail that does not exist is harmless).
pub fn staged_garbage(staged: &StagedBytes) -> Vec<Garbage> {
    let mut garbage = vec![Garbage::Staging(staged.staging.clone())];
    if staged.staging.upload_id.is_some() && staged.received > 0 {
        garbage.push(Garbage::object(&staged.staging.tail_key(staged.received)));
    }
    garbage
}

fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::MediaTypePolicy;

    fn limits_with(project_max_active_imports: u64) -> Limits {
        Limits {
            max_file_bytes: 100,
            project_quota_bytes: 1000,
            project_max_open_uploads: 2,
            project_max_files: 3,
            project_max_active_imports,
            project_max_running_batches: 100,
            default_ttl: Duration::from_secs(60),
            upload_claim: Duration::from_secs(30),
            media_types: MediaTypePolicy::new(vec!["*".into()]),
        }
    }

    fn usage(used_bytes: u64, files: u64, open_uploads: u64, active_imports: u64) -> ProjectUsage {
        ProjectUsage { used_bytes, files, open_uploads, active_imports, quota_bytes: None }
    }

    #[test]
    fn each_limit_is_named_when_it_refuses() {
        let upload = |bytes| Demand { bytes, file: true, upload: true, import: false };
        let import = Demand { bytes: 0, file: true, upload: false, import: true };
        let more_bytes = Demand { bytes: 10, file: false, upload: false, import: false };
        assert!(check(&limits_with(5), &usage(0, 3, 2, 5), &more_bytes).is_ok(), "an existing file may grow");
        assert!(check(&limits_with(5), &usage(900, 2, 1, 0), &upload(100)).is_ok());
        assert!(matches!(
            check(&limits_with(5), &usage(901, 0, 0, 0), &upload(100)),
            Err(Error::QuotaExceeded { available: 99, .. })
        ));
        let code = |r: Result<()>| match r {
            Err(Error::LimitReached(limit)) => limit.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(code(check(&limits_with(5), &usage(0, 3, 0, 0), &upload(1))), "too_many_files");
        assert_eq!(code(check(&limits_with(5), &usage(0, 2, 2, 0), &upload(1))), "too_many_uploads");
        assert_eq!(code(check(&limits_with(1), &usage(0, 1, 0, 1), &import)), "too_many_imports");
        assert!(matches!(check(&limits_with(5), &usage(1000, 0, 0, 0), &import), Err(Error::QuotaExceeded { .. })));
        let own_quota = ProjectUsage { quota_bytes: Some(5000), ..usage(4000, 0, 0, 0) };
        assert!(check(&limits_with(5), &own_quota, &upload(100)).is_ok(), "a project's own quota wins");
    }

    async fn sqlite() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::meta::sql::SqlMeta::open_sqlite(&dir.path().join("meta.db"), 8, true).await.unwrap();
        (dir, Arc::new(store))
    }

    /// An upload's row and session, `charged` bytes, expiring in `expires_in` seconds.
    fn upload_of(project: &ProjectId, id: &str, charged: u64, expires_in: i64) -> (FileRecord, NewSession) {
        let now = Timestamp::now();
        let expires_at = Timestamp::from_micros(now.as_micros() + expires_in * 1_000_000);
        let blob_key = crate::domain::StorageKey::from_stored(format!("files/{project}/{id}"));
        let file = FileRecord {
            project: project.clone(),
            id: FileId::from_stored(id.to_owned()),
            display_name: None,
            mime_type: "video/mp4".into(),
            size_bytes: Some(charged),
            sha256: None,
            state: crate::domain::FileState::Uploading,
            origin: crate::domain::Origin::Upload,
            blob_key: blob_key.clone(),
            charged_bytes: charged,
            created_at: now,
            updated_at: now,
            expires_at,
            error: None,
            import: None,
        };
        let session = NewSession {
            token_hash: format!("token-{id}"),
            project: project.clone(),
            file_id: file.id.clone(),
            blob_key: blob_key.to_string(),
            declared_size: Some(charged),
            hasher_state: vec![],
            staging_key: format!("staging/{id}"),
            created_at: now,
            expires_at,
        };
        (file, session)
    }

    /// Admits and adds an upload the way the upload service does.
    async fn start(meta: &dyn MetaStore, limits: &Limits, id: &str, charged: u64, expires_in: i64) -> Result<()> {
        let project = ProjectId::parse("alpha").unwrap();
        let (file, session) = upload_of(&project, id, charged, expires_in);
        let mut tx = meta.write().await?;
        let demand = Demand { bytes: charged, file: true, upload: true, import: false };
        admit(tx.as_mut(), &project, limits, &demand, Timestamp::now()).await?;
        add(tx.as_mut(), &file, Companion::Session(&session)).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn starts_racing_near_the_quota_admit_as_many_as_fit_and_never_one_more() {
        let (_dir, meta) = sqlite().await;
        let limits =
            Limits { max_file_bytes: 1000, project_max_open_uploads: 100, project_max_files: 100, ..limits_with(1) };
        let racers: Vec<_> = (0..24)
            .map(|i| {
                let (meta, limits) = (meta.clone(), limits.clone());
                tokio::spawn(async move { start(meta.as_ref(), &limits, &format!("q{i}"), 100, 3600).await })
            })
            .collect();
        let mut admitted = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) => admitted += 1,
                Err(Error::QuotaExceeded { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(admitted, 10);
        let usage = meta.usage().await.unwrap();
        assert_eq!((usage[0].usage.used_bytes, usage[0].usage.open_uploads), (1000, 10));
    }

    #[tokio::test]
    async fn an_admission_blocked_by_expired_files_removes_them_and_queues_their_bytes() {
        let (_dir, meta) = sqlite().await;
        let limits = limits_with(1);
        start(meta.as_ref(), &limits, "old", 90, -10).await.unwrap();
        start(meta.as_ref(), &limits, "older", 800, -20).await.unwrap();
        // 890 of 1000 bytes are held by expired files: the next start removes them and fits.
        start(meta.as_ref(), &limits, "new", 100, 3600).await.unwrap();
        let usage = meta.usage().await.unwrap();
        assert_eq!((usage[0].usage.used_bytes, usage[0].usage.files, usage[0].usage.open_uploads), (100, 1, 1));
        let mut queued: Vec<String> = meta.garbage(10).await.unwrap().iter().map(|g| g.key().to_owned()).collect();
        queued.sort();
        assert_eq!(queued, ["files/alpha/old", "files/alpha/older", "staging/old", "staging/older"]);
        assert!(meta.recompute_usage().await.unwrap().is_empty(), "the counters agree with the rows");
    }
}
