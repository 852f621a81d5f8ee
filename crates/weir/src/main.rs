//! The `weir` command: `run` serves a configuration, `validate` checks one.

mod alloc;
mod cli;
mod logging;
mod run;
mod triggers;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Mimalloc = alloc::Mimalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // One crypto provider for every TLS configuration in the process, chosen before any is built.
    weir_proxy::tls::crypto_provider();
    match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Validate(args) => run::validate(&args),
    }
}
