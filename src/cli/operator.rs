//! Operator commands: they open the metadata database (and blob store) named by the same `FILEGATE_*`
//! settings as `serve`, on the machine where filegate runs. Changes are seen by every node at once: each
//! request checks its key against the database.

use serde_json::json;

use super::output::{emit, print_json, table};
use super::remote::{CliError, CliResult, Exit};
use crate::config::{Storage, StorageArgs};
use crate::domain::{ProjectId, Timestamp};
use crate::meta::{ApiKeyInfo, MetaStore};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a project (created if new). The key is printed once; the database keeps its hash.
    Create {
        #[arg(long, default_value = "default")]
        project: String,
        /// A note stored with the key (who or what uses it).
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List keys: id, project, label, created, last used (to the minute), revoked. Never the key itself.
    /// Keys given in FILEGATE_API_KEYS live in the configuration and are not listed.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revoke a key by the id `keys list` shows; refused from the next request on, on every node.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

async fn open(args: StorageArgs) -> CliResult<(Storage, std::sync::Arc<dyn MetaStore>)> {
    let storage = Storage::from_args_alone(&args).map_err(|problems| CliError::usage(problems.to_string()))?;
    let meta = crate::app::open_meta(&storage, true).await.map_err(|e| CliError::failure(format!("{e:#}")))?;
    Ok((storage, meta))
}

fn project(name: &str) -> CliResult<ProjectId> {
    ProjectId::parse(name).map_err(|e| CliError::usage(e.to_string()))
}

fn meta_failed(err: impl std::fmt::Display) -> CliError {
    CliError::failure(format!("the metadata database: {err}"))
}

pub async fn keys(command: KeysCommand) -> CliResult<Exit> {
    match command {
        KeysCommand::Create { project: name, label, json, storage } => {
            let project = project(&name)?;
            let (_, meta) = open(storage).await?;
            let key = crate::services::auth::create_key(meta.as_ref(), &project, &label).await.map_err(meta_failed)?;
            let id = crate::meta::key_id(&key.hash());
            meta.close().await;
            if json {
                print_json(&json!({"id": id, "project": project.as_str(), "label": label, "key": key.expose()}));
            } else {
                out!("{}", key.expose());
                eprintln!(
                    "key {id} for project {} (shown once; `filegate keys revoke {id}` ends it)",
                    project.as_str()
                );
            }
        }
        KeysCommand::List { project: name, json, storage } => {
            let project = name.as_deref().map(project).transpose()?;
            let (_, meta) = open(storage).await?;
            let keys = meta.list_api_keys(project.as_ref()).await.map_err(meta_failed)?;
            meta.close().await;
            if json {
                print_json(&json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}));
            } else {
                let when = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), Timestamp::to_rfc3339);
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        let label = if k.label.is_empty() { "-".to_owned() } else { k.label.clone() };
                        vec![
                            k.id.clone(),
                            k.project.as_str().to_owned(),
                            label,
                            k.created_at.to_rfc3339(),
                            when(k.last_used_at),
                            when(k.revoked_at),
                        ]
                    })
                    .collect();
                emit(&table(&["ID", "PROJECT", "LABEL", "CREATED", "LAST USED", "REVOKED"], &rows));
            }
        }
        KeysCommand::Revoke { id, json, storage } => {
            let (_, meta) = open(storage).await?;
            let revoked = meta.revoke_api_key(id.trim(), Timestamp::now()).await.map_err(meta_failed)?;
            meta.close().await;
            let Some(key) = revoked else {
                return Err(CliError::new(Exit::NotFound, format!("no key has the id {id:?}"))
                    .with_hint("`filegate keys list` shows the ids (16 hex digits)"));
            };
            if json {
                print_json(&key_json(&key));
            } else {
                out!("revoked {} (project {})", key.id, key.project.as_str());
            }
        }
    }
    Ok(Exit::Success)
}

fn key_json(key: &ApiKeyInfo) -> serde_json::Value {
    json!({
        "id": key.id,
        "project": key.project.as_str(),
        "label": key.label,
        "created_at": key.created_at.to_rfc3339(),
        "last_used_at": key.last_used_at.map(Timestamp::to_rfc3339),
        "revoked_at": key.revoked_at.map(Timestamp::to_rfc3339),
    })
}

