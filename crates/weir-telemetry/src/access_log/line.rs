//! One request's access-log line: what the request path hands over ([`Entry`], all borrowed) and how
//! it becomes one JSON object on one line.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

use super::fields::{Field, FieldSet};
use super::json;

/// What the log knows about one finished request. Optional fields are left out of the line when
/// they are `None`.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the request arrived.
    pub time: SystemTime,
    pub request_id: Option<&'a [u8]>,
    /// 32 hex digits from an incoming `traceparent`.
    pub trace_id: Option<&'a [u8]>,
    pub client: SocketAddr,
    pub method: Option<&'a str>,
    pub host: Option<&'a [u8]>,
    /// The request target's path, with its query if it had one.
    pub path_and_query: Option<&'a [u8]>,
    /// `HTTP/1.1`, `HTTP/2` and so on.
    pub protocol: &'static str,
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    pub duration: Duration,
    /// The upstream endpoint of the last attempt.
    pub upstream: Option<SocketAddr>,
    pub attempts: u32,
    pub route: Option<&'a str>,
    /// The refusal reason when weir answered itself.
    pub reason: Option<&'static str>,
    /// The faults injected into the request, like `delay,abort`.
    pub faults: Option<&'static str>,
    /// The client went away before the response was complete.
    pub aborted: bool,
    pub user_agent: Option<&'a [u8]>,
    /// The request and response headers the configuration asked for, secrets already redacted;
    /// left out of the line when empty.
    pub request_headers: &'a [(HeaderName, HeaderValue)],
    pub response_headers: &'a [(HeaderName, HeaderValue)],
    /// What the TLS handshake settled, on a TLS listener.
    pub tls: Option<TlsEntry<'a>>,
}

/// A TLS connection's part of a line.
#[derive(Debug, Clone, Copy)]
pub struct TlsEntry<'a> {
    /// `1.2` or `1.3`.
    pub version: &'static str,
    /// The server name the client asked for.
    pub sni: Option<&'a str>,
    /// The ALPN protocol agreed on.
    pub alpn: Option<&'static str>,
    /// The verified client certificate's subject (mutual TLS).
    pub client_subject: Option<&'a str>,
    /// The verified client certificate's `spiffe://` URI SAN.
    pub client_spiffe_id: Option<&'a str>,
}

/// How lines are written: which fields, and whether the path keeps its query.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    pub fields: FieldSet,
    pub query: bool,
}

impl LineFormat {
    /// Appends `entry` as one JSON object and a newline.
    pub fn write(&self, entry: &Entry, out: &mut Vec<u8>) {
        let mut line = Line { out, first: true, fields: self.fields };
        line.out.push(b'{');
        if line.key(Field::Time) {
            json::push_time(line.out, entry.time);
        }
        line.string(Field::RequestId, entry.request_id);
        line.string(Field::TraceId, entry.trace_id);
        if line.key(Field::Client) {
            json::push_addr(line.out, entry.client);
        }
        line.string(Field::Method, entry.method.map(str::as_bytes));
        line.string(Field::Host, entry.host);
        line.string(Field::Path, entry.path_and_query.map(|target| self.path(target)));
        line.string(Field::Protocol, Some(entry.protocol.as_bytes()));
        line.number(Field::Status, u64::from(entry.status));
        line.number(Field::BytesIn, entry.bytes_in);
        line.number(Field::BytesOut, entry.bytes_out);
        if line.key(Field::DurationMs) {
            json::push_millis(line.out, entry.duration);
        }
        if let Some(upstream) = entry.upstream
            && line.key(Field::Upstream)
        {
            json::push_addr(line.out, upstream);
        }
        line.number(Field::Attempts, u64::from(entry.attempts));
        line.string(Field::Route, entry.route.map(str::as_bytes));
        line.string(Field::Reason, entry.reason.map(str::as_bytes));
        line.string(Field::Faults, entry.faults.map(str::as_bytes));
        if line.key(Field::Aborted) {
            line.out.extend_from_slice(if entry.aborted { b"true" } else { b"false" });
        }
        line.string(Field::UserAgent, entry.user_agent);
        if let Some(tls) = &entry.tls {
            line.string(Field::TlsVersion, Some(tls.version.as_bytes()));
            line.string(Field::TlsSni, tls.sni.map(str::as_bytes));
            line.string(Field::Alpn, tls.alpn.map(str::as_bytes));
            line.string(Field::TlsClientSubject, tls.client_subject.map(str::as_bytes));
            line.string(Field::TlsClientSpiffeId, tls.client_spiffe_id.map(str::as_bytes));
        }
        line.headers("request_headers", entry.request_headers);
        line.headers("response_headers", entry.response_headers);
        line.out.extend_from_slice(b"}\n");
    }

