//! TLS to upstreams: one rustls client configuration per upstream (so every connection to its
//! endpoints shares one session cache and resumes), trusting its CA file or the Mozilla roots,
//! with a client certificate when the upstream verifies clients. Built with the upstream's cluster.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use weir_config::{Upstream, UpstreamTls as UpstreamTlsConfig};
use weir_upstream::{UpstreamProtocol, UpstreamTls};

use super::files::{load_certificate_chain, load_roots};
use super::{TlsError, crypto_provider};

/// The TLS client for `upstream`'s endpoints, if it has a `tls` section, offering by ALPN the
/// HTTP versions `protocol` allows.
pub fn client(name: &str, upstream: &Upstream, protocol: UpstreamProtocol) -> Result<Option<UpstreamTls>, TlsError> {
    let Some(tls) = &upstream.tls else { return Ok(None) };
    let field = format!("upstreams.{name}.tls");
    let server_name = server_name(&field, tls, upstream)?;
    let config = client_config(&field, tls, protocol)?;
    Ok(Some(UpstreamTls { connector: tokio_rustls::TlsConnector::from(config), server_name }))
}

fn client_config(
    field: &str,
    tls: &UpstreamTlsConfig,
    protocol: UpstreamProtocol,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &tls.ca {
        Some(ca) => load_roots(&format!("{field}.ca"), ca)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let builder = ClientConfig::builder_with_provider(crypto_provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Settings { field: field.into(), what: error.to_string() })?
        .with_root_certificates(roots);
    let mut config = match &tls.client_certificate {
        Some(certificate) => {
            let field = format!("{field}.client_certificate");
            let (chain, key) = load_certificate_chain(&field, &certificate.cert, &certificate.key)?;
            builder.with_client_auth_cert(chain, key).map_err(|error| {
                TlsError::invalid(&format!("{field}.key"), &certificate.key, format!("unusable: {error}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = protocol.alpn();
    Ok(Arc::new(config))
}

/// `server_name`, else the first endpoint's host (a DNS name or an IP address).
fn server_name(field: &str, tls: &UpstreamTlsConfig, upstream: &Upstream) -> Result<ServerName<'static>, TlsError> {
    let host = match (&tls.server_name, upstream.endpoints.first()) {
        (Some(name), _) => name.clone(),
        (None, Some(endpoint)) => endpoint.address.host.trim_start_matches('[').trim_end_matches(']').to_string(),
        (None, None) => String::new(),
    };
    ServerName::try_from(host.clone()).map_err(|_| TlsError::Settings {
        field: format!("{field}.server_name"),
        what: format!("{host:?} is neither a DNS name nor an IP address; set server_name"),
    })
}
