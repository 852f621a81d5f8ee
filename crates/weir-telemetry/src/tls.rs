//! TLS on listeners: handshakes by result, resumed handshakes, negotiated versions, and certificate
//! reloads. A listener's handles are created when its TLS state is built, so a handshake only
//! increments atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a handshake failed; its label is [`HANDSHAKE_RESULTS`] at its discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within the handshake timeout.
    Timeout = 1,
    /// The client closed or reset the connection.
    Io,
    /// Client verification is required and the client sent no certificate.
    NoClientCertificate,
    /// The client's certificate did not verify.
    BadClientCertificate,
    /// No version, cipher suite or ALPN protocol in common.
    NoSharedProtocol,
    /// Anything else the TLS protocol refused.
    Protocol,
}

impl HandshakeFailure {
    /// The `result` label.
    pub fn label(self) -> &'static str {
        HANDSHAKE_RESULTS[self as usize]
    }
}

/// How a handshake ended, as labelled: `ok`, then each [`HandshakeFailure`] in discriminant order.
pub const HANDSHAKE_RESULTS: [&str; 7] =
    ["ok", "timeout", "io", "no_client_certificate", "bad_client_certificate", "no_shared_protocol", "protocol"];

/// The negotiated versions, as labelled.
pub const TLS_VERSIONS: [&str; 2] = ["1.2", "1.3"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    listener: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    listener: String,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    listener: String,
    certificate: String,
}

/// The TLS families, registered once per process.
pub(crate) struct TlsFamilies {
    handshakes: Family<ResultLabels, Counter>,
    resumed: Family<ListenerLabel, Counter>,
    versions: Family<VersionLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    expiry: Family<CertificateLabels, Gauge>,
}

impl TlsFamilies {
    pub(crate) fn register(registry: &mut Registry) -> TlsFamilies {
        let families = TlsFamilies {
            handshakes: Family::default(),
            resumed: Family::default(),
            versions: Family::default(),
            reloads: Family::default(),
            expiry: Family::default(),
        };
        registry.register(
            "tls_handshakes",
            "TLS handshakes on client connections, by listener and result",
            families.handshakes.clone(),
        );
        registry.register(
            "tls_handshakes_resumed",
            "TLS handshakes that resumed an earlier session (id or ticket), by listener",
            families.resumed.clone(),
        );
        registry.register(
            "tls_handshake_versions",
            "Completed TLS handshakes by listener and negotiated version",
            families.versions.clone(),
        );
        registry.register(
            "tls_certificate_reloads",
            "Reloads of a listener's certificates, keys and CA files, by result",
            families.reloads.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each certificate a listener serves expires (Unix time), as last loaded",
            families.expiry.clone(),
        );
        families
    }

    pub(crate) fn listener(&self, listener: &str) -> TlsMetrics {
        let result = |result| ResultLabels { listener: listener.into(), result };
        let version = |version| VersionLabels { listener: listener.into(), version };
        // One statement per handle: a family's read guard lives to the end of its statement.
        let handshakes = HANDSHAKE_RESULTS.map(|r| self.handshakes.get_or_create(&result(r)).clone());
        let resumed = self.resumed.get_or_create(&ListenerLabel { listener: listener.into() }).clone();
        let versions = TLS_VERSIONS.map(|v| self.versions.get_or_create(&version(v)).clone());
        let reload_success = self.reloads.get_or_create(&result("success")).clone();
        let reload_failure = self.reloads.get_or_create(&result("failure")).clone();
        let expiry = self.expiry.clone();
        let listener = listener.to_string();
        TlsMetrics { handshakes, resumed, versions, reload_success, reload_failure, expiry, listener }
    }
}

/// One listener's TLS handles.
#[derive(Clone, Debug)]
pub struct TlsMetrics {
    handshakes: [Counter; HANDSHAKE_RESULTS.len()],
    resumed: Counter,
    versions: [Counter; TLS_VERSIONS.len()],
    reload_success: Counter,
    reload_failure: Counter,
    expiry: Family<CertificateLabels, Gauge>,
    listener: String,
}

impl TlsMetrics {
    /// A handshake completed with `version` (an index into [`TLS_VERSIONS`]).
    pub fn handshake_ok(&self, version: usize, resumed: bool) {
        self.handshakes[0].inc();
        if let Some(counter) = self.versions.get(version) {
            counter.inc();
        }
        if resumed {
            self.resumed.inc();
        }
    }

    /// A handshake failed.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshakes[why as usize].inc();
    }

    /// A certificate was loaded that expires at `not_after` (Unix seconds). Called at load time.
    pub fn certificate_loaded(&self, certificate: &str, not_after: i64) {
        let labels = CertificateLabels { listener: self.listener.clone(), certificate: certificate.into() };
        self.expiry.get_or_create(&labels).set(not_after);
    }

    /// The certificate files were read again and put in service.
    pub fn reload_succeeded(&self) {
        self.reload_success.inc();
    }

    /// The certificate files could not be used; the previous ones keep serving.
    pub fn reload_failed(&self) {
        self.reload_failure.inc();
    }
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn handshakes_are_counted_by_result_version_and_resumption() {
        let metrics = Metrics::new();
        let tls = metrics.tls_listener("public");
        tls.handshake_ok(1, true);
        tls.handshake_ok(0, false);
        tls.handshake_failed(crate::HandshakeFailure::NoClientCertificate);
        tls.reload_failed();
        tls.certificate_loaded("api", 1_800_000_000);
        let text = metrics.encode();
        for line in [
            "weir_tls_handshakes_total{listener=\"public\",result=\"ok\"} 2",
            "weir_tls_handshakes_total{listener=\"public\",result=\"no_client_certificate\"} 1",
            "weir_tls_handshakes_resumed_total{listener=\"public\"} 1",
            "weir_tls_handshake_versions_total{listener=\"public\",version=\"1.3\"} 1",
            "weir_tls_certificate_reloads_total{listener=\"public\",result=\"failure\"} 1",
            "weir_tls_certificate_expiry_timestamp_seconds{listener=\"public\",certificate=\"api\"} 1800000000",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
