//! The built binary reloading: on SIGHUP, and when its configuration file is replaced by an atomic
//! rename or by a symlink swap (the way Kubernetes updates a mounted ConfigMap).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{TEST_TIMEOUT, http1_request};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-reload-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(body: &str) -> String {
    format!(
        "log: {{ format: json }}\nadmin: {{ address: \"127.0.0.1:0\" }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nroutes:\n  - {{ name: hello, direct_response: {{ status: 200, body: {body} }} }}\n"
    )
}

/// A running weir and the addresses it reported, found on its log lines.
struct Weir {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Weir {
    fn start(config: &Path, extra: &[&str]) -> Weir {
        let mut child = Command::new(WEIR)
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut public, mut admin) = (None, None);
        while public.is_none() || admin.is_none() {
            let line = lines.next().expect("weir exited before listening").unwrap();
            if line.contains("\"listening\"") {
                let address = Some(field(&line, "address").parse().unwrap());
                if field(&line, "listener") == "admin" { admin = address } else { public = address }
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Weir { child, public: public.unwrap(), admin: admin.unwrap() }
    }

    fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Polls until `path` on `addr` answers a body containing `wanted`.
    async fn wait_for(&self, addr: SocketAddr, path: &str, wanted: &str) -> String {
        let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
        loop {
            let request = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
            let text = http1_request(addr, request).await.unwrap().text();
            if text.contains(wanted) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "never saw {wanted:?} at {path}; last: {text}");
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> String {
    let key = format!("\"{name}\":\"");
    let start = line.find(&key).unwrap_or_else(|| panic!("{name} not in {line}")) + key.len();
    line[start..].split('"').next().unwrap().to_string()
}

async fn body(addr: SocketAddr) -> String {
    http1_request(addr, Request::get("/").body(Empty::<Bytes>::new()).unwrap()).await.unwrap().text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let dir = temp_dir("sighup");
    let path = dir.join("weir.yaml");
    std::fs::write(&path, config("one")).unwrap();
    let weir = Weir::start(&path, &["--no-watch"]);
    assert_eq!(body(weir.public).await, "one");

    std::fs::write(&path, config("two")).unwrap();
    weir.hangup();
    weir.wait_for(weir.admin, "/metrics", "weir_config_reloads_total{result=\"success\"} 1").await;
    assert_eq!(body(weir.public).await, "two");

    std::fs::write(&path, config("three").replace("routes:", "routes: [")).unwrap();
    weir.hangup();
    weir.wait_for(weir.admin, "/metrics", "weir_config_reloads_total{result=\"failure\"} 1").await;
    assert_eq!(body(weir.public).await, "two");
    let status = weir.wait_for(weir.admin, "/reload", "last_error").await;
    assert!(status.contains("weir.yaml"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_by_rename_and_symlink_swap_are_picked_up() {
    let dir = temp_dir("watch");
    std::fs::create_dir_all(dir.join("v1")).unwrap();
    std::fs::write(dir.join("v1/weir.yaml"), config("one")).unwrap();
    let path = dir.join("weir.yaml");
    std::os::unix::fs::symlink("v1/weir.yaml", &path).unwrap();
    let weir = Weir::start(&path, &[]);
    assert_eq!(body(weir.public).await, "one");

    // A symlink swap: a new target, and a new link renamed over the old one.
    std::fs::create_dir_all(dir.join("v2")).unwrap();
    std::fs::write(dir.join("v2/weir.yaml"), config("two")).unwrap();
    std::os::unix::fs::symlink("v2/weir.yaml", dir.join("next-link")).unwrap();
    std::fs::rename(dir.join("next-link"), &path).unwrap();
    weir.wait_for(weir.public, "/", "two").await;

    // An editor's save: a new file renamed over the configuration.
    std::fs::write(dir.join("weir.yaml.tmp"), config("three")).unwrap();
    std::fs::rename(dir.join("weir.yaml.tmp"), &path).unwrap();
    weir.wait_for(weir.public, "/", "three").await;
    weir.wait_for(weir.admin, "/metrics", "weir_config_reloads_total{result=\"success\"} 2").await;
}

#[test]
fn validate_diff_names_what_a_reload_would_change() {
    let dir = temp_dir("diff");
    let (current, next) = (dir.join("current.yaml"), dir.join("next.yaml"));
    std::fs::write(&current, config("one")).unwrap();
    let more = "  - { name: more, match: { path: /more }, direct_response: { status: 204 } }\n";
    std::fs::write(&next, config("two") + more).unwrap();
    let output = Command::new(WEIR).arg("validate").arg(&next).arg("--diff").arg(&current).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("routes: added: more; changed: hello\n"), "{stdout}");
    assert!(stdout.contains("listeners: no change\n"), "{stdout}");
}
