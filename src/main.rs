//! The one binary: server, operator commands and client (`filegate::cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    filegate::cli::main().await
}
