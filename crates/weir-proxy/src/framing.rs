//! The rules of HTTP/1.1 request framing weir holds clients to, and what it calls each fault.
//!
//! Common parsers accept some framing a gateway must refuse (Content-Length next to
//! Transfer-Encoding, bare LF line endings, obsolete line folding). weir's HTTP/1.1 server checks a
//! request head as it parses it and a chunked body as it decodes it (`http1`), and refuses what
//! breaks a rule before any of the request reaches the gateway: the [`Violation`] names the fault in
//! the refusal's `proxy-status` details, the access log and the metrics.

/// A request head that was refused: the server hands the gateway a stand-in request carrying this,
/// and the gateway answers it with the refusal.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub Violation);

/// Why a request was refused for its framing or syntax (stable snake_case names via `as_str`, used as
/// metric and log reason detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Both Content-Length and Transfer-Encoding are present.
    ContentLengthWithTransferEncoding,
    /// A Content-Length value that is not 1*DIGIT, or overflows u64.
    InvalidContentLength,
    /// Content-Length fields with different values.
    ConflictingContentLength,
    /// Transfer-Encoding other than one field whose value is `chunked`, or any Transfer-Encoding on HTTP/1.0.
    UnsupportedTransferEncoding,
    /// A LF not preceded by CR.
    BareLineFeed,
    /// A CR not followed by LF.
    BareCarriageReturn,
    /// A request line that is not `token SP request-target SP HTTP/1.0|HTTP/1.1`.
    InvalidRequestLine,
    /// A field name that is empty, not a token, or followed by whitespace before the colon.
    InvalidHeaderName,
    /// A control character other than HTAB in a field value.
    InvalidHeaderValue,
    /// A field line starting with SP or HTAB.
    ObsoleteLineFolding,
    /// A malformed chunk-size line or missing CRLF after chunk data.
    InvalidChunk,
    /// A head (or trailer section) longer than `max_head_bytes`.
    HeadTooLarge,
    /// More than `max_headers` field lines.
    TooManyHeaders,
    /// A request-target longer than `max_uri_len`.
    UriTooLong,
    /// A request head took longer than `head_timeout` to arrive once it had begun.
    HeadTimeout,
    /// More than one Host field line (RFC 9112 section 3.2): which one names the target is ambiguous.
    DuplicateHost,
    /// An HTTP/1.1 request without a Host field line (RFC 9112 section 3.2).
    MissingHost,
}

impl Violation {
    /// The stable snake_case name, e.g. `content_length_with_transfer_encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Violation::InvalidContentLength => "invalid_content_length",
            Violation::ConflictingContentLength => "conflicting_content_length",
            Violation::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Violation::BareLineFeed => "bare_line_feed",
            Violation::BareCarriageReturn => "bare_carriage_return",
            Violation::InvalidRequestLine => "invalid_request_line",
            Violation::InvalidHeaderName => "invalid_header_name",
            Violation::InvalidHeaderValue => "invalid_header_value",
            Violation::ObsoleteLineFolding => "obsolete_line_folding",
            Violation::InvalidChunk => "invalid_chunk",
            Violation::HeadTooLarge => "head_too_large",
            Violation::TooManyHeaders => "too_many_headers",
            Violation::UriTooLong => "uri_too_long",
            Violation::HeadTimeout => "head_timeout",
            Violation::DuplicateHost => "duplicate_host",
            Violation::MissingHost => "missing_host",
        }
    }
}

/// A framing violation inside a message body: the request body fails with it, and the handler
/// finds the violation in the error's chain.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request framing: {}", .0.as_str())]
pub struct BodyFramingError(pub Violation);
