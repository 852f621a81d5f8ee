//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weir, a resilient API gateway.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a configuration until SIGTERM or SIGINT, then drain and exit.
    Run(RunArgs),
    /// Check a configuration file and report every problem; exits 1 when there is one.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (.yaml, .yml or .toml).
    #[arg(short, long, env = "WEIR_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The configuration file (.yaml, .yml or .toml).
    pub config: PathBuf,
}
