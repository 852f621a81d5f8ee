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
    /// Serve a configuration until SIGTERM or SIGINT, then drain and exit. SIGHUP, `POST /reload`
    /// on the admin API and changes to the file reload it; SIGUSR2 upgrades to a new binary.
    Run(RunArgs),
    /// Check a configuration file and report every problem; exits 1 when there is one.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (.yaml, .yml or .toml).
    #[arg(short, long, env = "WEIR_CONFIG")]
    pub config: PathBuf,
    /// Do not reload when the configuration file changes (SIGHUP and `POST /reload` still do).
    #[arg(long)]
    pub no_watch: bool,
    /// The binary SIGUSR2 upgrades to; by default the path this process was started from.
    #[arg(long, value_name = "PATH")]
    pub upgrade_binary: Option<PathBuf>,
    /// How long the new process of a binary upgrade may take to become ready before it is
    /// stopped and this one keeps serving.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub upgrade_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The configuration file (.yaml, .yml or .toml).
    pub config: PathBuf,
    /// The configuration now serving: also print what reloading FILE over it would add, remove
    /// and change.
    #[arg(long, value_name = "CURRENT")]
    pub diff: Option<PathBuf>,
}
