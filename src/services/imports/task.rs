//! The durable steps of a claimed import task, each one transaction that holds only while the worker
//! still holds the task's lease: record progress (charging the project for the bytes as they become
//! known), finish, fail. A worker whose lease ran out (another node took the task over, or the file was
//! deleted) gets `false`/`None` and stops; its writes never overwrite the newer holder's. Finishing and
//! failing queue the file's `file.active` / `file.failed` events in the same transaction.

use super::super::lifecycle::{self, Demand};
use crate::config::Limits;
use crate::domain::{FileError, FileRecord, FileState, Timestamp};
use crate::error::Result;
use crate::meta::{FileUpdate, Garbage, ImportProgress, ImportTask, MetaStore, PartRecord, StagedBytes, UsageDelta};
use crate::services::outbox::{self, EventType};

/// What the file is charged while it arrives: its announced size when known (reserved before the bytes
/// come), else what has arrived.
fn charge_for(progress: &ImportProgress) -> u64 {
    progress.total_bytes.unwrap_or(progress.received_bytes).max(progress.received_bytes)
}

/// Durable progress to record: where the import stands, and what its staging gained and left behind.
pub struct Step<'a> {
    pub progress: &'a ImportProgress,
    /// Known once the first part arrived.
    pub mime_type: Option<&'a str>,
    pub parts: &'a [PartRecord],
    /// A superseded tail object.
    pub garbage: &'a [Garbage],
    /// The import started over (the source changed): its earlier parts are forgotten.
    pub restart: bool,
}

/// Records durable progress and charges the project for it; `QuotaExceeded` when that does not fit, `false`
/// when the lease is lost.
pub async fn record_progress(
    meta: &dyn MetaStore,
    limits: &Limits,
    task: &ImportTask,
    step: &Step<'_>,
) -> Result<bool> {
    let progress = step.progress;
    let now = Timestamp::now();
    let mut tx = meta.write().await?;
    tx.lock_project(&task.project).await?;
    let Some(held) = tx.leased_import(&task.lease).await? else { return Ok(false) };
    let charge = charge_for(progress);
    if charge > held.charged_bytes {
        let demand = Demand { bytes: charge - held.charged_bytes, file: false, upload: false, import: false };
        lifecycle::admit(tx.as_mut(), &task.project, limits, &demand, now).await?;
    }
    tx.save_import_progress(&held, progress, step.parts, step.restart, now).await?;
    tx.queue_garbage(step.garbage, now).await?;
    let update = FileUpdate {
        charged_bytes: Some(charge),
        size_bytes: progress.total_bytes,
        mime_type: step.mime_type.map(str::to_owned),
        ..FileUpdate::default()
    };
    tx.update_file(&task.blob_key, &update, now).await?;
    lifecycle::recharge(tx.as_mut(), &task.project, held.charged_bytes, charge, UsageDelta::default()).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks the file ready with its exact size, digest and type, charging exactly its size; the task is
/// finished and `garbage` (its staging area) queued for deletion. `None` when the lease is lost.
pub async fn finish(
    meta: &dyn MetaStore,
    task: &ImportTask,
    (size, sha256, mime_type): (u64, [u8; 32], &str),
    garbage: &[Garbage],
) -> Result<Option<FileRecord>> {
    let now = Timestamp::now();
    let mut tx = meta.write().await?;
    tx.lock_project(&task.project).await?;
    let Some(held) = tx.leased_import(&task.lease).await? else { return Ok(None) };
    tx.finish_import_task(&task.blob_key, None, now).await?;
    let update = FileUpdate {
        state: Some(FileState::Ready),
        size_bytes: Some(size),
        sha256: Some(sha256),
        mime_type: Some(mime_type.to_owned()),
        charged_bytes: Some(size),
        ..FileUpdate::default()
    };
    tx.update_file(&task.blob_key, &update, now).await?;
    let ended = UsageDelta { active_imports: -1, ..UsageDelta::default() };
    lifecycle::recharge(tx.as_mut(), &task.project, held.charged_bytes, size, ended).await?;
    tx.queue_garbage(garbage, now).await?;
    let file = tx.file_by_blob(&task.blob_key).await?;
    if let Some(file) = &file {
        outbox::queue_file_events(tx.as_mut(), &[(EventType::FileActive, file)], now).await?;
    }
    tx.commit().await?;
    Ok(file)
}

/// Marks the file failed with `error`; it then holds no quota (its row stays, visible as FAILED, until it
/// expires or is deleted). Returns the staging it queued for deletion; `None` when the lease is lost.
pub async fn fail(meta: &dyn MetaStore, task: &ImportTask, error: &FileError) -> Result<Option<Vec<Garbage>>> {
    let now = Timestamp::now();
    let mut tx = meta.write().await?;
    tx.lock_project(&task.project).await?;
    let Some(held) = tx.leased_import(&task.lease).await? else { return Ok(None) };
    tx.finish_import_task(&task.blob_key, Some(error.code.as_str()), now).await?;
    let update = FileUpdate {
        state: Some(FileState::Failed),
        charged_bytes: Some(0),
        error: Some(error.clone()),
        ..FileUpdate::default()
    };
    tx.update_file(&task.blob_key, &update, now).await?;
    let ended = UsageDelta { active_imports: -1, ..UsageDelta::default() };
    lifecycle::recharge(tx.as_mut(), &task.project, held.charged_bytes, 0, ended).await?;
    let staged = StagedBytes { staging: held.staging(), received: held.received_bytes };
    let garbage = lifecycle::staged_garbage(&staged);
    tx.queue_garbage(&garbage, now).await?;
    if let Some(file) = tx.file_by_blob(&task.blob_key).await? {
        outbox::queue_file_events(tx.as_mut(), &[(EventType::FileFailed, &file)], now).await?;
    }
    tx.commit().await?;
    Ok(Some(garbage))
}
