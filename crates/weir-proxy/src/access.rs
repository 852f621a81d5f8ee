//! The access log on the request path. [`AccessLog::begin`] captures what the request head says
//! (cheap clones of shared bytes, no copies) when a request arrives; the handler adds the route and
//! the answer; the response body ([`crate::body::TimedBody`]) finishes the [`Record`] when it ends or
//! is dropped, and the line is written then. A record dropped before any answer (the client went away
//! first) is logged as status 499, aborted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request, Version};
use weir_config::{AccessLog as AccessLogConfig, AccessLogField};
use weir_telemetry::Metrics;
use weir_telemetry::access_log::{self, Destination, Entry, Field, FieldSet, LineFormat, LogWriter, Sampler, TlsEntry};
use weir_telemetry::trace_context::TraceId;
use weir_trace::Parent;
use weir_trace::RequestSpan;

use crate::access_headers::{Captured, HeaderCapture};
use crate::refusal::Refusal;
use crate::tls::TlsInfo;
use crate::upstream_notes::Attempts;

static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The status logged for a request whose client went away before it was answered (as nginx does).
const CLIENT_CLOSED: u16 = 499;

/// The process's access log: the line format, the sampler and the writer.
pub struct AccessLog {
    format: LineFormat,
    sampler: Sampler,
    always_log_errors: bool,
    writer: LogWriter,
    headers: HeaderCapture,
}

impl AccessLog {
    /// Opens the destination and starts the writer thread.
    pub fn start(config: &AccessLogConfig, metrics: &Metrics) -> std::io::Result<AccessLog> {
        let fields = match config.fields.as_slice() {
            [] => FieldSet::ALL,
            chosen => chosen.iter().map(|field| field_of(*field)).collect(),
        };
        let destination = config.path.clone().map_or(Destination::Stdout, Destination::File);
        Ok(AccessLog {
            format: LineFormat { fields, query: config.query },
            sampler: Sampler::new(config.sample_ratio, config.sample_seed.unwrap_or_else(Sampler::random_seed)),
            always_log_errors: config.always_log_errors,
            writer: LogWriter::start(destination, config.queue_lines, metrics.access_log_dropped())?,
            headers: HeaderCapture::new(config),
        })
    }

    /// Opens the log file again (after rotation renamed it), behind the lines already queued.
    pub fn reopen(&self) {
        self.writer.reopen();
    }

    /// Waits, blocking, until the lines logged so far are written.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.writer.flush(timeout)
    }

    /// Starts the record of a request that arrived at `started` from `client`. Boxed: the request's
    /// futures and then its response body carry it, and each of their moves would copy it whole.
    pub fn begin<B>(self: &Arc<Self>, request: &Request<B>, client: SocketAddr, started: Instant) -> Box<Record> {
        let uri = request.uri();
        let host = match uri.authority() {
            Some(authority) => Some(Host::Authority(authority.clone())),
            None => request.headers().get(http::header::HOST).cloned().map(Host::Header),
        };
        let trace_id = request.headers().get(&TRACEPARENT).and_then(|v| Parent::from_traceparent(v.as_bytes()));
        let trace_id = trace_id.map(|parent| TraceId::from_binary(&parent.trace_id));
        Box::new(Record {
            log: self.clone(),
            started,
            client,
            method: Some(request.method().clone()),
            host,
            target: uri.path_and_query().cloned(),
            version: request.version(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            request_headers: self.headers.request(request.headers()),
            response_headers: Captured::new(),
            trace_id,
            request_id: None,
            route: None,
            status: CLIENT_CLOSED,
            reason: None,
            attempts: Attempts::default(),
            tls: None,
            written: false,
        })
    }

    fn wants(&self, field: Field) -> bool {
        self.format.fields.contains(field)
    }
}

fn field_of(field: AccessLogField) -> Field {
    match field {
        AccessLogField::Time => Field::Time,
        AccessLogField::RequestId => Field::RequestId,
        AccessLogField::TraceId => Field::TraceId,
        AccessLogField::Client => Field::Client,
        AccessLogField::Method => Field::Method,
        AccessLogField::Host => Field::Host,
        AccessLogField::Path => Field::Path,
        AccessLogField::Protocol => Field::Protocol,
        AccessLogField::Status => Field::Status,
        AccessLogField::BytesIn => Field::BytesIn,
        AccessLogField::BytesOut => Field::BytesOut,
        AccessLogField::DurationMs => Field::DurationMs,
        AccessLogField::Upstream => Field::Upstream,
        AccessLogField::Attempts => Field::Attempts,
        AccessLogField::Route => Field::Route,
        AccessLogField::Reason => Field::Reason,
        AccessLogField::Faults => Field::Faults,
        AccessLogField::Aborted => Field::Aborted,
        AccessLogField::UserAgent => Field::UserAgent,
        AccessLogField::TlsVersion => Field::TlsVersion,
        AccessLogField::TlsSni => Field::TlsSni,
        AccessLogField::Alpn => Field::Alpn,
        AccessLogField::TlsClientSubject => Field::TlsClientSubject,
        AccessLogField::TlsClientSpiffeId => Field::TlsClientSpiffeId,
    }
}

