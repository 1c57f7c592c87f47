//! `filegate fsck`: the consistency check of a deployment's database and blob store
//! (`services::fsck`), printed as it goes: one line per finding for people, or one JSON document written
//! finding by finding (a million findings never sit in memory either way).

use std::time::Duration;

use serde_json::{Value, json};

use super::output::emit;
use super::remote::{CliError, CliResult, Exit};
use crate::config::{Storage, StorageArgs};
use crate::services::fsck::{Checked, Finding, Options, Outcome, Problem};

#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Fix what is safe to fix (objects and uploads nobody owns, leftover part records, counters, stale
    /// leases, the garbage queue); without it nothing is changed.
    #[arg(long)]
    repair: bool,
    /// Also read every file's bytes and compare their SHA-256 with the recorded one (reads the whole store).
    #[arg(long)]
    digests: bool,
    /// How old an object, upload or lease must be before it is judged left behind: anything younger may
    /// belong to a request in flight.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    grace_seconds: u64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    storage: StorageArgs,
}

/// Counts of what a run found, by what became of it.
#[derive(Default)]
struct Tally {
    problems: u64,
    repaired: u64,
    /// Still wrong after the run: for a person, failed repairs, or repairable without `--repair`.
    left: u64,
}

pub async fn run(args: FsckArgs) -> CliResult<Exit> {
    let storage = Storage::from_args_alone(&args.storage).map_err(|problems| CliError::usage(problems.to_string()))?;
    let failed = |e: anyhow::Error| CliError::failure(format!("{e:#}"));
    let meta = crate::app::open_meta(&storage, false).await.map_err(failed)?;
    let blobs = crate::app::open_blobs(&storage.blobs, storage.part_budget()).await.map_err(failed)?;
    let options =
        Options { repair: args.repair, digests: args.digests, grace: Duration::from_secs(args.grace_seconds) };
    if args.json {
        emit("{\"findings\": [");
    } else {
        emit(&format!("checking {} against {}\n", blobs.describe(), meta.describe()));
    }
    let mut tally = Tally::default();
    let mut on_finding = |finding: Finding| {
        tally.problems += 1;
        match finding.outcome {
            Outcome::Repaired => tally.repaired += 1,
            _ => tally.left += 1,
        }
        if args.json {
            let separator = if tally.problems == 1 { "\n  " } else { ",\n  " };
            emit(&format!("{separator}{}", finding_json(&finding)));
        } else {
            emit(&format!("{}\n", finding_line(&finding)));
        }
    };
    let checked = crate::services::fsck::run(meta.as_ref(), &blobs, options, &mut on_finding).await;
    meta.close().await;
    let checked = checked.map_err(|e| CliError::failure(format!("fsck stopped: {e}")))?;
    if args.json {
        let summary = json!({
            "checked": checked_json(&checked),
            "problems": tally.problems,
            "repaired": tally.repaired,
            "left": tally.left,
        });
        let summary = serde_json::to_string(&summary).expect("JSON values serialize");
        // The summary's fields join the document's top level.
        emit(&format!("\n], {}\n", &summary[1..]));
    } else {
        emit(&summary_lines(&checked, &tally, args.repair));
    }
    Ok(if tally.left == 0 { Exit::Success } else { Exit::Failed })
}

fn finding_line(finding: &Finding) -> String {
    let what = match &finding.problem {
        Problem::MissingObject { key, size } => {
            format!("missing object  {key}: a ready file of {size} bytes has no object")
        }
        Problem::WrongSize { key, recorded, stored } => {
            format!("wrong size      {key}: {stored} bytes stored, {recorded} recorded")
        }
        Problem::WrongDigest { key } => format!("wrong digest    {key}: the bytes no longer have the recorded SHA-256"),
        Problem::OrphanObject { key, size } => format!("orphan object   {key}: {size} bytes nothing refers to"),
        Problem::UnownedUpload { key, upload_id } => {
            format!("unowned upload  {key}: multipart upload {upload_id} that no transfer records")
        }
        Problem::LeftoverParts(left) => {
            format!("leftover parts  {}: {} part record(s) of a transfer that ended", left.staging_key, left.parts)
        }
        Problem::CounterDrift(drift) => format!(
            "counter drift   project {}: {} bytes / {} files / {} uploads / {} imports counted, the rows say {} / {} / {} / {}",
            drift.project,
            drift.before.used_bytes,
            drift.before.files,
            drift.before.open_uploads,
            drift.before.active_imports,
            drift.after.used_bytes,
            drift.after.files,
            drift.after.open_uploads,
            drift.after.active_imports
        ),
        Problem::StaleLease(lease) => format!(
            "stale lease     {} of {}/{}: held by {} until {}",
            lease.kind.as_str(),
            lease.project,
            lease.file_id,
            lease.owner,
            lease.until.to_rfc3339()
        ),
        Problem::GarbageBacklog { queued } => {
            format!("garbage backlog {queued} queued deletion(s) older than the grace")
        }
    };
    let outcome = match &finding.outcome {
        Outcome::Repaired => "repaired".to_owned(),
        Outcome::Repairable => "--repair fixes it".to_owned(),
        Outcome::RepairFailed(why) => format!("repair failed: {why}"),
        Outcome::LeftForAPerson(what) => format!("for a person: {what}"),
    };
    format!("{what}  [{outcome}]")
}

