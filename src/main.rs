//! The one binary: server, operator commands and client (`filegate::cli`).

/// mimalloc keeps freed memory for reuse: the 1 MiB buffers of every chunk do not go back to the kernel
/// and fault in again, zeroed, for the next one (138 000 page faults per GiB uploaded with glibc's malloc;
/// docs/benchmarks.md, *The CPU path*).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    filegate::cli::main().await
}
