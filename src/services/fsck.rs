//! `filegate fsck`: whether the database and the blob store agree, and what is left behind by crashes,
//! bugs or hands: objects missing or of the wrong size (or bytes, with `digests`), objects and staging
//! areas nobody owns, open multipart uploads nobody owns, part records of ended transfers, project
//! counters that drifted from their rows, leases whose holder went away, garbage the store keeps refusing.
//!
//! It is safe against a live deployment: reads are single statements (consistent snapshots), anything
//! younger than `grace` is not judged (an upload's tail is stored a moment before its commit records it),
//! and each repair re-checks its finding at the moment it acts. Files are read page by page and the store
//! listed page by page, so a million files take constant memory. Findings go to the caller one by one as
//! they are made (`on_finding`); the report counts what was checked.
//!
//! `repair` fixes what is safe to fix without a person: objects, staging areas and multipart uploads
//! nobody owns are deleted, leftover part records dropped, counters recounted, stale leases released and
//! the garbage queue retried. Missing or damaged bytes are reported, never "repaired": only a backup (or
//! deleting the file) can.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::blob::{Blobs, ObjectEntry};
use crate::domain::{BlobKey, ProjectId, Timestamp};
use crate::error::Result;
use crate::hash::ResumableSha256;
use crate::meta::{LeftoverParts, MetaStore, StaleLease, StoredFile, UsageRepair};

/// What a run does.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Fix what is safe to fix; otherwise only look.
    pub repair: bool,
    /// Read every file's bytes and compare their SHA-256 with the recorded one (reads the whole store).
    pub digests: bool,
    /// How old an object, upload or lease must be before it is judged left behind.
    pub grace: Duration,
}

/// Something that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A ready file whose object is not in the store.
    MissingObject { key: String, size: u64 },
    /// A ready file whose object holds another number of bytes than recorded.
    WrongSize { key: String, recorded: u64, stored: u64 },
    /// A ready file whose bytes no longer have the recorded SHA-256.
    WrongDigest { key: String },
    /// An object (a file's, a tail, a local staging file) no row refers to.
    OrphanObject { key: String, size: u64 },
    /// An open multipart upload no staging area or queued garbage records.
    UnownedUpload { key: String, upload_id: String },
    /// Part records of a staging area nobody owns any more.
    LeftoverParts(LeftoverParts),
    /// A project's counters differ from its rows.
    CounterDrift(UsageRepair),
    /// A lease whose holder stopped renewing it long ago.
    StaleLease(StaleLease),
    /// Garbage queued longer than the grace and still not deleted (the store keeps refusing it).
    GarbageBacklog { queued: u64 },
}

impl Problem {
    /// A short name for scripts and the summary.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::MissingObject { .. } => "missing_object",
            Self::WrongSize { .. } => "wrong_size",
            Self::WrongDigest { .. } => "wrong_digest",
            Self::OrphanObject { .. } => "orphan_object",
            Self::UnownedUpload { .. } => "unowned_upload",
            Self::LeftoverParts(_) => "leftover_parts",
            Self::CounterDrift(_) => "counter_drift",
            Self::StaleLease(_) => "stale_lease",
            Self::GarbageBacklog { .. } => "garbage_backlog",
        }
    }
}

/// What became of a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fixed by this run.
    Repaired,
    /// `--repair` would fix it.
    Repairable,
    /// The repair was tried and failed (the message says why); running again may fix it.
    RepairFailed(String),
    /// Not for a program to fix: what a person can do.
    LeftForAPerson(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: Problem,
    pub outcome: Outcome,
}

/// What a run looked at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    pub files: u64,
    pub file_bytes: u64,
    pub objects: u64,
    pub open_uploads: u64,
    /// Listed objects that are not filegate's (another name scheme under its prefix): left alone.
    pub foreign_objects: u64,
    /// Objects, uploads and leases younger than the grace: not judged.
    pub too_recent: u64,
    /// Whether the store could list its open multipart uploads (S3, Google Cloud Storage).
    pub uploads_listed: bool,
}

