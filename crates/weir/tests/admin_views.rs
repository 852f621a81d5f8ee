//! The admin API's `/routes` and `/config`: routes as weir runs them, with defaults filled in, and
//! the configuration with its secrets redacted, both behind the bearer token.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use serde_json::Value;
use weir_test::{Exchange, TestGateway, http1_request};

const TOKEN: &str = "0123456789abcdef-admin-secret";

async fn admin_get(gateway: &TestGateway, path: &str, token: Option<&str>) -> Exchange {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    http1_request(gateway.admin(), request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
}

fn config() -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\", token: \"{TOKEN}\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n  - {{ name: internal, address: \"127.0.0.1:0\" }}\nupstreams:\n  users:\n    endpoints: [\"127.0.0.1:9\", {{ address: \"127.0.0.1:10\", weight: 3 }}]\nroutes:\n  - name: users\n    listeners: [public]\n    match: {{ host: [api.example.com, \"*.example.org\"], path_template: \"/users/{{id}}\", method: [get], headers: [{{ name: x-team, exact: core }}] }}\n    upstream: users\n    timeout: 2s\n    max_body_size: 1KiB\n  - direct_response: {{ status: 404 }}\n"
    )
}

#[tokio::test]
async fn routes_show_each_route_as_it_runs() {
    let gateway = TestGateway::start(&config()).await;
    assert_eq!(admin_get(&gateway, "/routes", None).await.status, 401);
    let answer = admin_get(&gateway, "/routes", Some(TOKEN)).await;
    assert_eq!((answer.status.as_u16(), answer.header("content-type")), (200, Some("application/json")));
    let routes: Value = serde_json::from_slice(&answer.body).unwrap();
    let (users, fallback) = (&routes["routes"][0], &routes["routes"][1]);
    assert_eq!(users["name"], "users");
    assert_eq!(users["listeners"], serde_json::json!(["public"]));
    assert_eq!(users["match"]["host"], serde_json::json!(["api.example.com", "*.example.org"]));
    assert_eq!(users["match"]["path_template"], "/users/{id}");
    assert_eq!(users["match"]["method"], serde_json::json!(["GET"]));
    assert_eq!(users["match"]["headers"], serde_json::json!([{ "name": "x-team", "exact": "core" }]));
    assert_eq!((users["timeout_ms"].as_u64(), users["max_body_size"].as_u64()), (Some(2000), Some(1024)));
    assert_eq!(users["upstream"]["name"], "users");
    assert_eq!(users["upstream"]["endpoints"][1], serde_json::json!({ "address": "127.0.0.1:10", "weight": 3 }));
    // Defaults are filled in: every listener, any host, the whole path space, the default timeout.
    assert_eq!(fallback["name"], "routes[1]");
    assert_eq!(fallback["listeners"], serde_json::json!(["public", "internal"]));
    assert_eq!(fallback["match"], serde_json::json!({ "host": ["*"], "path_prefix": "/" }));
    assert_eq!((fallback["timeout_ms"].as_u64(), fallback["max_body_size"].is_null()), (Some(15_000), true));
    assert_eq!(fallback["direct_response"]["status"], 404);
}

#[tokio::test]
async fn config_is_the_file_with_its_secrets_redacted() {
    let gateway = TestGateway::start(&config()).await;
    assert_eq!(admin_get(&gateway, "/config", None).await.status, 401);
    let answer = admin_get(&gateway, "/config", Some(TOKEN)).await;
    assert_eq!(answer.status, 200);
    assert!(!answer.text().contains(TOKEN), "{}", answer.text());
    let config: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(config["admin"]["token"], "[redacted]");
    assert_eq!(config["admin"]["address"], "127.0.0.1:0");
    assert_eq!(config["routes"][0]["timeout"], "2s");
    assert_eq!(config["upstreams"]["users"]["endpoints"][1]["weight"], 3);
}
