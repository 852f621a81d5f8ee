//! Building a listener's rustls `ServerConfig` from its settings: versions, the SNI resolver over
//! its certificates, client verification, ALPN, and the session cache and ticketer it shares with
//! every rebuild (so sessions and tickets from before a certificate reload still resume).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::version::{TLS12, TLS13};
use weir_config::{ListenerTls, TlsVersion};

use super::files::{load_certificate, load_roots};
use super::sni::SniResolver;
use super::{TlsError, crypto_provider};

/// What resumes sessions: kept for the listener's life, across rebuilds.
pub(super) struct Resumption {
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
}

impl Resumption {
    pub(super) fn new(tls: &ListenerTls, field: &str) -> Result<Resumption, TlsError> {
        let sessions: Arc<dyn StoresServerSessions> = match tls.session_cache {
            0 => Arc::new(NoServerSessionStorage {}),
            size => ServerSessionMemoryCache::new(size),
        };
        let ticketer = match tls.session_tickets {
            true => Some(rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|error| TlsError::Settings {
                field: format!("{field}.session_tickets"),
                what: format!("cannot make a ticket key: {error}"),
            })?),
            false => None,
        };
        Ok(Resumption { sessions, ticketer })
    }
}

/// Each certificate's name and expiry (Unix seconds), for the expiry gauge.
pub(super) type Expiries = Vec<(String, i64)>;

/// The rustls configuration for `tls`, reading every file it names.
pub(super) fn server_config(
    field: &str,
    tls: &ListenerTls,
    resumption: &Resumption,
) -> Result<(Arc<ServerConfig>, Expiries), TlsError> {
    let provider = crypto_provider().clone();
    let versions: &[_] = match tls.min_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let settings_error = |what: String| TlsError::Settings { field: field.into(), what };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| settings_error(error.to_string()))?;
    let builder = match client_verifier(field, tls)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let (resolver, expiries) = resolver(field, tls)?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = tls.alpn.iter().map(|alpn| alpn.id().to_vec()).collect();
    config.session_storage = resumption.sessions.clone();
    if let Some(ticketer) = &resumption.ticketer {
        config.ticketer = ticketer.clone();
    }
    Ok((Arc::new(config), expiries))
}

/// The certificates by server name, the default one for names none covers.
fn resolver(field: &str, tls: &ListenerTls) -> Result<(SniResolver, Expiries), TlsError> {
    let provider = crypto_provider();
    let mut loaded = Vec::with_capacity(tls.certificates.len());
    for (index, certificate) in tls.certificates.iter().enumerate() {
        let field = format!("{field}.certificates[{index}]");
        let certificate_loaded = load_certificate(&field, certificate, provider)?;
        if certificate.server_names.is_empty() && certificate_loaded.dns_names.is_empty() {
            let what = "the certificate lists no DNS names: name them in server_names".to_string();
            return Err(TlsError::invalid(&format!("{field}.cert"), &certificate.cert, what));
        }
        loaded.push(certificate_loaded);
    }
    let default = match &tls.default_certificate {
        Some(name) => (0..tls.certificates.len()).find(|i| tls.certificate_name(*i) == *name).unwrap_or(0),
        None => 0,
    };
    let mut resolver = SniResolver::new(loaded[default].key.clone());
    for (certificate, loaded) in tls.certificates.iter().zip(&loaded) {
        let names = match certificate.server_names.is_empty() {
            true => &loaded.dns_names,
            false => &certificate.server_names,
        };
        names.iter().for_each(|name| resolver.add(name, &loaded.key));
    }
    let expiries = loaded.iter().enumerate().map(|(i, loaded)| (tls.certificate_name(i), loaded.not_after)).collect();
    Ok((resolver, expiries))
}

fn client_verifier(field: &str, tls: &ListenerTls) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let Some(auth) = &tls.client_auth else { return Ok(None) };
    let ca_field = format!("{field}.client_auth.ca");
    let roots = load_roots(&ca_field, &auth.ca)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider().clone());
    let builder = if auth.required { builder } else { builder.allow_unauthenticated() };
    let verifier = builder.build().map_err(|error| TlsError::invalid(&ca_field, &auth.ca, error.to_string()))?;
    Ok(Some(verifier))
}

/// A hash of every file's content (unreadable files count as empty), to tell a change apart from
/// a watch event that changed nothing.
pub(super) fn files_hash(tls: &ListenerTls) -> u64 {
    let mut hasher = DefaultHasher::new();
    for path in tls.files() {
        path.hash(&mut hasher);
        std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}
