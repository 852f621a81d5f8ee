//! TLS with the clients and tools people use: `curl --http2` with SNI, `openssl s_client -reconnect`
//! resuming sessions, and `weir validate` naming the certificate file that is wrong. The curl and
//! openssl checks are skipped (with a note) where the tool is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_test::tls::TestCa;
use weir_test::{MockUpstream, TestGateway};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-tls-clients-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(upstream: &str, cert: &Path, key: &Path) -> String {
    format!(
        "listeners:\n  - name: secure\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{ cert: \"{}\", key: \"{}\" }}\nupstreams:\n  app: {{ endpoints: [\"{upstream}\"] }}\nroutes:\n  - {{ name: app, upstream: app }}\n",
        cert.display(),
        key.display()
    )
}

fn installed(tool: &str) -> bool {
    let found =
        Command::new(tool).arg("--version").output().is_ok() || Command::new(tool).arg("version").output().is_ok();
    if !found {
        eprintln!("{tool} is not installed; skipping");
    }
    found
}

/// Runs a command off the runtime's threads and returns its stdout and stderr.
async fn run(command: &'static str, args: Vec<String>) -> (String, String) {
    run_with_input(command, args, "").await
}

/// Runs a command with `input` on its standard input.
async fn run_with_input(command: &'static str, args: Vec<String>, input: &'static str) -> (String, String) {
    use std::io::Write;
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(command)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().expect("wait")
    })
    .await
    .unwrap();
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_over_tls_with_sni() {
    if !installed("curl") {
        return;
    }
    let dir = temp_dir("curl");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mock = MockUpstream::start("app").await;
    let gateway = TestGateway::start(&config(&mock.addr().to_string(), &cert, &key)).await;
    let port = gateway.addr().port();
    let args = vec![
        "-sS".into(),
        "--http2".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        ca_file.display().to_string(),
        "--resolve".into(),
        format!("api.example.com:{port}:127.0.0.1"),
        "-w".into(),
        "\n%{http_version} %{http_code}".into(),
        format!("https://api.example.com:{port}/hello"),
    ];
    let (stdout, stderr) = run("curl", args).await;
    assert!(stdout.ends_with("\n2 200"), "curl said: {stdout}\n{stderr}");
    assert_eq!(mock.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_reconnects_with_resumed_sessions() {
    if !installed("openssl") {
        return;
    }
    let dir = temp_dir("openssl");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let mock = MockUpstream::start("app").await;
    let gateway = TestGateway::start(&config(&mock.addr().to_string(), &cert, &key)).await;
    let s_client = |extra: &[&str]| -> Vec<String> {
        let common = ["s_client", "-servername", "api.example.com", "-connect"].map(String::from);
        common.into_iter().chain([gateway.addr().to_string()]).chain(extra.iter().map(|s| s.to_string())).collect()
    };
    // TLS 1.2: `-reconnect` connects five more times with the first session (id or ticket).
    let (stdout, stderr) = run("openssl", s_client(&["-tls1_2", "-reconnect"])).await;
    let reused = stdout.lines().filter(|line| line.starts_with("Reused,")).count();
    assert_eq!(reused, 5, "TLS 1.2: {reused} of 5 resumed:\n{stdout}\n{stderr}");
    // TLS 1.3: tickets come after the handshake, which `-reconnect` does not wait for; send a
    // request and read to the end (tickets included), save the session, connect again with it.
    let session = dir.join("session.pem").display().to_string();
    let request = "GET / HTTP/1.1\r\nhost: api.example.com\r\nconnection: close\r\n\r\n";
    let (stdout, _) =
        run_with_input("openssl", s_client(&["-tls1_3", "-ign_eof", "-sess_out", &session]), request).await;
    assert!(stdout.contains("New, TLSv1.3"), "{stdout}");
    let (stdout, stderr) = run("openssl", s_client(&["-tls1_3", "-sess_in", &session])).await;
    assert!(stdout.contains("Reused, TLSv1.3"), "TLS 1.3 did not resume:\n{stdout}\n{stderr}");
}

#[test]
fn validate_names_the_certificate_file_that_is_wrong() {
    let dir = temp_dir("validate");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let (_, other_key) = ca.server(&["api.example.com"]).write(&dir, "other");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = dir.join("missing.pem");
    for (cert, key, expected) in [
        (&cert, &other_key, "listeners[0].tls.certificates[0].key"),
        (&cert, &missing, "cannot read"),
        (&not_pem, &key, "no certificate in the file"),
        (&cert, &cert, "no private key in the file"),
    ] {
        let path = dir.join("weir.yaml");
        std::fs::write(&path, config("127.0.0.1:9", cert, key)).unwrap();
        let output = Command::new(WEIR).arg("validate").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{expected}: validate passed");
        assert!(stderr.contains(expected), "{expected} not in: {stderr}");
        assert!(stderr.contains("listeners[0].tls.certificates[0]"), "no field path in: {stderr}");
    }
    let upstream_tls = format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  app:\n    endpoints: [\"127.0.0.1:9\"]\n    tls: {{ ca: \"{}\" }}\n",
        missing.display()
    );
    let path = dir.join("upstream.yaml");
    std::fs::write(&path, format!("{upstream_tls}routes:\n  - {{ name: app, upstream: app }}\n")).unwrap();
    let output = Command::new(WEIR).arg("validate").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("upstreams.app.tls.ca: cannot read"), "{stderr}");
    std::fs::write(dir.join("weir.yaml"), config("127.0.0.1:9", &cert, &key)).unwrap();
    let output = Command::new(WEIR).arg("validate").arg(dir.join("weir.yaml")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
