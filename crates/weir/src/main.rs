//! The `weir` command: `run` serves a configuration, `validate` checks one.

mod cli;
mod logging;
mod run;
mod triggers;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Validate(args) => run::validate(&args),
    }
}
