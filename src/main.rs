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
            let meta = filegate::app::open_meta(&config).await?;
            let key = filegate::services::auth::create_key(meta.as_ref(), &project, &label).await?;
            println!("{}", key.expose());
            Ok(())
        }
    }
}