/// Every project's (or one project's) files, bytes, quota, open uploads and running imports.
pub async fn usage(
    project_name: Option<String>,
    recompute: bool,
    json: bool,
    default_quota: u64,
    storage: StorageArgs,
) -> CliResult<Exit> {
    let only = project_name.as_deref().map(project).transpose()?;
    let (_, meta) = open(storage).await?;
    if recompute {
        let repairs = meta.recompute_usage().await.map_err(meta_failed)?;
        for repair in &repairs {
            eprintln!("repaired {}: {:?} -> {:?}", repair.project, repair.before, repair.after);
        }
        eprintln!("{} project(s) had drifted counters", repairs.len());
    }
    let reports = meta.usage().await.map_err(meta_failed)?;
    meta.close().await;
    let reports: Vec<_> = reports.into_iter().filter(|r| only.as_ref().is_none_or(|p| *p == r.project)).collect();
    if let Some(project) = &only
        && reports.is_empty()
    {
        return Err(CliError::new(Exit::NotFound, format!("no project is named {:?}", project.as_str())));
    }
    let quota = |r: &crate::meta::ProjectReport| r.usage.quota_bytes.unwrap_or(default_quota);
    if json {
        let projects: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "project": r.project.as_str(),
                    "files": r.usage.files,
                    "bytes": r.usage.used_bytes,
                    "quota_bytes": quota(r),
                    "open_uploads": r.usage.open_uploads,
                    "running_imports": r.usage.active_imports,
                })
            })
            .collect();
        print_json(&json!({"projects": projects}));
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                let u = &r.usage;
                [
                    r.project.as_str().to_owned(),
                    u.files.to_string(),
                    u.used_bytes.to_string(),
                    quota(r).to_string(),
                    u.open_uploads.to_string(),
                    u.active_imports.to_string(),
                ]
                .to_vec()
            })
            .collect();
        emit(&table(&["PROJECT", "FILES", "BYTES", "QUOTA", "OPEN UPLOADS", "IMPORTS"], &rows));
    }
    Ok(Exit::Success)
}

/// `filegate migrate-store`: see its help in `cli/mod.rs`.
pub async fn migrate_store(to: String, storage: StorageArgs) -> CliResult<Exit> {
    let (storage, meta) = open(storage).await?;
    let destination = crate::config::parse_blob_url(&to).map_err(CliError::usage)?;
    let failed = |e: anyhow::Error| CliError::failure(format!("{e:#}"));
    let budget = storage.part_budget();
    let from = crate::app::open_blobs(&storage.blobs, budget.clone()).await.map_err(failed)?;
    let to = crate::app::open_blobs(&destination, budget).await.map_err(failed)?;
    out!("copying from {} to {}", from.describe(), to.describe());
    let total = meta.usage().await.map_err(meta_failed)?.iter().map(|p| p.usage.used_bytes).sum::<u64>();
    let progress = super::output::Progress::new(false);
    let bar = progress.bytes("copying", total);
    let report = crate::services::migrate::migrate(meta.as_ref(), from, to, &|_, bytes| bar.inc(bytes)).await;
    bar.finish_and_clear();
    meta.close().await;
    let report = report.map_err(|e| CliError::failure(e.to_string()))?;
    out!(
        "copied {} file(s), {} bytes; {} already there; {} registered from their own buckets (left there); {} \
         still arriving (run again once they are done)",
        report.copied,
        report.copied_bytes,
        report.skipped,
        report.registered,
        report.unfinished
    );
    for corrupt in &report.corrupt {
        eprintln!("not copied: {corrupt}");
    }
    if report.corrupt.is_empty() {
        Ok(Exit::Success)
    } else {
        Err(CliError::new(Exit::Failed, format!("{} file(s) failed verification", report.corrupt.len())))
    }
}

/// `filegate migrate`: the database's pending migrations, then exit.
pub async fn migrate(storage: StorageArgs) -> CliResult<Exit> {
    let (_, meta) = open(storage).await?;
    out!("{}: migrations applied", meta.describe());
    meta.close().await;
    Ok(Exit::Success)
}
