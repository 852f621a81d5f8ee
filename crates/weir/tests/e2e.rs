//! The built `weir` binary, driven from outside: `validate`, the quick-start config with curl (a fault
//! experiment included), and a SIGTERM during a slow response.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use weir_test::MockUpstream;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A running weir process and the addresses its listeners reported.
struct Weir {
    child: Child,
    listeners: Vec<(String, SocketAddr)>,
}

impl Weir {
    /// Starts weir with JSON logs and waits (on its log lines, not a clock) until every listener is up.
    fn start(config: &PathBuf, listeners: usize) -> Weir {
        let mut child = Command::new(WEIR)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut found = Vec::new();
        while found.len() < listeners {
            let line = lines.next().expect("weir exited before listening").unwrap();
            if line.contains("\"listening\"") {
                found.push((json_field(&line, "listener"), json_field(&line, "address").parse().unwrap()));
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Weir { child, listeners: found }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.listeners.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_field(line: &str, field: &str) -> String {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key).unwrap_or_else(|| panic!("{field} not in {line}")) + key.len();
    line[start..].split('"').next().unwrap().to_string()
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl").args(["-s", "-i", "--max-time", "10"]).args(args).output().expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_reports_the_line_and_field_of_a_typo() {
    let path = temp_config(
        "typo.yaml",
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nroutes:\n  - direct_response: { status: 200 }\n    tiemout: 2s\n",
    );
    let output = Command::new(WEIR).arg("validate").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("typo.yaml:6:5: routes[0].tiemout: unknown field `tiemout`"), "{stderr}");
    assert!(stderr.contains("timeout"), "the valid names are listed: {stderr}");

    let good = temp_config("good.yaml", "listeners:\n  - name: public\n    address: 127.0.0.1:0\n");
    let output = Command::new(WEIR).arg("validate").arg(&good).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn version_is_printed() {
    let output = Command::new(WEIR).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("weir {}", env!("CARGO_PKG_VERSION")));
}

/// Free ports for the quick-start config, whose gateway proxies to its own second listener.
fn free_ports() -> [u16; 3] {
    let sockets = [(); 3].map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    sockets.map(|s| s.local_addr().unwrap().port())
}

#[test]
fn quickstart_config_proxies_curl_traffic() {
    let quickstart = include_str!("../../../examples/quickstart.yaml");
    let [public, backend, admin] = free_ports();
    let text = quickstart
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{public}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("format: text", "format: json");
    let weir = Weir::start(&temp_config("quickstart.yaml", &text), 3);
    let base = format!("http://{}", weir.addr("public"));

    let hello = curl(&[&format!("{base}/hello")]);
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    assert!(hello.ends_with("hello through weir\n"), "{hello}");

    let user = curl(&[&format!("{base}/api/users/42")]);
    assert!(user.contains("x-served-by: weir"), "{user}");
    assert!(user.ends_with("{\"user\": \"demo\"}\n"), "{user}");

    let echo = curl(&["-X", "POST", "--data", "ping", &format!("{base}/api/echo")]);
    assert!(echo.starts_with("HTTP/1.1 201"), "{echo}");

    let h2 = curl(&["--http2-prior-knowledge", &format!("{base}/hello")]);
    assert!(h2.starts_with("HTTP/2 200"), "{h2}");

    let missing = curl(&[&format!("{base}/nowhere")]);
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.contains("proxy-status: weir; error=destination_not_found; details=\"no_route\""), "{missing}");

    let metrics = curl(&[&format!("http://{}/metrics", weir.addr("admin"))]);
    assert!(metrics.contains("weir_requests_total{route=\"hello\",code_class=\"2xx\"} 2"), "{metrics}");

    // A fault experiment, started and ended through the admin API.
    let faults = format!("http://{}/faults", weir.addr("admin"));
    let experiment = r#"{"route": "hello", "ttl": "1m", "abort": {"status": 503}}"#;
    let started = curl(&["-X", "POST", "--data", experiment, &faults]);
    assert!(started.starts_with("HTTP/1.1 201"), "{started}");
    let id = started.split("\"id\":\"").nth(1).and_then(|rest| rest.split('"').next()).expect("an id").to_string();
    let aborted = curl(&[&format!("{base}/hello")]);
    assert!(aborted.starts_with("HTTP/1.1 503"), "{aborted}");
    assert!(aborted.contains("details=\"fault_injected\""), "{aborted}");
    let ended = curl(&["-X", "DELETE", &format!("{faults}/{id}")]);
    assert!(ended.starts_with("HTTP/1.1 204"), "{ended}");
    assert!(curl(&[&format!("{base}/hello")]).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_response_lets_it_finish_then_exits_zero() {
    let mock = MockUpstream::start("slow").await;
    let text = format!(
        "server:\n  drain_timeout: 20s\nlog:\n  format: json\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\nroutes:\n  - upstream: backend\n    timeout: 20s\n",
        mock.addr()
    );
    let mut weir = Weir::start(&temp_config("drain.yaml", &text), 1);
    let url = format!("http://{}/slow", weir.addr("public"));
    let slow = tokio::task::spawn_blocking(move || curl(&["-H", "x-mock-delay-ms: 5000", &url]));
    mock.wait_for(1).await;
    weir.signal("-TERM");

    // New connections are refused once weir has closed its listener; it logs that it is draining.
    let addr = weir.addr("public");
    let refused = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + weir_test::TEST_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_err() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    });
    assert!(refused.await.unwrap(), "weir kept accepting connections after SIGTERM");

    let response = slow.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from slow"), "{response}");
    let status = tokio::task::spawn_blocking(move || weir.child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}
