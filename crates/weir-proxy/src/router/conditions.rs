//! Conditions on a request besides host and path: methods, headers, query parameters, the client
//! certificate's SPIFFE ID on mutual-TLS listeners, and being a gRPC call.

use http::request::Parts;
use http::{HeaderName, Method};

/// A test on one header's or query parameter's value.
pub enum ValueTest {
    Exact(Box<str>),
    Regex(regex::Regex),
    Present,
    Absent,
}

impl ValueTest {
    fn passes<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            ValueTest::Present => values.next().is_some(),
            ValueTest::Absent => values.next().is_none(),
            ValueTest::Exact(expected) => values.any(|v| v == expected.as_bytes()),
            ValueTest::Regex(pattern) => values.any(|v| std::str::from_utf8(v).is_ok_and(|v| pattern.is_match(v))),
        }
    }
}

/// Everything a request must satisfy beyond host and path; empty lists are no condition.
#[derive(Default)]
pub struct Conditions {
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, ValueTest)>,
    /// Query parameters are compared as sent, without percent-decoding.
    pub query: Vec<(Box<str>, ValueTest)>,
    /// The verified client certificate's SPIFFE ID, exactly.
    pub client_spiffe_id: Option<Box<str>>,
    /// A gRPC call: `content-type: application/grpc`, alone or with a suffix (`+proto`).
    pub grpc: bool,
}

impl Conditions {
    /// How many conditions there are: routes with more are tried first among equal paths.
    pub fn count(&self) -> usize {
        usize::from(!self.methods.is_empty())
            + self.headers.len()
            + self.query.len()
            + usize::from(self.client_spiffe_id.is_some())
            + usize::from(self.grpc)
    }

    pub fn pass(&self, request: &Parts) -> bool {
        (self.methods.is_empty() || self.methods.contains(&request.method))
            && self
                .headers
                .iter()
                .all(|(name, test)| test.passes(request.headers.get_all(name).iter().map(|v| v.as_bytes())))
            && self.query.iter().all(|(name, test)| test.passes(query_values(request.uri.query(), name)))
            && self.client_spiffe_id.as_deref().is_none_or(|wanted| client_spiffe_id(request) == Some(wanted))
            && (!self.grpc || crate::stages::fault::is_grpc(&request.headers))
    }
}

/// The SPIFFE ID the connection's TLS handshake verified (the handler puts the connection's TLS
/// details in the request's extensions when a client certificate was verified).
fn client_spiffe_id(request: &Parts) -> Option<&str> {
    let tls = request.extensions.get::<std::sync::Arc<crate::tls::TlsInfo>>()?;
    tls.client.as_ref()?.spiffe_id.as_deref()
}

/// Values of the query parameter `name`, in order.
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    query.unwrap_or_default().split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value.as_bytes())
    })
}
