//! Route matching precedence and the route's edits, through the real server.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{MockUpstream, TestGateway, http1_request};

/// Each route answers with its own name, so a response says which route took the request.
const ROUTES: &str = r#"
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - { name: catch-all, direct_response: { status: 200, body: catch-all } }
  - { name: api-prefix, match: { path_prefix: /api }, direct_response: { status: 200, body: api-prefix } }
  - { name: api-v2-prefix, match: { path_prefix: /api/v2 }, direct_response: { status: 200, body: api-v2-prefix } }
  - { name: exact-health, match: { path: /api/health }, direct_response: { status: 200, body: exact-health } }
  - { name: user-template, match: { path_template: "/api/users/{id}" }, direct_response: { status: 200, body: user-template } }
  - { name: user-posts, match: { path_template: "/api/users/{uid}/posts/{*rest}" }, direct_response: { status: 200, body: user-posts } }
  - { name: numeric-regex, match: { path_regex: "^/api/[0-9]+$" }, direct_response: { status: 200, body: numeric-regex } }
  - { name: post-only, match: { path_prefix: /api, method: POST }, direct_response: { status: 200, body: post-only } }
  - { name: canary, match: { path_prefix: /api, headers: [{ name: x-canary, exact: "yes" }] }, direct_response: { status: 200, body: canary } }
  - { name: debug-query, match: { path_prefix: /api, query: [{ name: debug, present: true }] }, direct_response: { status: 200, body: debug-query } }
  - { name: exact-host, match: { host: api.example.com }, direct_response: { status: 200, body: exact-host } }
  - { name: wildcard-host, match: { host: "*.example.com" }, direct_response: { status: 200, body: wildcard-host } }
  - { name: deep-wildcard, match: { host: "*.eu.example.com" }, direct_response: { status: 200, body: deep-wildcard } }
  - { name: only-host-path, match: { host: "shop.example.org", path: /cart }, direct_response: { status: 200, body: only-host-path } }
"#;

async fn route_name(
    gateway: &TestGateway,
    method: &str,
    host: &str,
    path: &str,
    header: Option<(&str, &str)>,
) -> String {
    let mut builder = Request::builder().method(method).uri(path).header("host", host);
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    let response = http1_request(gateway.addr(), builder.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    if response.status == 404 {
        return "404".into();
    }
    response.text()
}

/// Method, host, path, an optional header, and the route expected to take the request.
type Case = (&'static str, &'static str, &'static str, Option<(&'static str, &'static str)>, &'static str);

#[tokio::test]
async fn precedence_is_host_then_path_kind_then_conditions() {
    let gateway = TestGateway::start(ROUTES).await;
    let cases: &[Case] = &[
        ("GET", "other.test", "/", None, "catch-all"),
        ("GET", "other.test", "/apix", None, "catch-all"),
        ("GET", "other.test", "/api", None, "api-prefix"),
        ("GET", "other.test", "/api/thing", None, "api-prefix"),
        ("GET", "other.test", "/api/v2/thing", None, "api-v2-prefix"),
        ("GET", "other.test", "/api/health", None, "exact-health"),
        ("GET", "other.test", "/api/users/7", None, "user-template"),
        ("GET", "other.test", "/api/users/7/posts/1/comments", None, "user-posts"),
        ("GET", "other.test", "/api/123", None, "numeric-regex"),
        ("POST", "other.test", "/api/thing", None, "post-only"),
        ("GET", "other.test", "/api/thing", Some(("x-canary", "yes")), "canary"),
        ("GET", "other.test", "/api/thing", Some(("x-canary", "no")), "api-prefix"),
        ("GET", "other.test", "/api/thing?debug", None, "debug-query"),
        ("GET", "API.Example.COM:8080", "/", None, "exact-host"),
        ("GET", "www.example.com", "/", None, "wildcard-host"),
        ("GET", "a.eu.example.com", "/", None, "deep-wildcard"),
        ("GET", "example.com", "/", None, "catch-all"),
        ("GET", "shop.example.org", "/cart", None, "only-host-path"),
        // No route for this host matches the path: matching falls through to routes for any host.
        ("GET", "shop.example.org", "/other", None, "catch-all"),
    ];
    for (method, host, path, header, expected) in cases {
        let got = route_name(&gateway, method, host, path, *header).await;
        assert_eq!(&got, expected, "{method} {host}{path} {header:?}");
    }
}

#[tokio::test]
async fn unmatched_request_gets_404_no_route() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:0\nroutes:\n  - { match: { path: /only }, direct_response: { status: 204 } }\n";
    let gateway = TestGateway::start(text).await;
    let request = Request::get("/elsewhere").body(Empty::<Bytes>::new()).unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.header("proxy-status"), Some("weir; error=destination_not_found; details=\"no_route\""));
}

