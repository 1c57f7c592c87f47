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