    fn path<'a>(&self, path_and_query: &'a [u8]) -> &'a [u8] {
        match path_and_query.iter().position(|b| *b == b'?') {
            Some(query_at) if !self.query => &path_and_query[..query_at],
            _ => path_and_query,
        }
    }
}

/// Room for the longest key as written after an earlier one (`,"tls_client_spiffe_id":`).
const KEY_ROOM: usize = 24;

/// Each field's key as it is written after an earlier one, `,"key":`, at the front of a fixed-size
/// array, with its length. A key is written by appending the whole array (a few moves, no copy
/// call) and keeping its length.
static JSON_KEYS: [([u8; KEY_ROOM], usize); Field::ALL.len()] = json_keys();

const fn json_keys() -> [([u8; KEY_ROOM], usize); Field::ALL.len()] {
    let mut keys = [([0; KEY_ROOM], 0); Field::ALL.len()];
    let mut i = 0;
    while i < Field::ALL.len() {
        let name = Field::ALL[i].key().as_bytes();
        let len = name.len() + 4;
        assert!(len <= KEY_ROOM, "a field's key does not fit KEY_ROOM");
        let key = &mut keys[i].0;
        key[0] = b',';
        key[1] = b'"';
        let mut j = 0;
        while j < name.len() {
            key[2 + j] = name[j];
            j += 1;
        }
        key[len - 2] = b'"';
        key[len - 1] = b':';
        keys[i].1 = len;
        i += 1;
    }
    keys
}

/// A line being written: tracks the comma between members.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    fields: FieldSet,
}