/// The host as the client sent it: in the target (HTTP/2, absolute form) or in `Host`.
enum Host {
    Authority(Authority),
    Header(HeaderValue),
}

/// One request's access-log record, written once when it finishes or is dropped.
pub struct Record {
    log: Arc<AccessLog>,
    started: Instant,
    client: SocketAddr,
    method: Option<Method>,
    host: Option<Host>,
    target: Option<PathAndQuery>,
    version: Version,
    user_agent: Option<HeaderValue>,
    request_headers: Captured,
    response_headers: Captured,
    trace_id: Option<TraceId>,
    request_id: Option<HeaderValue>,
    route: Option<Arc<str>>,
    status: u16,
    reason: Option<&'static str>,
    attempts: Attempts,
    /// The connection's TLS details, shared with its other requests.
    tls: Option<Arc<TlsInfo>>,
    written: bool,
}

/// A TLS connection's part of its requests' lines.
fn tls_entry(info: &TlsInfo) -> TlsEntry<'_> {
    let client = info.client.as_ref();
    TlsEntry {
        version: info.version,
        sni: info.sni.as_deref(),
        alpn: info.alpn,
        client_subject: client.map(|client| client.subject.as_str()),
        client_spiffe_id: client.and_then(|client| client.spiffe_id.as_deref()),
    }
}

impl Record {
    /// Whether the request body's byte count is logged (so worth tallying).
    pub fn wants_bytes_in(&self) -> bool {
        self.log.wants(Field::BytesIn)
    }

    /// The request's head was refused: what the server parsed is a stand-in, not the client's
    /// head, so the line leaves method, host, path and user agent out.
    pub fn head_unread(&mut self) {
        (self.method, self.host, self.target, self.user_agent) = (None, None, None, None);
    }

    /// The request came over TLS.
    pub fn secured(&mut self, tls: &Arc<TlsInfo>) {
        self.tls = Some(tls.clone());
    }

    pub fn identified(&mut self, request_id: &HeaderValue) {
        self.request_id = Some(request_id.clone());
    }

    /// The trace the request's span is in, which tracing may have started.
    pub fn traced(&mut self, span: &RequestSpan) {
        if let Some(id) = span.trace_id() {
            self.trace_id = Some(TraceId::from_binary(&id));
        }
    }

    pub fn routed(&mut self, name: &Arc<str>) {
        self.route = Some(name.clone());
    }

    /// The response head is ready: its status, the refusal that made it if any, and the attempts.
    pub fn answered(&mut self, status: u16, refusal: Option<Refusal>, attempts: Attempts) {
        self.status = status;
        self.reason = refusal.map(Refusal::reason);
        self.attempts = attempts;
    }

    /// The response head as it goes to the client: captures the configured response headers.
    pub fn responded(&mut self, headers: &http::HeaderMap) {
        self.response_headers = self.log.headers.response(headers);
    }

    /// The response body ended (`complete`) or was cut short, after `bytes_out` bytes.
    pub fn finish(mut self, bytes_out: u64, complete: bool) {
        self.write(bytes_out, !complete);
    }

    fn write(&mut self, bytes_out: u64, aborted: bool) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let log = &self.log;
        let error = self.status >= 400 || self.reason.is_some() || aborted;
        if !(log.sampler.keep() || (error && log.always_log_errors)) {
            return;
        }
        let duration = self.started.elapsed();
        let entry = Entry {
            time: SystemTime::now().checked_sub(duration).unwrap_or_else(SystemTime::now),
            request_id: self.request_id.as_ref().map(HeaderValue::as_bytes),
            trace_id: self.trace_id.as_ref().map(TraceId::as_bytes),
            client: self.client,
            method: self.method.as_ref().map(Method::as_str),
            host: self.host.as_ref().map(|host| match host {
                Host::Authority(authority) => authority.as_str().as_bytes(),
                Host::Header(value) => value.as_bytes(),
            }),
            path_and_query: self.target.as_ref().map(|target| target.as_str().as_bytes()),
            protocol: protocol(self.version),
            status: self.status,
            bytes_in: self.attempts.body_bytes.as_ref().map_or(0, |tally| tally.load(Ordering::Relaxed)),
            bytes_out,
            duration,
            upstream: self.attempts.endpoint,
            attempts: self.attempts.count,
            route: self.route.as_deref(),
            reason: self.reason,
            faults: weir_telemetry::fault_kinds_name(self.attempts.faults),
            aborted,
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            request_headers: &self.request_headers,
            response_headers: &self.response_headers,
            tls: self.tls.as_deref().map(tls_entry),
        };
        access_log::log(&log.format, &entry, &log.writer);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.write(0, true);
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}