#[tokio::test]
async fn rewrites_and_header_edits_apply() {
    let mock = MockUpstream::start("a").await;
    let text = format!(
        r#"
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  backend:
    endpoints: ["{addr}"]
routes:
  - match: {{ path_prefix: /strip }}
    upstream: backend
    rewrite: {{ strip_prefix: true }}
  - match: {{ path_prefix: /old }}
    upstream: backend
    rewrite: {{ replace_prefix: /new, host: internal.svc }}
  - match: {{ path_regex: "^/users/([0-9]+)/profile$" }}
    upstream: backend
    rewrite: {{ path_regex: {{ pattern: "^/users/([0-9]+)/profile$", replacement: "/profiles/$1" }} }}
  - match: {{ path: /fixed }}
    upstream: backend
    rewrite: {{ path: /elsewhere }}
    request_headers:
      add: {{ x-added: one }}
      set: {{ x-env: prod }}
      remove: [x-remove-me]
    response_headers:
      set: {{ x-upstream: hidden }}
      add: {{ x-extra: "1" }}
      remove: [x-mock-gone]
"#,
        addr = mock.addr()
    );
    let gateway = TestGateway::start(&text).await;
    let send = |path: &'static str| {
        let request = Request::get(path)
            .header("host", "client.example")
            .header("x-env", "dev")
            .header("x-remove-me", "1")
            .header("x-mock-header", "x-mock-gone=1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        http1_request(gateway.addr(), request)
    };
    send("/strip/a/b?x=1").await.unwrap();
    send("/old/thing").await.unwrap();
    send("/users/42/profile").await.unwrap();
    let response = send("/fixed").await.unwrap();
    let received = mock.received();
    assert_eq!(received[0].uri, "/a/b?x=1");
    assert_eq!(received[1].uri, "/new/thing");
    assert_eq!(received[1].headers["host"], "internal.svc");
    assert_eq!(received[1].headers["x-forwarded-host"], "client.example");
    assert_eq!(received[2].uri, "/profiles/42");
    assert_eq!(received[3].uri, "/elsewhere");
    assert_eq!(received[3].headers["x-added"], "one");
    assert_eq!(received[3].headers["x-env"], "prod");
    assert!(!received[3].headers.contains_key("x-remove-me"));
    assert_eq!(response.header("x-upstream"), Some("hidden"));
    assert_eq!(response.header("x-extra"), Some("1"));
    assert!(!response.headers.contains_key("x-mock-gone"));
}

#[tokio::test]
async fn routes_can_be_bound_to_listeners() {
    let text = r#"
listeners:
  - { name: a, address: "127.0.0.1:0" }
  - { name: b, address: "127.0.0.1:0" }
routes:
  - { listeners: [a], direct_response: { status: 200, body: from-a } }
  - { listeners: [b], direct_response: { status: 200, body: from-b } }
"#;
    let gateway = TestGateway::start(text).await;
    for (listener, expected) in [("a", "from-a"), ("b", "from-b")] {
        let request = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
        let response = http1_request(gateway.listener(listener), request).await.unwrap();
        assert_eq!(response.text(), expected);
    }
}