impl Line<'_> {
    /// Writes `"key":` when the field is chosen; says whether it was.
    fn key(&mut self, field: Field) -> bool {
        if !self.fields.contains(field) {
            return false;
        }
        let (key, len) = &JSON_KEYS[field as usize];
        let start = self.out.len();
        self.out.extend_from_slice(key);
        self.out.truncate(start + len);
        if std::mem::take(&mut self.first) {
            // The first key goes without its comma.
            self.out.remove(start);
        }
        true
    }

    fn string(&mut self, field: Field, value: Option<&[u8]>) {
        if let Some(value) = value
            && self.key(field)
        {
            json::push_string(self.out, value);
        }
    }

    /// Writes `"key":{"name":"value",...}` when there are headers.
    fn headers(&mut self, key: &str, headers: &[(HeaderName, HeaderValue)]) {
        if headers.is_empty() {
            return;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json::push_string(self.out, key.as_bytes());
        self.out.extend_from_slice(b":{");
        for (i, (name, value)) in headers.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            json::push_string(self.out, name.as_str().as_bytes());
            self.out.push(b':');
            json::push_string(self.out, value.as_bytes());
        }
        self.out.push(b'}');
    }

    fn number(&mut self, field: Field, value: u64) {
        if self.key(field) {
            json::push_u64(self.out, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_795_374_853_007),
            request_id: Some(b"abc123"),
            trace_id: Some(b"4bf92f3577b34da6a3ce929d0e0e4736"),
            client: "192.0.2.7:51000".parse().unwrap(),
            method: Some("GET"),
            host: Some(b"api.example.com"),
            path_and_query: Some(b"/users/42?token=x"),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 1234,
            duration: Duration::from_micros(2_500),
            upstream: Some("10.0.0.1:8080".parse().unwrap()),
            attempts: 1,
            route: Some("users"),
            reason: None,
            faults: None,
            aborted: false,
            user_agent: Some(b"curl/8.5.0"),
            request_headers: &[],
            response_headers: &[],
            tls: None,
        }
    }

    fn line(format: LineFormat, entry: &Entry) -> String {
        let mut out = Vec::new();
        format.write(entry, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_every_field_in_order_without_the_query() {
        let format = LineFormat { fields: FieldSet::ALL, query: false };
        assert_eq!(
            line(format, &entry()),
            "{\"time\":\"2026-11-22T19:14:13.007Z\",\"request_id\":\"abc123\",\
             \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"client\":\"192.0.2.7:51000\",\"method\":\"GET\",\
             \"host\":\"api.example.com\",\"path\":\"/users/42\",\"protocol\":\"HTTP/1.1\",\"status\":200,\
             \"bytes_in\":0,\"bytes_out\":1234,\"duration_ms\":2.500,\"upstream\":\"10.0.0.1:8080\",\
             \"attempts\":1,\"route\":\"users\",\"aborted\":false,\"user_agent\":\"curl/8.5.0\"}\n"
        );
    }

    #[test]
    fn chosen_fields_only_and_the_query_when_asked() {
        let fields = [Field::Path, Field::Status, Field::Reason].into_iter().collect();
        let mut refused = entry();
        refused.reason = Some("no_route");
        refused.status = 404;
        let format = LineFormat { fields, query: true };
        assert_eq!(line(format, &refused), "{\"path\":\"/users/42?token=x\",\"status\":404,\"reason\":\"no_route\"}\n");
    }

    #[test]
    fn absent_values_leave_their_keys_out() {
        let mut bare = entry();
        (bare.trace_id, bare.host, bare.upstream, bare.route) = (None, None, None, None);
        (bare.request_id, bare.method, bare.path_and_query, bare.user_agent) = (None, None, None, None);
        let text = line(LineFormat { fields: FieldSet::ALL, query: false }, &bare);
        for key in
            ["request_id", "trace_id", "method", "host", "path", "upstream", "route", "reason", "faults", "user_agent"]
        {
            assert!(!text.contains(&format!("\"{key}\"")), "{key} in {text}");
        }
    }

    #[test]
    fn headers_are_objects_after_the_fields() {
        let request = [(HeaderName::from_static("x-tenant"), HeaderValue::from_static("acme\"co"))];
        let response = [(HeaderName::from_static("x-cache"), HeaderValue::from_static("hit"))];
        let mut with_headers = entry();
        (with_headers.request_headers, with_headers.response_headers) = (&request, &response);
        let fields = [Field::Status].into_iter().collect();
        assert_eq!(
            line(LineFormat { fields, query: false }, &with_headers),
            "{\"status\":200,\"request_headers\":{\"x-tenant\":\"acme\\\"co\"},\"response_headers\":{\"x-cache\":\"hit\"}}\n"
        );
        let none = [].into_iter().collect();
        assert_eq!(line(LineFormat { fields: none, query: false }, &with_headers).matches("headers").count(), 2);
    }

    #[test]
    fn a_tls_connection_adds_its_fields_after_the_others() {
        let mut secured = entry();
        secured.tls = Some(TlsEntry {
            version: "1.3",
            sni: Some("api.example.com"),
            alpn: Some("h2"),
            client_subject: Some("CN=billing"),
            client_spiffe_id: Some("spiffe://example.org/billing"),
        });
        let fields = [Field::Status, Field::TlsVersion, Field::TlsSni, Field::Alpn, Field::TlsClientSubject]
            .into_iter()
            .chain([Field::TlsClientSpiffeId])
            .collect();
        assert_eq!(
            line(LineFormat { fields, query: false }, &secured),
            "{\"status\":200,\"tls_version\":\"1.3\",\"tls_sni\":\"api.example.com\",\"alpn\":\"h2\",\
             \"tls_client_subject\":\"CN=billing\",\"tls_client_spiffe_id\":\"spiffe://example.org/billing\"}\n"
        );
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let mut hostile = entry();
        hostile.host = Some(b"evil\"}\n{\"status\":1\xff");
        hostile.path_and_query = Some(b"/a\\b\x01\"c\xc3");
        let text = line(LineFormat { fields: FieldSet::ALL, query: false }, &hostile);
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains(r#""host":"evil\"}\n{\"status\":1\ufffd""#), "{text}");
        assert!(text.contains(r#""path":"/a\\b\u0001\"c\ufffd""#), "{text}");
    }
}
