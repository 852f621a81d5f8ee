//! Reading a listener's TLS files: certificate chains and private keys (checked to match), and CA
//! bundles for client verification. Every error names the field the file came from, so `weir
//! validate` and a failed reload say which file is wrong and why.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use weir_config::tls::Certificate;

use super::TlsError;

/// A certificate chain with its signing key, and the DNS names its subjectAltName lists.
pub(crate) struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub dns_names: Vec<String>,
    /// When the certificate expires, in Unix seconds.
    pub not_after: i64,
}

/// Reads `certificate`'s chain and key; `field` is its place in the configuration.
pub(crate) fn load_certificate(
    field: &str,
    certificate: &Certificate,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, TlsError> {
    let cert_field = format!("{field}.cert");
    let key_field = format!("{field}.key");
    let (chain, key) = load_certificate_chain(field, &certificate.cert, &certificate.key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsError::invalid(&key_field, &certificate.key, format!("unusable private key: {error}")))?;
    let (dns_names, not_after) = super::identity::dns_names_and_expiry(&chain[0])
        .map_err(|what| TlsError::invalid(&cert_field, &certificate.cert, what))?;
    let certified = CertifiedKey::new(chain, signing_key);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) = certified.keys_match() {
        let what = format!("does not match the certificate in {}", certificate.cert.display());
        return Err(TlsError::invalid(&key_field, &certificate.key, what));
    }
    Ok(LoadedCertificate { key: Arc::new(certified), dns_names, not_after })
}

/// Reads a certificate chain and its private key (not yet checked to match).
pub(crate) fn load_certificate_chain(
    field: &str,
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = read_certificates(&format!("{field}.cert"), cert)?;
    let key_field = format!("{field}.key");
    let key_pem = read(&key_field, key)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
        let what = match error {
            pem::Error::NoItemsFound => {
                "no private key in the file (want a PEM block: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .to_string()
            }
            other => format!("not a PEM private key: {other}"),
        };
        TlsError::invalid(&key_field, key, what)
    })?;
    Ok((chain, private_key))
}

/// Reads a CA bundle for verifying client certificates.
pub(crate) fn load_roots(field: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(field, path)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::invalid(field, path, format!("not a usable CA certificate: {error}")))?;
    }
    Ok(roots)
}

/// Every certificate in a PEM file, in order; at least one.
fn read_certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(field, path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::invalid(field, path, format!("not PEM: {error}")))?;
    if chain.is_empty() {
        return Err(TlsError::invalid(field, path, "no certificate in the file (want a PEM CERTIFICATE block)".into()));
    }
    Ok(chain)
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { field: field.into(), path: path.into(), source })
}
