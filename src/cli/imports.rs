//! `filegate import`: URL import tasks, created at once and, with `--wait`, followed by long-polls (the
//! server answers as soon as a task finishes, or after 30 s with its progress) until each is final.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Progress, print_json};
use super::remote::{CliError, CliResult, Exit, Remote, RemoteArgs};

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
    pub expires_in: Option<u64>,
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
        let mut body = json!({"source_url": url, "model": args.model});
        if let Some(seconds) = args.expires_in {
            body["expires_in"] = json!(seconds);
        }
        let task = remote
            .json(
                remote
                    .request(Method::POST, "/v1/files")
                    .header("Content-Type", "application/json")
                    .body(body.to_string()),
            )
            .await?;
        if !args.remote.json && !args.wait {
            println!("{}  {}  {}", task["id"].as_str().unwrap_or("?"), task["status"].as_str().unwrap_or("?"), url);
        }
        tasks.push(task);
    }
    if args.wait {
        let progress = Progress::new(args.remote.json);
        let followed: Vec<CliResult<Value>> =
            futures_util::stream::iter(tasks).map(|task| follow(&remote, &progress, task)).buffered(8).collect().await;
        tasks = followed.into_iter().collect::<CliResult<_>>()?;
    }
    let failed: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "failed").collect();
    if args.remote.json {
        print_json(&json!({"imports": tasks}));
    } else if args.wait {
        for task in &tasks {
            let id = task["id"].as_str().unwrap_or("?");
            let url = task["source_url"].as_str().unwrap_or("");
            if task["status"] == "failed" {
                let error = &task["error"];
                eprintln!(
                    "{id}  failed  {url}\nerror: {}: {}",
                    error["code"].as_str().unwrap_or("?"),
                    error["message"].as_str().unwrap_or("")
                );
            } else {
                let name = task["gemini_file"]["name"].as_str().unwrap_or("");
                println!("{id}  {}  {name}  {url}", task["status"].as_str().unwrap_or("?"));
            }
        }
    }
    Ok(if failed.is_empty() { Exit::Success } else { Exit::Failed })
}

/// Long-polls one task until it is final, its bar following `progress`.
async fn follow(remote: &Remote, progress: &Progress, mut task: Value) -> CliResult<Value> {
    let id = task["id"].as_str().ok_or_else(|| CliError::failure("the server's task has no id"))?.to_owned();
    let bar = progress.bytes(&id, 0);
    let mut errors = 0;
    while !matches!(task["status"].as_str(), Some("ready" | "failed")) {
        let request = remote.request(Method::GET, &format!("/v1/files/{id}")).query(&[("wait", WAIT_SECONDS)]);
        match remote.json(request).await {
            Ok(next) => {
                errors = 0;
                task = next;
            }
            // A server restarting under a long import: keep following for a while.
            Err(err) if err.exit == Exit::Failure && errors < 5 => {
                errors += 1;
                progress.println(&format!("{id}: {} (retrying)", err.message));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(err) => return Err(err),
        }
        let received = task["progress"]["received_bytes"].as_u64().unwrap_or(0);
        if let Some(total) = task["progress"]["total_bytes"].as_u64() {
            bar.set_length(total);
        }
        bar.set_position(received);
    }
    bar.finish_and_clear();
    Ok(task)
}
