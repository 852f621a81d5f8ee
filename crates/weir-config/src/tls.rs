//! TLS on a listener, as users write it: the certificates (chosen by SNI), ALPN, the lowest TLS
//! version, session resumption and client-certificate verification. The files are read and checked
//! (readable, PEM, key matching certificate) when the data plane builds its TLS state, which
//! `weir validate` does too.

use std::path::PathBuf;

use serde::Deserialize;

use crate::file::{ConfigFile, Route};
use crate::validate::Checker;
use crate::values::Duration;

/// `listeners[].tls`: the listener terminates TLS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificates served, chosen by the name the client asks for (SNI).
    pub certificates: Vec<Certificate>,
    /// The certificate for clients that send no name, or a name no certificate covers: a
    /// certificate's `name`; the first certificate when absent.
    #[serde(default)]
    pub default_certificate: Option<String>,
    /// Application protocols offered through ALPN, most preferred first.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<Alpn>,
    /// The lowest TLS version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Sessions remembered for resumption (TLS 1.2 session ids; TLS 1.3 tickets when
    /// `session_tickets` is off); 0 turns the cache off.
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// Issue session tickets (TLS 1.2 tickets and TLS 1.3 resumption tickets).
    #[serde(default = "default_true")]
    pub session_tickets: bool,
    /// A client must finish the TLS handshake within this time.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Duration,
    /// Reload the certificates, keys and CA when their files change (the files' directories are watched).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Verify client certificates (mutual TLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// One certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// What `default_certificate`, logs and metrics call it; `certificates[i]` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// PEM file with the certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Names this certificate is served for: exact (`api.example.com`) or one-label wildcards
    /// (`*.example.com`). When empty, the DNS names in the certificate's subjectAltName.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// `tls.client_auth`: client certificates verified against a CA bundle.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM file with the CA certificates client certificates must chain to.
    pub ca: PathBuf,
    /// Refuse the handshake of a client without a valid certificate; when false, such clients are
    /// served without an identity (a certificate that is sent must still be valid).
    #[serde(default = "default_true")]
    pub required: bool,
}

/// `upstreams.NAME.tls`: weir connects to the upstream's endpoints over TLS.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// PEM file with the CA certificates the endpoints' certificates must chain to; the Mozilla
    /// roots built into weir when absent.
    pub ca: Option<PathBuf>,
    /// The name sent in SNI and checked against the endpoints' certificates; the first endpoint's
    /// host when absent.
    pub server_name: Option<String>,
    /// A client certificate for endpoints that verify their clients (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
}

/// A certificate weir presents to an upstream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// PEM file: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: its private key.
    pub key: PathBuf,
}

/// An ALPN protocol id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Alpn {
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "http/1.1")]
    Http11,
}

impl Alpn {
    /// The protocol id on the wire.
    pub fn id(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl ListenerTls {
    /// Every file the listener's TLS state is read from.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        let certificates = self.certificates.iter().flat_map(|c| [&c.cert, &c.key]);
        certificates.chain(self.client_auth.as_ref().map(|auth| &auth.ca))
    }

    /// A certificate's name: its own, or its place in the list.
    pub fn certificate_name(&self, index: usize) -> String {
        match &self.certificates[index].name {
            Some(name) => name.clone(),
            None => format!("certificates[{index}]"),
        }
    }
}

fn default_alpn() -> Vec<Alpn> {
    vec![Alpn::H2, Alpn::Http11]
}
fn default_session_cache() -> usize {
    // About 25 MB at the most; rustls evicts the oldest session past this count.
    65_536
}
fn default_true() -> bool {
    true
}
fn default_handshake_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

/// The checks serde cannot make; the files themselves are checked when the TLS state is built.
pub(crate) fn check(checker: &mut Checker, field: &str, tls: &ListenerTls) {
    if tls.certificates.is_empty() {
        checker.fail(format!("{field}.certificates"), "name at least one certificate (cert and key)".into());
    }
    let names: Vec<String> = (0..tls.certificates.len()).map(|i| tls.certificate_name(i)).collect();
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            checker.fail(format!("{field}.certificates[{index}].name"), format!("name {name:?} is used twice"));
        }
        for server_name in &tls.certificates[index].server_names {
            if let Err(why) = check_server_name(server_name) {
                checker.fail(format!("{field}.certificates[{index}].server_names"), format!("{server_name:?}: {why}"));
            }
        }
    }
    if let Some(default) = &tls.default_certificate
        && !names.contains(default)
    {
        let known = names.join(", ");
        checker.fail(
            format!("{field}.default_certificate"),
            format!("no certificate named {default:?}; certificates are: {known}"),
        );
    }
    if tls.alpn.is_empty() {
        checker.fail(format!("{field}.alpn"), "name at least one of h2, http/1.1".into());
    }
    if tls.handshake_timeout.0.is_zero() {
        checker.fail(format!("{field}.handshake_timeout"), "must be more than 0s".into());
    }
}

/// TLS to an upstream: a server name that is a DNS name or an IP address.
pub(crate) fn check_upstream(checker: &mut Checker, field: &str, upstream: &crate::upstream::Upstream) {
    let Some(tls) = &upstream.tls else { return };
    if let Some(name) = &tls.server_name
        && name.parse::<std::net::IpAddr>().is_err()
        && let Err(why) = check_server_name(name)
    {
        checker.fail(format!("{field}.tls.server_name"), format!("{name:?}: {why}"));
    }
}

/// A route matching on the client's SPIFFE ID needs a listener that verifies client certificates.
pub(crate) fn check_route_identity(checker: &mut Checker, file: &ConfigFile, field: &str, route: &Route) {
    let Some(id) = &route.matches.client_spiffe_id else { return };
    let field = format!("{field}.match.client_spiffe_id");
    if !id.starts_with("spiffe://") {
        checker.fail(field.clone(), format!("{id:?} is not a SPIFFE ID (spiffe://trust-domain/path)"));
    }
    let serves = |l: &&crate::file::Listener| route.listeners.is_empty() || route.listeners.contains(&l.name);
    let verifying =
        file.listeners.iter().filter(serves).any(|l| l.tls.as_ref().is_some_and(|t| t.client_auth.is_some()));
    if !verifying {
        checker.fail(field, "none of the route's listeners verifies client certificates (tls.client_auth)".into());
    }
}

/// A server name is a DNS name, or `*.` and a DNS name with at least two labels.
fn check_server_name(name: &str) -> Result<(), &'static str> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.contains('*') {
        return Err("a wildcard stands alone as the leftmost label, as in *.example.com");
    }
    if name.starts_with("*.") && !rest.contains('.') {
        return Err("a wildcard needs at least two labels after it, as in *.example.com");
    }
    let label_ok = |label: &str| {
        !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if rest.len() > 253 || !rest.split('.').all(label_ok) {
        return Err("not a DNS name (letters, digits and hyphens in dot-separated labels)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_server_name;

    #[test]
    fn server_names_are_dns_names_or_one_label_wildcards() {
        assert!(check_server_name("api.example.com").is_ok());
        assert!(check_server_name("*.example.com").is_ok());
        assert!(check_server_name("localhost").is_ok());
        assert!(check_server_name("*.com").is_err());
        assert!(check_server_name("a.*.example.com").is_err());
        assert!(check_server_name("**.example.com").is_err());
        assert!(check_server_name("bad name.com").is_err());
        assert!(check_server_name("").is_err());
    }
}
