//! The `custos` binary: argument parsing and exit codes only.

use clap::Parser;

/// mimalloc instead of glibc's allocator: the worker allocates on the
/// consumer thread and frees on librdkafka's and the producer's threads,
/// which glibc's arenas handle slowly (about a fifth of the worker's CPU
/// in malloc and free on the end-to-end bench; docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = custos::cli::Cli::parse();
    if let Err(e) = custos::cli::run(cli) {
        if e.located {
            eprintln!("{e}");
        } else {
            eprintln!("custos: {e}");
        }
        std::process::exit(e.code);
    }
}