fn finding_json(finding: &Finding) -> String {
    let mut value = match &finding.problem {
        Problem::MissingObject { key, size } => json!({"key": key, "bytes": size}),
        Problem::WrongSize { key, recorded, stored } => {
            json!({"key": key, "recorded_bytes": recorded, "stored_bytes": stored})
        }
        Problem::WrongDigest { key } | Problem::OrphanObject { key, .. } => json!({"key": key}),
        Problem::UnownedUpload { key, upload_id } => json!({"key": key, "upload_id": upload_id}),
        Problem::LeftoverParts(left) => json!({"key": left.staging_key, "parts": left.parts}),
        Problem::CounterDrift(drift) => json!({
            "project": drift.project.as_str(),
            "counted": usage_json(&drift.before),
            "rows": usage_json(&drift.after),
        }),
        Problem::StaleLease(lease) => json!({
            "lease": lease.kind.as_str(),
            "project": lease.project,
            "file": lease.file_id,
            "owner": lease.owner,
            "until": lease.until.to_rfc3339(),
        }),
        Problem::GarbageBacklog { queued } => json!({"queued": queued}),
    };
    if let Problem::OrphanObject { size, .. } = &finding.problem {
        value["bytes"] = json!(size);
    }
    value["problem"] = json!(finding.problem.kind());
    let (outcome, detail) = match &finding.outcome {
        Outcome::Repaired => ("repaired", None),
        Outcome::Repairable => ("repairable", None),
        Outcome::RepairFailed(why) => ("repair_failed", Some(why.clone())),
        Outcome::LeftForAPerson(what) => ("for_a_person", Some((*what).to_owned())),
    };
    value["outcome"] = json!(outcome);
    if let Some(detail) = detail {
        value["detail"] = json!(detail);
    }
    serde_json::to_string(&value).expect("JSON values serialize")
}

fn usage_json(usage: &crate::meta::ProjectUsage) -> Value {
    json!({
        "bytes": usage.used_bytes,
        "files": usage.files,
        "open_uploads": usage.open_uploads,
        "running_imports": usage.active_imports,
    })
}

fn checked_json(checked: &Checked) -> Value {
    json!({
        "files": checked.files,
        "file_bytes": checked.file_bytes,
        "objects": checked.objects,
        "open_uploads": checked.uploads_listed.then_some(checked.open_uploads),
        "foreign_objects": checked.foreign_objects,
        "too_recent": checked.too_recent,
    })
}

fn summary_lines(checked: &Checked, tally: &Tally, repair: bool) -> String {
    let uploads = if checked.uploads_listed {
        format!("{} open multipart upload(s)", checked.open_uploads)
    } else {
        "no multipart uploads (the store cannot list them)".to_owned()
    };
    let mut out = format!(
        "checked {} file(s) ({} bytes), {} object(s), {uploads}; {} younger than the grace not judged; {} not filegate's, left alone\n",
        checked.files, checked.file_bytes, checked.objects, checked.too_recent, checked.foreign_objects
    );
    out += &match (tally.problems, repair) {
        (0, _) => "no problems\n".to_owned(),
        (n, true) => format!("{n} problem(s): {} repaired, {} left\n", tally.repaired, tally.left),
        (n, false) => format!("{n} problem(s); nothing was changed (--repair fixes what is safe to fix)\n"),
    };
    out
}
