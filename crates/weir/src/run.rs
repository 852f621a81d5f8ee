//! `weir run` and `weir validate` (with `--diff`, what a reload would change).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use weir_config::Config;
use weir_proxy::access::AccessLog;
use weir_proxy::tls::TlsListeners;
use weir_proxy::{ConfigDiff, Drained, Server, Snapshot};
use weir_telemetry::Metrics;

use crate::cli::{RunArgs, ValidateArgs};
use crate::logging;
use crate::triggers;

/// Loads the configuration, serves it, reopens the access log on SIGUSR1, and drains on
/// SIGTERM/SIGINT. Exit code 0 after a drain.
pub fn run(args: &RunArgs) -> ExitCode {
    let Some(config) = load(&args.config) else { return ExitCode::FAILURE };
    if let Err(error) = logging::init(&config.log) {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    let runtime = match build_runtime(&config) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, args))
}

async fn serve(config: Config, args: &RunArgs) -> ExitCode {
    let server = match Server::bind(&config) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    for (name, address) in server.local_addrs() {
        tracing::info!(listener = %name, %address, "listening");
    }
    if let Some(address) = server.admin_addr() {
        tracing::info!(listener = "admin", %address, "listening");
    }
    let access_log = server.access_log();
    let reopener = access_log.clone().map(|log| tokio::spawn(reopen_on_sigusr1(log)));
    let gateway = server.gateway();
    gateway.reload_state().set_source(args.config.clone());
    triggers::reload_on_sighup(gateway.clone());
    let _watch = match args.no_watch {
        true => None,
        false => triggers::reload_on_change(gateway, &args.config)
            .inspect_err(|error| tracing::warn!(%error, "cannot watch the configuration file; reload with SIGHUP"))
            .ok(),
    };
    match server.run(termination_signal()).await {
        Drained::Clean => tracing::info!("drained; exiting"),
        Drained::TimedOut => tracing::warn!("drain timeout passed with requests in flight; exiting"),
    }
    reopener.inspect(|task| task.abort());
    if let Some(log) = access_log
        && !log.flush(std::time::Duration::from_secs(5))
    {
        tracing::warn!("the access log did not flush within 5s; its last lines may be lost");
    }
    ExitCode::SUCCESS
}

/// Reopens the access log's file on every SIGUSR1, for log rotation (rename, then signal).
async fn reopen_on_sigusr1(log: Arc<AccessLog>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::error!("cannot install the SIGUSR1 handler; the access log will not be reopened");
        return;
    };
    while usr1.recv().await.is_some() {
        tracing::info!("SIGUSR1 received: reopening the access log");
        log.reopen();
    }
}

fn build_runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop weir with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Checks a configuration the way `run` would, without binding anything.
pub fn validate(args: &ValidateArgs) -> ExitCode {
    let Some(config) = load(&args.config) else { return ExitCode::FAILURE };
    if let Err(error) = logging::filter(&config.log) {
        eprintln!("{}: {error}", args.config.display());
        return ExitCode::FAILURE;
    }
    let metrics = Metrics::new();
    let built = Snapshot::build(&config, &metrics).map_err(|e| e.to_string());
    // Reads every TLS file: unreadable, not PEM, or a key that does not match its certificate.
    let built = built.and_then(|_| TlsListeners::build(&config, &metrics).map_err(|e| e.to_string()));
    match built {
        Ok(_) => {
            let (l, u, r) = (config.listeners.len(), config.upstreams.len(), config.routes.len());
            println!("{}: ok ({l} listeners, {u} upstreams, {r} routes)", args.config.display());
            match &args.diff {
                Some(current) => print_diff(current, &config),
                None => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("{}: {error}", args.config.display());
            ExitCode::FAILURE
        }
    }
}

/// Prints what replacing the configuration in `current` with `config` would change.
fn print_diff(current: &Path, config: &Config) -> ExitCode {
    let Some(current) = load(current) else { return ExitCode::FAILURE };
    print!("{}", ConfigDiff::between(&current, config));
    ExitCode::SUCCESS
}

/// Loads a configuration file, printing every problem when it cannot.
fn load(path: &Path) -> Option<Config> {
    weir_config::load_file(path).inspect_err(|error| eprintln!("{error}")).ok()
}
