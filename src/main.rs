//! The `custos` binary: argument parsing and exit codes only.

use clap::Parser;

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
