//! The one binary: server, operator commands and client (`filegate::cli`).
//!
//! glibc's allocator, on purpose: mimalloc was measured (docs/benchmarks.md, *Reading the numbers*) — it
//! saves the page faults of reallocated 1 MiB buffers but held 121 MiB under 8 concurrent uploads against
//! glibc's 66 MiB, above the 100 MiB budget, for a gain within the noise of a 2-core machine.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    filegate::cli::main().await
}
