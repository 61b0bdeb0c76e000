//! The `pgshadow` binary: see [`pgshadow::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    pgshadow::cli::main(pgshadow::cli::Cli::parse())
}
