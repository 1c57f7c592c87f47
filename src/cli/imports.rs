//! `filegate import`: URL import tasks, created at once and, with `--wait`, followed by long-polls (the
//! server answers as soon as a task finishes, or after 30 s with its progress) until each is final.
//! Requests and replies are the server's own wire types (`crate::wire::import`), so the two cannot drift.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::json;

use super::output::{Progress, print_json};
use super::remote::{CliResult, Exit, JsonBody as _, Remote, RemoteArgs};
use crate::wire::import::{CreateImportRequest, ImportFile};

/// How long one long-poll may wait at the server (its maximum is 60 s).
const WAIT_SECONDS: &str = "30";

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Public http(s) URLs to fetch into storage.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// The model the file is meant for (the server may restrict the names).
    #[arg(long, env = "FILEGATE_MODEL", default_value = "gemini-2.5-flash")]
    pub model: String,
    /// Seconds the file is kept (default: the server's, 48 hours).
    #[arg(long)]
    pub expires_in: Option<i64>,
    /// Follow each task until it is ready or failed, with a progress bar; exit non-zero if one failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub async fn run(args: ImportArgs) -> CliResult<Exit> {
    let remote = Remote::new(&args.remote)?;
    let mut tasks = Vec::new();
    for url in &args.urls {
        let body = CreateImportRequest {
            source_url: Some(url.clone()),
            model: Some(args.model.clone()),
            expires_in: args.expires_in,
            ..CreateImportRequest::default()
        };
        let request = remote.request(Method::POST, "/v1/files").json_body(&body);
        let task: ImportFile = remote.typed(request).await?;
        if !args.remote.json && !args.wait {
            out!("{}  {}  {}", task.id, task.status, url);
        }
        tasks.push(task);
    }
    if args.wait {
        let progress = Progress::new(args.remote.json);
        let followed: Vec<CliResult<ImportFile>> =
            futures_util::stream::iter(tasks).map(|task| follow(&remote, &progress, task)).buffered(8).collect().await;
        tasks = followed.into_iter().collect::<CliResult<_>>()?;
    }
    let any_failed = tasks.iter().any(|t| t.status == "failed");
    if args.remote.json {
        print_json(&json!({"imports": tasks}));
    } else if args.wait {
        for task in &tasks {
            match &task.error {
                Some(error) if task.status == "failed" => {
                    eprintln!("{}  failed  {}\nerror: {}: {}", task.id, task.source_url, error.code, error.message);
                }
                _ => out!("{}  {}  {}  {}", task.id, task.status, task.gemini_file.name, task.source_url),
            }
        }
    }
    Ok(if any_failed { Exit::Failed } else { Exit::Success })
}

/// Long-polls one task until it is final, its bar following `progress`.
async fn follow(remote: &Remote, progress: &Progress, mut task: ImportFile) -> CliResult<ImportFile> {
    let bar = progress.bytes(&task.id, 0);
    let mut errors = 0;
    while !matches!(task.status.as_str(), "ready" | "failed") {
        let request = remote.request(Method::GET, &format!("/v1/files/{}", task.id)).query(&[("wait", WAIT_SECONDS)]);
        match remote.typed(request).await {
            Ok(next) => {
                errors = 0;
                task = next;
            }
            // A server restarting under a long import: keep following for a while.
            Err(err) if err.exit == Exit::Failure && errors < 5 => {
                errors += 1;
                progress.println(&format!("{}: {} (retrying)", task.id, err.message));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(err) => return Err(err),
        }
        if let Some(total) = task.progress.total_bytes {
            bar.set_length(total);
        }
        bar.set_position(task.progress.received_bytes);
    }
    bar.finish_and_clear();
    Ok(task)
}
