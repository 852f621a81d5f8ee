//! `weir run` and `weir validate` (with `--diff`, what a reload would change).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use weir_config::Config;
use weir_proxy::access::AccessLog;
use weir_proxy::tls::TlsListeners;
use weir_proxy::{ConfigDiff, Drained, InheritedSockets, Server, Snapshot, Stop};
use weir_telemetry::Metrics;

use crate::cli::{RunArgs, ValidateArgs};
use crate::logging;
use crate::triggers;
use crate::upgrade::{self, Upgrader, handoff::Handoff};

/// Loads the configuration, serves it, reopens the access log on SIGUSR1, and drains on
/// SIGTERM/SIGINT. Exit code 0 after a drain.
pub fn run(args: &RunArgs) -> ExitCode {
    let Some(config) = load(&args.config) else { return ExitCode::FAILURE };
    if let Err(error) = logging::init(&config.log) {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    // Before the runtime starts threads: taking systemd's sockets edits the environment.
    let activated = upgrade::activation::from_systemd();
    let runtime = match build_runtime(&config) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, args, activated))
}

async fn serve(config: Config, args: &RunArgs, activated: InheritedSockets) -> ExitCode {
    let Some((server, handoff)) = bind(&config, activated) else { return ExitCode::FAILURE };
    for (name, address) in server.local_addrs() {
        tracing::info!(listener = %name, %address, pid = std::process::id(), "listening");
    }
    if let Some(address) = server.admin_addr() {
        tracing::info!(listener = "admin", %address, pid = std::process::id(), "listening");
    }
    let upgraded = upgrader(&server, args).on_sigusr2();
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
    report_ready(handoff);
    match server.run_until(termination_or_upgrade(upgraded)).await {
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

/// Binds the listeners, adopting the sockets systemd passed (`activated`) and those an upgrading
/// weir hands over when this process is its successor.
fn bind(config: &Config, mut activated: InheritedSockets) -> Option<(Server, Option<Handoff>)> {
    let mut handoff = Handoff::from_env()
        .inspect_err(|error| tracing::error!(%error, "cannot receive the listening sockets of the upgrading weir"))
        .ok()?;
    let took_over = handoff.is_some();
    let inherited = match handoff.as_mut() {
        Some(handoff) => {
            handoff.sockets().extend(std::mem::take(&mut activated));
            handoff.sockets()
        }
        None => &mut activated,
    };
    let adopting = inherited.len();
    let server =
        Server::bind_inheriting(config, inherited).inspect_err(|error| tracing::error!(%error, "cannot start")).ok()?;
    let unused = inherited.len();
    if took_over {
        tracing::info!(adopted = adopting - unused, unused, "took over the listening sockets of the upgrading weir");
    } else if adopting > 0 {
        tracing::info!(adopted = adopting - unused, unused, "adopted the listening sockets systemd passed");
    }
    Some((server, handoff))
}

fn upgrader(server: &Server, args: &RunArgs) -> Upgrader {
    let gateway = server.gateway();
    Upgrader {
        binary: args.upgrade_binary.clone().or_else(upgrade::own_binary).unwrap_or_else(|| "weir".into()),
        args: std::env::args_os().skip(1).collect(),
        // Asked at the upgrade: the listeners in service then, after any reload.
        sockets: Box::new(move || gateway.listeners().listening_sockets()),
        timeout: args.upgrade_timeout,
    }
}

/// Tells the upgrading weir (when there is one) and systemd that this process serves now.
fn report_ready(handoff: Option<Handoff>) {
    let took_over = handoff.is_some();
    if let Some(handoff) = handoff
        && let Err(error) = handoff.ready()
    {
        tracing::warn!(%error, "cannot tell the upgrading weir this process is ready");
    }
    upgrade::systemd::notify_ready(took_over);
    tracing::info!(pid = std::process::id(), "ready");
}

/// Completes on SIGTERM or SIGINT (drain), or once a binary upgrade has a new process serving
/// (hand over).
async fn termination_or_upgrade(upgraded: tokio::sync::oneshot::Receiver<u32>) -> Stop {
    tokio::select! {
        () = termination_signal() => Stop::Drain,
        Ok(pid) = upgraded => {
            tracing::info!(new_pid = pid, "upgraded: the new process serves; draining this one");
            Stop::HandOver
        }
    }
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
