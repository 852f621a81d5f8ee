//! The built binary upgrading itself on SIGUSR2 under a steady stream of requests: the new process
//! takes over the listening sockets, the old one drains and exits 0, and no request fails (on new
//! connections or kept-alive ones) and no connection is refused. A successor that cannot start leaves the old process serving.
//! An upgrade after a reload hands over the listeners in service then.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use weir_test::TEST_TIMEOUT;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn config_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-upgrade-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.yaml");
    let config = "log: { format: json }\nadmin: { address: \"127.0.0.1:0\" }\n\
        listeners: [{ name: public, address: \"127.0.0.1:0\" }]\n\
        routes:\n  - { name: hello, direct_response: { status: 200, body: hello } }\n";
    std::fs::write(&path, config).unwrap();
    path
}

/// A weir started by the test, with its log lines (of every process that inherits its standard
/// error, successors included) arriving on a channel.
struct Weir {
    child: Child,
    lines: mpsc::Receiver<String>,
    public: SocketAddr,
    admin: SocketAddr,
    /// The log lines up to the first `ready`.
    startup: Vec<String>,
    /// Processes to stop when the test ends: successors are not the test's children.
    successors: Vec<u32>,
}

impl Weir {
    fn start(config: &Path, extra: &[&str]) -> Weir {
        let mut command = Command::new(WEIR);
        command.args(["run", "--no-watch", "--config"]).arg(config).args(extra);
        Weir::start_with(command)
    }