/// Files read and objects judged per round trip to the database.
const PAGE: usize = 500;
/// Objects asked about (HEAD) at once.
const SIZES_AT_ONCE: usize = 32;
/// Objects read whole at once for their digest.
const DIGESTS_AT_ONCE: usize = 4;
/// Stale leases listed at most (they are released all at once).
const LEASES_LISTED: u32 = 1000;

const RESTORE: &str = "restore the object from a backup, or delete the file (its bytes are lost)";

pub async fn run(
    meta: &dyn MetaStore,
    blobs: &Blobs,
    options: Options,
    on_finding: &mut dyn FnMut(Finding),
) -> Result<Checked> {
    let mut run = Run { meta, blobs, options, cutoff: cutoff(options.grace), checked: Checked::default(), on_finding };
    run.files().await?;
    run.objects("files").await?;
    run.objects("staging").await?;
    run.uploads().await?;
    run.parts().await?;
    run.counters().await?;
    run.leases().await?;
    run.garbage().await?;
    Ok(run.checked)
}

fn cutoff(grace: Duration) -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() - grace.as_micros() as i64)
}

struct Run<'a> {
    meta: &'a dyn MetaStore,
    blobs: &'a Blobs,
    options: Options,
    /// Anything younger is not judged.
    cutoff: Timestamp,
    checked: Checked,
    on_finding: &'a mut dyn FnMut(Finding),
}

