//! HTTP/2 to upstreams through the real gateway: HTTP/1.1 and HTTP/2 clients proxied to an h2c
//! upstream over one shared connection, trailers passed through, and the version picked by ALPN
//! for a TLS upstream.

use std::path::PathBuf;

use http::{Request, Version};
use http_body_util::Full;
use weir_test::tls::{TestCa, TlsUpstream};
use weir_test::{MockUpstream, TestGateway, h2c_request, http1_request};

fn h2c_config(upstream: &MockUpstream, extra: &str) -> String {
    format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\", protocols: [http1, h2c] }}]\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\n    protocol: http2\n{extra}routes:\n  - {{ name: all, upstream: backend }}\n",
        upstream.addr()
    )
}

#[tokio::test]
async fn http1_clients_share_one_http2_connection_to_the_upstream() {
    let upstream = MockUpstream::start("h2").await;
    let gateway = TestGateway::start(&h2c_config(&upstream, "")).await;
    let requests = (0..20).map(|i| {
        let request = Request::get(format!("/items/{i}?q=1"))
            .header("host", "api.example.com")
            .header("x-mock-delay-ms", "20")
            .body(String::new())
            .unwrap();
        http1_request(gateway.addr(), request)
    });
    for answer in futures_join(requests).await {
        let answer = answer.unwrap();
        assert_eq!((answer.status.as_u16(), answer.text().as_str()), (200, "hello from h2"));
    }
    assert_eq!(upstream.connections(), 1, "twenty requests at once share one HTTP/2 connection");
    let received = upstream.received();
    assert!(received.iter().all(|r| r.version == Version::HTTP_2));
    let first = received.iter().find(|r| r.uri.path() == "/items/0").unwrap();
    assert_eq!(first.uri.authority().map(|a| a.as_str()), Some("api.example.com"), "Host becomes :authority");
    assert_eq!(first.uri.query(), Some("q=1"));
    assert!(first.headers.get("x-forwarded-for").is_some());
}

#[tokio::test]
async fn trailers_and_bodies_pass_both_ways_between_http2_peers() {
    let upstream = MockUpstream::start("h2").await;
    let gateway = TestGateway::start(&h2c_config(&upstream, "")).await;
    let request = Request::post(format!("http://{}/echo", gateway.addr()))
        .header("x-mock-echo", "1")
        .header("x-mock-trailer", "grpc-status=0")
        .header("te", "trailers")
        .body(Full::new(bytes::Bytes::from_static(b"ping over h2")))
        .unwrap();
    let answer = h2c_request(gateway.addr(), request).await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.text().as_str()), (200, "ping over h2"));
    let trailers = answer.trailers.expect("the upstream's trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    let received = upstream.received();
    assert_eq!(received[0].headers.get("te").unwrap(), "trailers", "TE: trailers reaches an HTTP/2 upstream");

    // An HTTP/1.1 client gets the trailers in a chunked body.
    let request = Request::get("/t").header("host", "a").header("x-mock-trailer", "x-checksum=abc");
    let answer = http1_request(gateway.addr(), request.header("te", "trailers").body(String::new()).unwrap()).await;
    let trailers = answer.unwrap().trailers.expect("trailers over HTTP/1.1");
    assert_eq!(trailers.get("x-checksum").unwrap(), "abc");
}

#[tokio::test]
async fn streams_beyond_the_limit_take_a_second_connection() {
    let upstream = MockUpstream::start("h2").await;
    let gateway = TestGateway::start(&h2c_config(&upstream, "    http2: { max_concurrent_streams: 2 }\n")).await;
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let request = Request::get("/held").header("host", "a").header("x-mock-hold", "1");
            tokio::spawn(http1_request(gateway.addr(), request.body(String::new()).unwrap()))
        })
        .collect();
    upstream.wait_for(4).await;
    assert_eq!(upstream.connections(), 2, "four streams at once, two per connection");
    upstream.release_held();
    for answer in requests {
        assert_eq!(answer.await.unwrap().unwrap().status.as_u16(), 200);
    }
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-h2-upstream-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn version_over_tls(alpn: &[&str], protocol: &str) -> (String, Option<String>) {
    let dir = temp_dir(&format!("{protocol}-{}", alpn.join("-").replace('/', "")));
    let ca = TestCa::new("upstream CA");
    let upstream = TlsUpstream::start_with(&ca.server(&["backend.internal"]), None, alpn).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  secure:\n    endpoints: [\"{}\"]\n    protocol: {protocol}\n    tls: {{ ca: \"{}\", server_name: backend.internal }}\nroutes:\n  - {{ name: secure, upstream: secure }}\n",
        upstream.addr(),
        ca_file.display()
    );
    let gateway = TestGateway::start(&config).await;
    let request = Request::get("/x").header("host", "api.example.com").body(String::new()).unwrap();
    let answer = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.text());
    (answer.text(), upstream.seen()[0].alpn.clone())
}

#[tokio::test]
async fn alpn_picks_the_version_spoken_to_a_tls_upstream() {
    let both = ["h2", "http/1.1"];
    assert_eq!(version_over_tls(&both, "auto").await, ("secure over HTTP/2.0".into(), Some("h2".into())));
    assert_eq!(version_over_tls(&both, "http2").await, ("secure over HTTP/2.0".into(), Some("h2".into())));
    assert_eq!(version_over_tls(&both, "http1").await, ("secure over HTTP/1.1".into(), Some("http/1.1".into())));
    let only_http1 = ["http/1.1"];
    assert_eq!(version_over_tls(&only_http1, "auto").await, ("secure over HTTP/1.1".into(), Some("http/1.1".into())));
}

/// Runs the futures at once, each in its own task, and returns their outputs in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.expect("the task finished"));
    }
    outputs
}