    fn start_with(mut command: Command) -> Weir {
        let mut child = command.env("RUST_LOG", "info").stderr(Stdio::piped()).spawn().expect("start weir");
        let (send, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).try_for_each(|line| send.send(line)));
        let mut weir = Weir {
            child,
            lines,
            public: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            startup: Vec::new(),
            successors: Vec::new(),
        };
        while !weir.startup.last().is_some_and(|line| line.contains("\"message\":\"ready\"")) {
            let line = weir.next_line(|_| true);
            if line.contains("\"listening\"") && line.contains("\"public\"") {
                weir.public = field(&line, "address").parse().unwrap();
            }
            if line.contains("\"listening\"") && line.contains("\"admin\"") {
                weir.admin = field(&line, "address").parse().unwrap();
            }
            weir.startup.push(line);
        }
        weir
    }

    /// Waits for the next log line that `wanted` accepts.
    fn next_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.lines.recv_timeout(TEST_TIMEOUT).expect("weir logged nothing more in time");
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Waits until no process holds the log pipe any more: the old one and its successors ended.
    fn wait_for_every_process_to_exit(&self) {
        loop {
            match self.lines.recv_timeout(TEST_TIMEOUT) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("a weir process outlived its drain"),
            }
        }
    }

    fn signal(pid: u32, signal: &str) {
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        for pid in &self.successors {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> String {
    let key = format!("\"{name}\":\"");
    let start = line.find(&key).unwrap_or_else(|| panic!("{name} not in {line}")) + key.len();
    line[start..].split('"').next().unwrap().to_string()
}

fn number(line: &str, name: &str) -> u32 {
    let key = format!("\"{name}\":");
    let start = line.find(&key).unwrap_or_else(|| panic!("{name} not in {line}")) + key.len();
    line[start..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

/// One GET on a new connection; an error names what went wrong (a refused connect included).
async fn get(addr: SocketAddr) -> Result<String, String> {
    get_path(addr, "/").await
}

async fn get_path(addr: SocketAddr, path: &str) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::get(path).header("host", "weir.test").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    match status.is_success() {
        true => Ok(String::from_utf8_lossy(&body).into_owned()),
        false => Err(format!("status {status}")),
    }
}

async fn client(addr: SocketAddr, path: &'static str, wanted: &'static str, tally: Arc<Tally>) -> Vec<String> {
    let mut errors = Vec::new();
    while !tally.stop.load(Ordering::Relaxed) {
        match get_path(addr, path).await {
            Ok(body) if body == wanted => tally.ok.fetch_add(1, Ordering::Relaxed),
            Ok(body) => {
                errors.push(format!("body {body:?}"));
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
            Err(error) => {
                errors.push(error);
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    errors
}

/// Like [`client`], over one connection kept alive until the server answers `connection: close`.
/// A request the server drops (a connection closed under it) fails: nothing is resent.
async fn keep_alive_client(addr: SocketAddr, tally: Arc<Tally>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut connection = None;
    while !tally.stop.load(Ordering::Relaxed) {
        if connection.is_none() {
            let stream = match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => stream,
                Err(error) => {
                    errors.push(format!("connect: {error}"));
                    continue;
                }
            };
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            connection = Some(sender);
        }
        let sender = connection.as_mut().unwrap();
        let request = Request::get("/").header("host", "weir.test").body(Empty::<Bytes>::new()).unwrap();
        match sender.send_request(request).await {
            Ok(response) => {
                let close = response.headers().get(http::header::CONNECTION).is_some_and(|v| v == "close");
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(body) if body == "hello" => drop(tally.ok.fetch_add(1, Ordering::Relaxed)),
                    other => errors.push(format!("keep-alive answer: {other:?}")),
                }
                if close {
                    connection = None;
                }
            }
            Err(error) => {
                errors.push(format!("keep-alive send: {error}"));
                connection = None;
            }
        }
    }
    errors
}

/// Waits until the clients have had `more` answers beyond `from`.
async fn answers_beyond(tally: &Tally, from: usize, more: usize) -> usize {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let ok = tally.ok.load(Ordering::Relaxed);
        if ok >= from + more {
            return ok;
        }
        assert!(tokio::time::Instant::now() < deadline, "the clients stalled at {ok} answers");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_fails_no_request_and_hands_over_to_a_new_process() {
    let config = config_file("load");
    let mut weir = Weir::start(&config, &[]);
    let old = weir.child.id();
    let tally = Arc::new(Tally::default());
    let mut clients: Vec<_> = (0..4).map(|_| tokio::spawn(client(weir.public, "/", "hello", tally.clone()))).collect();
    clients.extend((0..2).map(|_| tokio::spawn(keep_alive_client(weir.public, tally.clone()))));
    // Readiness stays true throughout: the successor answers on the same admin socket.
    let readiness = Arc::new(Tally::default());
    clients.push(tokio::spawn(client(weir.admin, "/readyz", "ready\n", readiness.clone())));
    let before = answers_beyond(&tally, 0, 50).await;

    Weir::signal(old, "-USR2");
    weir.next_line(|line| line.contains("took over the listening sockets"));
    let ready = weir.next_line(|line| line.contains("\"message\":\"ready\""));
    let new = number(&ready, "pid");
    weir.successors.push(new);
    assert_ne!(new, old, "{ready}");
    let status = tokio::task::block_in_place(|| weir.child.wait()).unwrap();
    assert!(status.success(), "the old process ended with {status}");
    // Every answer from here on comes from the new process: the old one has exited.
    let after_exit = tally.ok.load(Ordering::Relaxed);
    answers_beyond(&tally, after_exit, 50).await;

    tally.stop.store(true, Ordering::Relaxed);
    readiness.stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for client in clients {
        errors.extend(client.await.unwrap());
    }
    assert!(errors.is_empty(), "{} failed requests: {errors:?}", errors.len());
    assert!(after_exit > before, "no request was answered during the upgrade");
    Weir::signal(new, "-TERM");
    weir.next_line(|line| line.contains("SIGTERM received"));
    weir.wait_for_every_process_to_exit();
    weir.successors.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_leaves_the_old_process_serving() {
    let config = config_file("broken");
    let mut weir = Weir::start(&config, &["--upgrade-binary", "/bin/false"]);
    Weir::signal(weir.child.id(), "-USR2");
    let failed = weir.next_line(|line| line.contains("upgrade failed"));
    assert!(failed.contains("exited"), "{failed}");
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    assert!(weir.child.try_wait().unwrap().is_none(), "the old process exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activation_adopts_the_socket_named_for_the_listener() {
    let config = config_file("activation");
    // systemd-socket-activate wants a port; the one a socket just had is free.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new("systemd-socket-activate");
    command.arg(format!("--listen=127.0.0.1:{port}")).arg("--fdname=public");
    command.args([WEIR, "run", "--no-watch", "--config"]).arg(&config);
    // systemd-socket-activate starts weir on the first connection, which then waits in the queue.
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    let first = tokio::spawn(async move {
        loop {
            match get(public).await {
                Err(error) if error.starts_with("connect") => tokio::time::sleep(Duration::from_millis(5)).await,
                answer => return answer,
            }
        }
    });
    let mut weir = tokio::task::block_in_place(|| Weir::start_with(command));
    assert_eq!(first.await.unwrap().unwrap(), "hello");
    let adopted = weir.startup.iter().find(|line| line.contains("systemd passed")).expect("no adoption logged");
    assert!(adopted.contains("\"adopted\":1") && adopted.contains("\"unused\":0"), "{adopted}");
    assert_eq!(weir.public.port(), port);
    assert_eq!(get(weir.public).await.unwrap(), "hello");

    // The activated socket goes on to a successor like any other.
    Weir::signal(weir.child.id(), "-USR2");
    let ready = weir.next_line(|line| line.contains("\"message\":\"ready\""));
    let successor = number(&ready, "pid");
    weir.successors.push(successor);
    assert!(tokio::task::block_in_place(|| weir.child.wait()).unwrap().success());
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    Weir::signal(successor, "-TERM");
    weir.wait_for_every_process_to_exit();
    weir.successors.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_systemd_passed_may_be_removed_by_a_reload_and_added_back_bound_by_weir() {
    let config = config_file("activated-reload");
    let text = std::fs::read_to_string(&config).unwrap();
    let public = "{ name: public, address: \"127.0.0.1:0\" }";
    let other = "{ name: other, address: \"127.0.0.1:0\" }";
    std::fs::write(&config, text.replace(public, &format!("{public}, {other}"))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new("systemd-socket-activate");
    command.arg(format!("--listen=127.0.0.1:{port}")).arg("--fdname=public");
    command.args([WEIR, "run", "--no-watch", "--config"]).arg(&config);
    let activated = SocketAddr::from(([127, 0, 0, 1], port));
    let first = tokio::spawn(async move {
        loop {
            match get(activated).await {
                Err(error) if error.starts_with("connect") => tokio::time::sleep(Duration::from_millis(5)).await,
                answer => return answer,
            }
        }
    });
    let weir = tokio::task::block_in_place(|| Weir::start_with(command));
    assert_eq!(first.await.unwrap().unwrap(), "hello");

    std::fs::write(&config, text.replace(public, other)).unwrap();
    Weir::signal(weir.child.id(), "-HUP");
    weir.next_line(|line| line.contains("configuration reloaded"));
    assert!(get(activated).await.unwrap_err().starts_with("connect"), "the removed listener still accepts");

    let back = format!("{{ name: public, address: \"{activated}\" }}, {other}");
    std::fs::write(&config, text.replace(public, &back)).unwrap();
    Weir::signal(weir.child.id(), "-HUP");
    let bound = weir.next_line(|line| line.contains("\"listening\"") && line.contains("\"public\""));
    assert!(bound.contains(&activated.to_string()), "{bound}");
    weir.next_line(|line| line.contains("configuration reloaded"));
    assert_eq!(get(activated).await.unwrap(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_applies_listener_changes_made_in_the_file() {
    let config = config_file("listeners");
    let mut weir = Weir::start(&config, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace(
        "listeners: [{ name: public, address: \"127.0.0.1:0\" }]",
        "listeners: [{ name: public, address: \"127.0.0.1:0\" }, { name: more, address: \"127.0.0.1:0\" }]",
    );
    assert_ne!(changed, text);
    std::fs::write(&config, changed).unwrap();

    Weir::signal(weir.child.id(), "-USR2");
    let took_over = weir.next_line(|line| line.contains("took over the listening sockets"));
    assert!(took_over.contains("\"adopted\":2") && took_over.contains("\"unused\":0"), "{took_over}");
    let more = weir.next_line(|line| line.contains("\"listening\"") && line.contains("\"more\""));
    let more: SocketAddr = field(&more, "address").parse().unwrap();
    let ready = weir.next_line(|line| line.contains("\"message\":\"ready\""));
    let successor = number(&ready, "pid");
    weir.successors.push(successor);
    assert!(tokio::task::block_in_place(|| weir.child.wait()).unwrap().success());
    // The public listener kept its socket (and port); the new one is bound.
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    assert_eq!(get(more).await.unwrap(), "hello");
    Weir::signal(successor, "-TERM");
    weir.wait_for_every_process_to_exit();
    weir.successors.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_the_listeners_a_reload_left() {
    let config = config_file("reloaded");
    let text = std::fs::read_to_string(&config).unwrap();
    let with = |names: &[&str]| {
        let listeners: Vec<String> =
            names.iter().map(|name| format!("{{ name: {name}, address: \"127.0.0.1:0\" }}")).collect();
        text.replace("[{ name: public, address: \"127.0.0.1:0\" }]", &format!("[{}]", listeners.join(", ")))
    };
    std::fs::write(&config, with(&["public", "gone"])).unwrap();
    let mut weir = Weir::start(&config, &[]);
    let gone = weir.startup.iter().find(|line| line.contains("\"listening\"") && line.contains("\"gone\""));
    let gone: SocketAddr = field(gone.expect("gone listens"), "address").parse().unwrap();

    // A reload removes one listener and adds another.
    std::fs::write(&config, with(&["public", "more"])).unwrap();
    Weir::signal(weir.child.id(), "-HUP");
    let more = weir.next_line(|line| line.contains("\"listening\"") && line.contains("\"more\""));
    let more: SocketAddr = field(&more, "address").parse().unwrap();
    weir.next_line(|line| line.contains("configuration reloaded"));
    assert_eq!(get(more).await.unwrap(), "hello");
    assert!(get(gone).await.is_err(), "the removed listener still accepts");

    // The successor gets the sockets in service now: public, more and admin, not gone.
    Weir::signal(weir.child.id(), "-USR2");
    let took_over = weir.next_line(|line| line.contains("took over the listening sockets"));
    assert!(took_over.contains("\"adopted\":3") && took_over.contains("\"unused\":0"), "{took_over}");
    let ready = weir.next_line(|line| line.contains("\"message\":\"ready\""));
    let successor = number(&ready, "pid");
    weir.successors.push(successor);
    assert!(tokio::task::block_in_place(|| weir.child.wait()).unwrap().success());
    assert_eq!(get(more).await.unwrap(), "hello");
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    Weir::signal(successor, "-TERM");
    weir.wait_for_every_process_to_exit();
    weir.successors.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_never_gets_ready_is_stopped_at_the_timeout() {
    let config = config_file("hang");
    let hang = config.with_file_name("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut weir = Weir::start(&config, &["--upgrade-binary", hang.to_str().unwrap(), "--upgrade-timeout", "200ms"]);
    Weir::signal(weir.child.id(), "-USR2");
    let failed = weir.next_line(|line| line.contains("upgrade failed"));
    assert!(failed.contains("not ready within 200ms"), "{failed}");
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    // The stopped successor let go of the log pipe: after the old process, nothing holds it.
    weir.child.kill().unwrap();
    weir.child.wait().unwrap();
    weir.wait_for_every_process_to_exit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_bind_a_new_listener_leaves_the_old_process_serving() {
    let config = config_file("taken");
    let mut weir = Weir::start(&config, &[]);
    // Held without SO_REUSEPORT, so weir cannot bind beside it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let extra = format!(
        "{{ name: public, address: \"127.0.0.1:0\" }}, {{ name: more, address: \"{}\" }}",
        taken.local_addr().unwrap()
    );
    std::fs::write(&config, text.replace("{ name: public, address: \"127.0.0.1:0\" }", &extra)).unwrap();

    Weir::signal(weir.child.id(), "-USR2");
    let cannot = weir.next_line(|line| line.contains("cannot start"));
    assert!(cannot.contains("listener more"), "{cannot}");
    let failed = weir.next_line(|line| line.contains("upgrade failed"));
    assert!(failed.contains("before it was ready") || failed.contains("exited"), "{failed}");
    assert_eq!(get(weir.public).await.unwrap(), "hello");
    assert!(weir.child.try_wait().unwrap().is_none(), "the old process exited");
}
