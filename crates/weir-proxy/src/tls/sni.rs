//! Choosing a listener's certificate by the server name a client asks for (SNI): an exact name
//! first, then a one-label wildcard (`*.example.com` covers `api.example.com`, not
//! `a.b.example.com` nor `example.com`), else the default certificate. Built whole at load time;
//! a lookup is at most two hash probes.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates of one listener by server name.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver answering `default` for every name until names are added.
    pub fn new(default: Arc<CertifiedKey>) -> SniResolver {
        SniResolver { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// Serves `key` for `name` (exact or `*.` wildcard). The first certificate to claim a name keeps it.
    pub fn add(&mut self, name: &str, key: &Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        let table = match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_string()),
            None => self.exact.entry(name),
        };
        table.or_insert_with(|| key.clone());
    }

    /// The certificate for a client that asked for `name` (already lower-case, as rustls gives it).
    pub fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else { return &self.default };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        let parent = name.split_once('.').map(|(_, parent)| parent);
        parent.and_then(|parent| self.wildcard.get(parent)).unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::crypto::aws_lc_rs::sign::any_supported_type;
    use rustls::sign::CertifiedKey;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::SniResolver;

    /// A key pair that stands for one certificate; the resolver never looks inside.
    fn key(marker: u8) -> Arc<CertifiedKey> {
        let pair = rcgen::KeyPair::generate().expect("key");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
        Arc::new(CertifiedKey::new(vec![CertificateDer::from(vec![marker])], any_supported_type(&der).expect("key")))
    }

    fn marker(key: &Arc<CertifiedKey>) -> u8 {
        key.cert[0].as_ref()[0]
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let mut resolver = SniResolver::new(key(0));
        resolver.add("api.example.com", &key(1));
        resolver.add("*.example.com", &key(2));
        resolver.add("API.other.org", &key(3));
        let picked = |name| marker(resolver.pick(name));
        assert_eq!(picked(Some("api.example.com")), 1);
        assert_eq!(picked(Some("www.example.com")), 2);
        assert_eq!(picked(Some("a.b.example.com")), 0, "a wildcard covers one label only");
        assert_eq!(picked(Some("example.com")), 0, "a wildcard does not cover its parent");
        assert_eq!(picked(Some("api.other.org")), 3, "names are matched without case");
        assert_eq!(picked(Some("unknown.net")), 0);
        assert_eq!(picked(None), 0);
    }

    #[test]
    fn the_first_certificate_to_claim_a_name_keeps_it() {
        let mut resolver = SniResolver::new(key(0));
        resolver.add("api.example.com", &key(1));
        resolver.add("api.example.com", &key(2));
        assert_eq!(marker(resolver.pick(Some("api.example.com"))), 1);
    }
}
