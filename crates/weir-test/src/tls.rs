//! TLS for tests: a certificate authority made when the test runs (rcgen), server and client
//! certificates it signs, written to files for the gateway to read, and a rustls client that
//! connects with SNI and ALPN and sends requests over HTTP/1.1 or HTTP/2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::ClientSessionMemoryCache;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::client::{Exchange, collect};

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// A new CA whose subject's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for these DNS names (wildcards allowed).
    pub fn server(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with this common name and these URI SANs (a SPIFFE ID, say).
    pub fn client(&self, common_name: &str, uris: &[&str]) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.subject_alt_names =
            uris.iter().map(|uri| SanType::URI(uri.to_string().try_into().expect("URI SAN"))).collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Leaf {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`, each through a rename (as cert tooling
    /// does), and returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_atomically(&key, &self.key_pem);
        write_atomically(&cert, &self.cert_pem);
        (cert, key)
    }
}

/// Writes a file whole through a temporary file and a rename.
pub fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write temporary file");
    std::fs::rename(&temporary, path).expect("rename into place");
}

/// A client configuration trusting `ca`, offering `alpn`, with a client certificate if given,
/// and its own session cache (share the configuration to resume sessions).
pub fn client_config(ca: &TestCa, alpn: &[&str], identity: Option<&Leaf>) -> Arc<ClientConfig> {
    client_config_with(ca, alpn, identity, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] offering only these TLS versions.
pub fn client_config_with(
    ca: &TestCa,
    alpn: &[&str],
    identity: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("trust the test CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
            builder.with_client_auth_cert(vec![leaf.der.clone()], key).expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.resumption = rustls::client::Resumption::store(Arc::new(ClientSessionMemoryCache::new(64)));
    Arc::new(config)
}

/// Connects and completes a handshake asking for `server_name`. Under TLS 1.3 the server checks a
/// client certificate after the client has finished, so a refused client sees it on first use.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    config: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    TlsConnector::from(config.clone()).connect(name, stream).await
}

/// The certificate the server presented on a connection.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("server certificate")[0].clone()
}

/// Sends one request on a connected TLS stream, over HTTP/2 when ALPN agreed on `h2`.
pub async fn tls_request(stream: TlsStream<TcpStream>, mut request: Request<String>) -> Result<Exchange, hyper::Error> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if !h2 {
        crate::client::with_host(&mut request, stream.get_ref().0.peer_addr().expect("a connected stream has a peer"));
    }
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    };
    collect(response).await
}

/// A client configuration that accepts any server certificate, to see which one a server picks
/// for a name no certificate covers (ALPN `http/1.1`).
pub fn accept_any_server_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Checks signatures but not the certificate's names or issuer.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An upstream that speaks HTTP/1.1 over TLS: answers every request 200 `secure`, and records the
/// server name each connection asked for and the subject of the client certificate it showed.
pub struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<SeenConnection>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`TlsUpstream`] saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenConnection {
    pub server_name: Option<String>,
    /// Whether the client presented a certificate (verified against `client_ca`).
    pub client_certificate: bool,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
    /// The protocol ALPN picked, if any.
    pub alpn: Option<String>,
}

impl TlsUpstream {
    /// Serves `leaf`; with `client_ca`, requires client certificates it issued.
    pub async fn start(leaf: &Leaf, client_ca: Option<&TestCa>) -> TlsUpstream {
        TlsUpstream::start_with(leaf, client_ca, &[]).await
    }

    /// Serves `leaf` offering `alpn` (`h2`, `http/1.1`): keeps connections open and answers each
    /// request `secure over HTTP/2.0` (or `HTTP/1.1`). Without ALPN, answers as [`TlsUpstream::start`].
    pub async fn start_with(leaf: &Leaf, client_ca: Option<&TestCa>, alpn: &[&str]) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der()).expect("client CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
        let mut config = builder.with_single_cert(vec![leaf.der.clone()], key).expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, acceptor, seen.clone()));
        TlsUpstream { addr, seen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connections that completed a handshake so far.
    pub fn seen(&self) -> Vec<SeenConnection> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<std::sync::Mutex<Vec<SeenConnection>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let connection = stream.get_ref().1;
            seen.lock().expect("seen").push(SeenConnection {
                server_name: connection.server_name().map(str::to_string),
                client_certificate: connection.peer_certificates().is_some_and(|chain| !chain.is_empty()),
                resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                alpn: connection.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            });
            if connection.alpn_protocol().is_some() {
                return serve_versions(stream).await;
            }
            // Every connection serves one request, so the next request makes a new handshake.
            let service = hyper::service::service_fn(|_request: http::Request<hyper::body::Incoming>| async {
                let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from("secure")));
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Serves HTTP/1.1 or HTTP/2 as ALPN picked, answering each request with its version.
async fn serve_versions(stream: tokio_rustls::server::TlsStream<TcpStream>) {
    let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
        let text = format!("secure over {:?}", request.version());
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text))))
    });
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
}
