//! The `filegate` command line: the server, its operator commands, and a client for people.
//!
//! - `serve`, `migrate`, `migrate-store`, `fsck`, `keys`, `usage` open the database and storage themselves
//!   ([`operator`]), on the machine where filegate runs.
//! - `upload`, `import`, `ls`, `info`, `download`, `rm` speak HTTP to a server ([`remote`]): filegate, or
//!   Google's Files API, which has the same protocol.
//!
//! Every command prints for people by default and one JSON document with `--json`; progress bars appear on
//! a terminal only. Exit codes are [`remote::Exit`], listed in docs/cli.md.

#[macro_use]
mod output;
mod digest;
mod files;
mod fsck;
mod imports;
mod operator;
mod private_files;
mod remote;
mod upload;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::config::{Config, Problems, ServeArgs, StorageArgs};
pub use remote::Exit;

/// What `filegate --version` says: the version, the commit it was built from, and what it can store in.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FILEGATE_GIT_COMMIT"),
    ")\nmetadata: SQLite, PostgreSQL\nblobs: local disk, S3, Google Cloud Storage, Azure Blob\nmodel upstreams: Vertex AI, the Gemini API"
);

/// filegate: a self-hosted, Gemini-compatible Files API server with URL import, and its command line.
#[derive(Parser)]
#[command(name = "filegate", version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Made once per process: its size does not matter, and unboxed arguments read better.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Upload files (resumable, in chunks; run the same command again to resume after an interruption).
    Upload(upload::UploadArgs),
    /// Import files from public URLs (the server fetches them); --wait follows them to the end.
    Import(imports::ImportArgs),
    /// List the key's files.
    Ls(files::LsArgs),
    /// Show one file, or one import (`qfile-…`) with its progress and error.
    Info(files::InfoArgs),
    /// Download a file, its SHA-256 checked; an interrupted download continues where it stopped.
    Download(files::DownloadArgs),
    /// Delete files or imports.
    Rm(files::RmArgs),
    /// Create, list and revoke API keys (operators; opens the database).
    #[command(subcommand)]
    Keys(operator::KeysCommand),
    /// Show every project's files, bytes, quota, open uploads and running imports (operators).
    Usage {
        /// One project only.
        #[arg(long)]
        project: Option<String>,
        /// Recompute the counters from the rows first, and print the projects whose counters had drifted.
        #[arg(long)]
        recompute: bool,
        #[arg(long)]
        json: bool,
        /// The quota shown for projects without their own (as `serve`'s).
        #[arg(long, env = "FILEGATE_PROJECT_QUOTA_BYTES", default_value_t = 20 * 1024 * 1024 * 1024)]
        project_quota_bytes: u64,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Check every setting of `serve` (flags and FILEGATE_* variables) and print every problem at once;
    /// exit status 2 when there is any.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `filegate completions bash > /etc/bash_completion.d/filegate`.
    Completions { shell: clap_complete::Shell },
    /// Same as `keys create` (the command's first name, kept for scripts).
    #[command(hide = true)]
    CreateKey {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Check that the database and the blob store agree (missing and orphaned objects, open uploads nobody
    /// owns, drifted counters, stale leases) and print each problem; exit status 6 while any is left.
    /// Read-only unless --repair; safe against a running deployment.
    Fsck(fsck::FsckArgs),
    /// Apply the database's pending migrations, then exit (`serve` does it too, at start; PostgreSQL takes
    /// a lock, so several nodes starting at once migrate once).
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Copy every finished file from the configured blob store (FILEGATE_BLOB_STORE) to another one, each
    /// copy checked against its recorded SHA-256. Resumable: files already copied are skipped. Switch
    /// FILEGATE_BLOB_STORE to the destination once a run reports nothing left to copy.
    MigrateStore {
        /// The destination: file:///PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the settings `serve` would start with, without starting.
    Check(ServeArgs),
}

/// Parses the command line, runs the command, prints its error if any; the process's exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => return serve(args).await,
        Command::Upload(args) => upload::run(args).await,
        Command::Import(args) => imports::run(args).await,
        Command::Ls(args) => files::ls(args).await,
        Command::Info(args) => files::info(args).await,
        Command::Download(args) => files::download(args).await,
        Command::Rm(args) => files::rm(args).await,
        Command::Keys(command) => operator::keys(command).await,
        Command::Usage { project, recompute, json, project_quota_bytes, storage } => {
            operator::usage(project, recompute, json, project_quota_bytes, storage).await
        }
        Command::Config(ConfigCommand::Check(args)) => Ok(config_check(args)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "filegate", &mut script);
            output::emit(&String::from_utf8_lossy(&script));
            Ok(Exit::Success)
        }
        Command::CreateKey { project, label, storage } => {
            operator::keys(operator::KeysCommand::Create { project, label, json: false, storage }).await
        }
        Command::Fsck(args) => fsck::run(args).await,
        Command::Migrate { storage } => operator::migrate(storage).await,
        Command::MigrateStore { to, storage } => operator::migrate_store(to, storage).await,
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit as u8)
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let traces = match config.traces.as_ref().map(crate::telemetry::traces::provider).transpose() {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("Error: setting up the OTLP trace exporter: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::init_tracing(config.log_format, traces.as_ref());
    let served = crate::app::serve(config).await;
    if let Some(traces) = traces {
        // Sends the spans still batched.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:?}");
            ExitCode::FAILURE
        }
    }
}

fn print_problems(problems: &Problems) {
    eprintln!("The settings have {} problem(s):", problems.len());
    for problem in problems.iter() {
        eprintln!("  - {problem}");
    }
}

/// `filegate config check`: every problem at once, exit status 2 when there is any.
fn config_check(args: ServeArgs) -> Exit {
    // The clients are built from the providers' variables too (nothing is sent): they are settings as well.
    let checked = Config::from_args(args).and_then(|config| crate::app::check_clients(&config).map(|()| config));
    match checked {
        Ok(config) => {
            out!("The settings are valid.");
            out!(
                "  database: {}",
                match &config.storage.database {
                    crate::config::Database::Sqlite(path) => format!("SQLite at {}", path.display()),
                    crate::config::Database::Postgres(_) => "PostgreSQL (FILEGATE_DATABASE_URL)".into(),
                }
            );
            out!(
                "  blobs:    {}",
                match &config.storage.blobs {
                    crate::config::BlobStore::Local(path) => format!("the local disk at {}", path.display()),
                    crate::config::BlobStore::Bucket(url) => url.to_string(),
                }
            );
            out!(
                "  listen:   {} (public URL {})",
                config.listen,
                config.public_url.as_deref().unwrap_or("from the address")
            );
            out!(
                "  upstream: {}",
                match &config.model.upstream {
                    crate::config::Upstream::Off => "off",
                    crate::config::Upstream::Vertex { .. } => "Vertex AI",
                    crate::config::Upstream::Gemini { .. } => "the Gemini API",
                }
            );
            Exit::Success
        }
        Err(problems) => {
            print_problems(&problems);
            Exit::Usage
        }
    }
}
