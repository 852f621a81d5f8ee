//! What a certificate says about its holder: the DNS names a server certificate covers (its default
//! server names), and a verified client's identity (subject, DNS and URI SANs, SPIFFE ID) for logs
//! and routing. Parsed once per certificate load or per mTLS connection, never per request.

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// A verified client certificate's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's distinguished name, such as `CN=billing, O=Example`.
    pub subject: String,
    /// DNS names in the subjectAltName.
    pub dns_names: Vec<String>,
    /// URIs in the subjectAltName.
    pub uris: Vec<String>,
    /// The first `spiffe://` URI SAN.
    pub spiffe_id: Option<String>,
}

impl ClientIdentity {
    /// The identity in a client's end-entity certificate; `None` when it cannot be parsed (rustls
    /// verified it, so that does not happen in practice).
    pub fn from_certificate(certificate: &CertificateDer<'_>) -> Option<ClientIdentity> {
        let (_, parsed) = X509Certificate::from_der(certificate.as_ref()).ok()?;
        let mut identity = ClientIdentity { subject: parsed.subject().to_string(), ..ClientIdentity::default() };
        for name in alt_names(&parsed) {
            match name {
                GeneralName::DNSName(dns) => identity.dns_names.push(dns.to_string()),
                GeneralName::URI(uri) => identity.uris.push(uri.to_string()),
                _ => {}
            }
        }
        identity.spiffe_id = identity.uris.iter().find(|uri| is_spiffe_id(uri)).cloned();
        Some(identity)
    }
}

/// The DNS names in a server certificate's subjectAltName (lower-case), and when it expires (Unix
/// seconds).
pub(crate) fn dns_names_and_expiry(certificate: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, parsed) = X509Certificate::from_der(certificate.as_ref())
        .map_err(|error| format!("the first certificate cannot be parsed: {error}"))?;
    let not_after = parsed.validity().not_after.timestamp();
    let names = alt_names(&parsed)
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    Ok((names, not_after))
}

fn alt_names<'a>(certificate: &'a X509Certificate<'_>) -> Vec<&'a GeneralName<'a>> {
    match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension.value.general_names.iter().collect(),
        _ => Vec::new(),
    }
}

/// `spiffe://trust-domain/path`, as SPIFFE defines its IDs (scheme and a non-empty trust domain).
fn is_spiffe_id(uri: &str) -> bool {
    uri.strip_prefix("spiffe://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_spiffe_id;

    #[test]
    fn spiffe_ids_have_the_scheme_and_a_trust_domain() {
        assert!(is_spiffe_id("spiffe://example.org/billing"));
        assert!(!is_spiffe_id("spiffe:///billing"));
        assert!(!is_spiffe_id("https://example.org/billing"));
    }
}
