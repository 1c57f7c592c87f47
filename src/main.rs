use clap::{Parser, Subcommand};

use filegate::config::{Config, ServeArgs};
use filegate::domain::ProjectId;

/// filegate: a self-hosted, Gemini-compatible Files API server with URL import.
#[derive(Parser)]
#[command(name = "filegate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create an API key for a project (printed once; the database keeps its hash).
    CreateKey {
        /// The project the key belongs to (created if new).
        #[arg(long, default_value = "default")]
        project: String,
        /// A note stored with the key.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Apply the database's pending migrations, then exit (`serve` does it too, at start; PostgreSQL takes
    /// a lock, so several nodes starting at once migrate once).
    Migrate {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Copy every finished file from the configured blob store (FILEGATE_BLOB_STORE) to another one, each
    /// copy checked against its recorded SHA-256. Resumable: files already copied are skipped. Switch
    /// FILEGATE_BLOB_STORE to the destination once a run reports nothing left to copy.
    MigrateStore {
        /// The destination: file:///PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Show every project's files, bytes, open uploads and running imports.
    Usage {
        /// Recompute the counters from the rows first, and print the projects whose counters had drifted.
        #[arg(long)]
        recompute: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::from_args(args)?;
            filegate::telemetry::init_tracing(config.log_format);
            filegate::app::serve(config).await
        }
        Command::CreateKey { project, label, serve } => {
            let config = Config::from_args(serve)?;
            let project = ProjectId::parse(&project)?;
            let meta = filegate::app::open_meta(&config, true).await?;
            let key = filegate::services::auth::create_key(meta.as_ref(), &project, &label).await?;
            println!("{}", key.expose());
            Ok(())
        }
        Command::Migrate { serve } => {
            let config = Config::from_args(serve)?;
            let meta = filegate::app::open_meta(&config, true).await?;
            println!("{}: migrations applied", meta.describe());
            meta.close().await;
            Ok(())
        }
        Command::MigrateStore { to, serve } => {
            let config = Config::from_args(serve)?;
            let mut destination = config.clone();
            destination.blobs = filegate::config::parse_blob_url(&to)?;
            let meta = filegate::app::open_meta(&config, true).await?;
            let (from, to) =
                (filegate::app::open_blobs(&config).await?, filegate::app::open_blobs(&destination).await?);
            println!("copying from {} to {}", from.describe(), to.describe());
            let total = meta.usage().await?.iter().map(|p| p.usage.used_bytes).sum::<u64>();
            let bar = progress_bar(total);
            let report =
                filegate::services::migrate::migrate(meta.as_ref(), from, to, &|_, bytes| bar.inc(bytes)).await;
            bar.finish_and_clear();
            let report = report?;
            println!(
                "copied {} file(s), {} bytes; {} already there; {} registered from their own buckets (left \
                 there); {} still arriving (run again once they are done)",
                report.copied, report.copied_bytes, report.skipped, report.registered, report.unfinished
            );
            for corrupt in &report.corrupt {
                eprintln!("not copied: {corrupt}");
            }
            meta.close().await;
            if report.corrupt.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} file(s) failed verification", report.corrupt.len())
            }
        }
        Command::Usage { recompute, serve } => {
            let config = Config::from_args(serve)?;
            let meta = filegate::app::open_meta(&config, true).await?;
            if recompute {
                let repairs = meta.recompute_usage().await?;
                for repair in &repairs {
                    println!("repaired {}: {:?} -> {:?}", repair.project, repair.before, repair.after);
                }
                println!("{} project(s) had drifted counters", repairs.len());
            }
            println!(
                "{:<24} {:>10} {:>16} {:>16} {:>12} {:>8}",
                "PROJECT", "FILES", "BYTES", "QUOTA", "OPEN UPLOADS", "IMPORTS"
            );
            for report in meta.usage().await? {
                let usage = report.usage;
                let quota = usage.quota_bytes.unwrap_or(config.limits.project_quota_bytes);
                println!(
                    "{:<24} {:>10} {:>16} {:>16} {:>12} {:>8}",
                    report.project.as_str(),
                    usage.files,
                    usage.used_bytes,
                    quota,
                    usage.open_uploads,
                    usage.active_imports
                );
            }
            meta.close().await;
            Ok(())
        }
    }
}

/// A byte progress bar on a terminal; hidden in pipes and logs.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("a valid template"),
    );
    bar
}
