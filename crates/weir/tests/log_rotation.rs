//! Log rotation with the built binary: after the access log is renamed and weir gets SIGUSR1, new
//! lines land in a new file at the configured path, and SIGTERM flushes what is queued.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts weir and waits for its "listening" log line; returns the listener's address.
fn start(config: &Path) -> (Weir, SocketAddr) {
    let mut child = Command::new(WEIR)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("weir exited before listening").unwrap();
        if line.contains("\"listening\"") {
            let start = line.find("\"address\":\"").unwrap() + 11;
            break line[start..].split('"').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Weir(child), addr)
}

fn signal(weir: &Weir, signal: &str) {
    assert!(Command::new("kill").args([signal, &weir.0.id().to_string()]).status().unwrap().success());
}

fn request(addr: SocketAddr, path: &str) {
    let output = Command::new("curl").args(["-s", "--max-time", "10", &format!("http://{addr}{path}")]).output();
    assert_eq!(String::from_utf8_lossy(&output.expect("run curl").stdout), "ok");
}

/// Polls until `path` holds a line containing `needle`; returns the file's text.
fn wait_for_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|line| line.contains(needle)) {
            return text;
        }
        assert!(Instant::now() < deadline, "no line with {needle} in {}: {text:?}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigusr1_reopens_the_access_log_after_a_rename() {
    let dir = std::env::temp_dir().join(format!("weir-rotation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let config = dir.join("weir.yaml");
    let text = format!(
        "log: {{ format: json }}\naccess_log:\n  path: {}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nroutes:\n  - direct_response: {{ status: 200, body: ok }}\n",
        log.display()
    );
    std::fs::write(&config, text).unwrap();
    let (weir, addr) = start(&config);
    request(addr, "/before");
    wait_for_line(&log, "\"/before\"");
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&weir, "-USR1");
    // The reopened file appears at the configured path; lines after that go there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < deadline, "SIGUSR1 did not reopen the access log");
        std::thread::sleep(Duration::from_millis(10));
    }
    request(addr, "/after");
    let new = wait_for_line(&log, "\"/after\"");
    assert_eq!(new.lines().count(), 1, "{new}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("\"/before\""));
    // SIGTERM drains and flushes: the last request's line is written before weir exits.
    request(addr, "/last");
    signal(&weir, "-TERM");
    let mut weir = weir;
    assert!(weir.0.wait().unwrap().success());
    assert!(std::fs::read_to_string(&log).unwrap().contains("\"/last\""));
}