impl Run<'_> {
    fn report(&mut self, problem: Problem, outcome: Outcome) {
        (self.on_finding)(Finding { problem, outcome });
    }

    /// The outcome of a repair that was run (`Ok`) or not (`None`, read-only).
    fn outcome(&self, repaired: Option<Result<(), String>>) -> Outcome {
        match repaired {
            None => Outcome::Repairable,
            Some(Ok(())) => Outcome::Repaired,
            Some(Err(e)) => Outcome::RepairFailed(e),
        }
    }

    /// Every ready file's object is there with its size (and bytes, with `digests`).
    async fn files(&mut self) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.stored_files(after.as_deref(), PAGE as u32).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some(last.blob_key.to_string());
            let own: Vec<StoredFile> = page.into_iter().filter(|f| f.blob_key.registered_uri().is_none()).collect();
            let at_once = if self.options.digests { DIGESTS_AT_ONCE } else { SIZES_AT_ONCE };
            let blobs = self.blobs;
            let digests = self.options.digests;
            let judged: Vec<(StoredFile, Option<Problem>)> = futures_util::stream::iter(own)
                .map(|file| async move {
                    let problem = judge_file(blobs, &file, digests).await?;
                    Ok::<_, crate::error::Error>((file, problem))
                })
                .buffer_unordered(at_once)
                .try_collect()
                .await?;
            for (file, problem) in judged {
                self.checked.files += 1;
                self.checked.file_bytes += file.size;
                let Some(problem) = problem else { continue };
                // The file may have been deleted since the page was read: only a file still there is judged.
                if self.still_ready(&file.blob_key).await? {
                    self.report(problem, Outcome::LeftForAPerson(RESTORE));
                }
            }
        }
    }

    async fn still_ready(&self, blob_key: &str) -> Result<bool> {
        let Some(BlobKey::File { project, id, .. }) = BlobKey::parse(blob_key) else { return Ok(true) };
        let file = self
            .meta
            .get_file(&ProjectId::from_stored(project.to_owned()), &crate::domain::FileId::from_stored(id.to_owned()))
            .await?;
        Ok(file.is_some_and(|f| f.blob_key == *blob_key && f.state == crate::domain::FileState::Ready))
    }

    /// Every object under `dir` is owned: by a file row, an open transfer (a staging file, its current
    /// tail) or the garbage queue.
    async fn objects(&mut self, dir: &str) -> Result<()> {
        let mut listing = self.blobs.objects().entries(dir).chunks(PAGE);
        while let Some(page) = listing.next().await {
            let page: Vec<ObjectEntry> = page.into_iter().collect::<std::result::Result<_, _>>()?;
            self.checked.objects += page.len() as u64;
            let mut judged = Vec::new();
            for entry in page {
                match BlobKey::parse(&entry.key) {
                    Some(BlobKey::File { .. } | BlobKey::Staging { .. } | BlobKey::Tail { .. }) => {}
                    _ => {
                        self.checked.foreign_objects += 1;
                        continue;
                    }
                }
                if entry.modified > self.cutoff {
                    self.checked.too_recent += 1;
                    continue;
                }
                judged.push(entry);
            }
            for orphan in self.orphans(judged).await? {
                let repaired = if self.options.repair { Some(self.delete_orphan(&orphan).await) } else { None };
                let outcome = self.outcome(repaired);
                self.report(Problem::OrphanObject { key: orphan.key, size: orphan.size }, outcome);
            }
        }
        Ok(())
    }

    /// Of `entries`, those nobody owns.
    async fn orphans(&self, entries: Vec<ObjectEntry>) -> Result<Vec<ObjectEntry>> {
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        let known: HashSet<String> = self.meta.known_objects(&keys).await?.into_iter().collect();
        let staging_of = |key: &str| match BlobKey::parse(key) {
            Some(BlobKey::Staging { .. }) => Some((key.to_owned(), None)),
            Some(BlobKey::Tail { staging, end }) => Some((staging.to_owned(), Some(end))),
            _ => None,
        };
        let staging_keys: Vec<String> = keys.iter().filter_map(|k| staging_of(k).map(|(s, _)| s)).collect();
        let owned = self.meta.owned_staging(&staging_keys).await?;
        let granule = self.blobs.part_granule();
        let tail_end =
            |staged: &crate::meta::StagedBytes| granule.filter(|g| staged.received % g != 0).map(|_| staged.received);
        Ok(entries
            .into_iter()
            .filter(|entry| {
                if known.contains(&entry.key) {
                    return false;
                }
                match staging_of(&entry.key) {
                    // A staging file is its transfer's while it runs; a tail only while it is the current one.
                    Some((staging, end)) => {
                        !owned.iter().any(|o| o.staging.key == staging && (end.is_none() || end == tail_end(o)))
                    }
                    None => true,
                }
            })
            .collect())
    }

    async fn delete_orphan(&self, orphan: &ObjectEntry) -> Result<(), String> {
        // Owned since it was listed (a file registered at this key cannot be: keys are never reused)?
        let again = self.orphans(vec![orphan.clone()]).await.map_err(|e| e.to_string())?;
        if again.is_empty() {
            return Ok(());
        }
        self.blobs.delete_orphan(&orphan.key).await.map_err(|e| e.to_string())
    }

    /// Every open multipart upload is a live staging area's or queued for removal.
    async fn uploads(&mut self) -> Result<()> {
        let Some(mut listing) = self.blobs.open_uploads() else { return Ok(()) };
        self.checked.uploads_listed = true;
        let mut page = Vec::new();
        loop {
            let next = listing.next().await.transpose()?;
            let listed_all = next.is_none();
            if let Some(upload) = next {
                self.checked.open_uploads += 1;
                if upload.initiated > self.cutoff {
                    self.checked.too_recent += 1;
                } else {
                    page.push(upload);
                }
                if page.len() < PAGE {
                    continue;
                }
            }
            let ids: Vec<String> = page.iter().map(|u| u.upload_id.clone()).collect();
            let known: HashSet<String> = self.meta.known_upload_ids(&ids).await?.into_iter().collect();
            for upload in page.drain(..).filter(|u| !known.contains(&u.upload_id)) {
                let repaired = if self.options.repair {
                    Some(self.blobs.abort_upload(&upload).await.map_err(|e| e.to_string()))
                } else {
                    None
                };
                let outcome = self.outcome(repaired);
                self.report(Problem::UnownedUpload { key: upload.key, upload_id: upload.upload_id }, outcome);
            }
            if listed_all {
                return Ok(());
            }
        }
    }

    /// No part records outlive their staging area.
    async fn parts(&mut self) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.leftover_parts(after.as_deref(), PAGE as u32).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some(last.staging_key.clone());
            let repaired = if self.options.repair {
                let keys: Vec<String> = page.iter().map(|p| p.staging_key.clone()).collect();
                Some(self.meta.delete_leftover_parts(&keys).await.map(|_| ()).map_err(|e| e.to_string()))
            } else {
                None
            };
            for leftover in page {
                let outcome = self.outcome(repaired.clone());
                self.report(Problem::LeftoverParts(leftover), outcome);
            }
        }
    }

    /// Every project's counters are the sums of its rows.
    async fn counters(&mut self) -> Result<()> {
        let drifted = self.meta.usage_drift().await?;
        if drifted.is_empty() {
            return Ok(());
        }
        if !self.options.repair {
            for drift in drifted {
                self.report(Problem::CounterDrift(drift), Outcome::Repairable);
            }
            return Ok(());
        }
        // The recount locks the projects and sets every counter from its rows at one moment; what it
        // changed is what it reports (requests since the first look may have moved the counters too).
        match self.meta.recompute_usage().await {
            Ok(repairs) => {
                for repair in repairs {
                    self.report(Problem::CounterDrift(repair), Outcome::Repaired);
                }
            }
            Err(e) => {
                for drift in drifted {
                    self.report(Problem::CounterDrift(drift), Outcome::RepairFailed(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// No lease outlives its holder by more than the grace.
    async fn leases(&mut self) -> Result<()> {
        let stale = self.meta.stale_leases(self.cutoff, LEASES_LISTED).await?;
        if stale.is_empty() {
            return Ok(());
        }
        let repaired = if self.options.repair {
            Some(self.meta.release_stale_leases(self.cutoff).await.map(|_| ()).map_err(|e| e.to_string()))
        } else {
            None
        };
        for lease in stale {
            let outcome = self.outcome(repaired.clone());
            self.report(Problem::StaleLease(lease), outcome);
        }
        Ok(())
    }

    /// The garbage queue moves: nothing older than the grace is still in it.
    async fn garbage(&mut self) -> Result<()> {
        let queued = self.meta.old_garbage(self.cutoff).await?;
        if queued == 0 {
            return Ok(());
        }
        let repaired = if self.options.repair {
            super::garbage::collect_garbage(self.meta, self.blobs).await;
            let left = self.meta.old_garbage(self.cutoff).await?;
            Some(if left == 0 { Ok(()) } else { Err(format!("{left} still queued: the store refuses to delete them")) })
        } else {
            None
        };
        let outcome = self.outcome(repaired);
        self.report(Problem::GarbageBacklog { queued }, outcome);
        Ok(())
    }
}

/// What is wrong with `file`'s object, if anything.
async fn judge_file(blobs: &Blobs, file: &StoredFile, digests: bool) -> Result<Option<Problem>> {
    let key = file.blob_key.to_string();
    match blobs.objects().size(&file.blob_key).await? {
        None => return Ok(Some(Problem::MissingObject { key, size: file.size })),
        Some(stored) if stored != file.size => {
            return Ok(Some(Problem::WrongSize { key, recorded: file.size, stored }));
        }
        Some(_) => {}
    }
    if !digests {
        return Ok(None);
    }
    let read = async {
        let mut hasher = ResumableSha256::new();
        let mut bytes = blobs.objects().read(&file.blob_key, 0..file.size).await?;
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk?);
        }
        Ok::<_, crate::error::Error>(hasher.digest())
    };
    match read.await {
        Ok(digest) => Ok((digest != file.sha256).then_some(Problem::WrongDigest { key })),
        // Gone while it was read (deleted with its file, most likely: the caller checks the row).
        Err(e) => match blobs.objects().size(&file.blob_key).await? {
            None => Ok(Some(Problem::MissingObject { key, size: file.size })),
            Some(_) => Err(e),
        },
    }
}
