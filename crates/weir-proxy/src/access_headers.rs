//! The headers an access-log line carries: the request and response headers the configuration
//! names, captured when the request arrives and when its response head is ready. Credentials are
//! never captured: `authorization`, `proxy-authorization`, `cookie`, `set-cookie` and the configured
//! `secret_headers` are replaced by `[redacted]` before they reach the record, even when listed.

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use weir_config::AccessLog as AccessLogConfig;

/// The headers that are always secret.
const ALWAYS_SECRET: [HeaderName; 4] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE];

/// What a secret header's value is written as.
const REDACTED: HeaderValue = HeaderValue::from_static("[redacted]");

/// Captured headers: names in configuration order, values (or `[redacted]`) as they came.
pub type Captured = Vec<(HeaderName, HeaderValue)>;

/// The header names to capture, each with whether it is secret; decided once at start.
#[derive(Debug, Default)]
pub struct HeaderCapture {
    request: Box<[(HeaderName, bool)]>,
    response: Box<[(HeaderName, bool)]>,
}

impl HeaderCapture {
    pub fn new(config: &AccessLogConfig) -> HeaderCapture {
        let secret = |name: &HeaderName| {
            ALWAYS_SECRET.contains(name) || config.secret_headers.iter().any(|listed| listed.0 == name)
        };
        let plan = |names: &[weir_config::values::HeaderName]| {
            names.iter().map(|name| (name.0.clone(), secret(&name.0))).collect()
        };
        HeaderCapture { request: plan(&config.request_headers), response: plan(&config.response_headers) }
    }

    /// The configured request headers present in `headers` (no allocation when none are configured).
    pub fn request(&self, headers: &HeaderMap) -> Captured {
        capture(&self.request, headers)
    }

    /// The configured response headers present in `headers`.
    pub fn response(&self, headers: &HeaderMap) -> Captured {
        capture(&self.response, headers)
    }
}

/// The first value of each wanted header, or `[redacted]` for a secret one.
fn capture(wanted: &[(HeaderName, bool)], headers: &HeaderMap) -> Captured {
    wanted
        .iter()
        .filter_map(|(name, secret)| {
            let value = headers.get(name)?;
            Some((name.clone(), if *secret { REDACTED } else { value.clone() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(request: &[&str], secret: &[&str]) -> AccessLogConfig {
        let names = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect();
        AccessLogConfig {
            request_headers: names(request),
            response_headers: names(&["set-cookie", "x-cache"]),
            secret_headers: names(secret),
            ..AccessLogConfig::default()
        }
    }

    #[test]
    fn listed_headers_are_captured_and_secrets_redacted() {
        let capture =
            HeaderCapture::new(&config(&["user-agent", "authorization", "x-api-key", "x-absent"], &["x-api-key"]));
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        headers.insert("authorization", HeaderValue::from_static("Bearer hunter2"));
        headers.insert("x-api-key", HeaderValue::from_static("k-123"));
        let captured = capture.request(&headers);
        let text: Vec<(&str, &[u8])> = captured.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(
            text,
            [("user-agent", &b"curl/8"[..]), ("authorization", b"[redacted]"), ("x-api-key", b"[redacted]")]
        );
        let mut response = HeaderMap::new();
        response.insert("set-cookie", HeaderValue::from_static("session=s3cr3t"));
        let captured = capture.response(&response);
        assert_eq!(captured, [(SET_COOKIE, REDACTED)]);
    }

    #[test]
    fn nothing_configured_captures_nothing() {
        let capture = HeaderCapture::default();
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        assert!(capture.request(&headers).is_empty());
        assert_eq!(capture.request(&headers).capacity(), 0);
    }
}
