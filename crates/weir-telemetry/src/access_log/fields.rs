//! The fields an access-log line can hold, in the order they are written, and the set a
//! configuration chose.

/// One access-log field; its JSON key is [`Field::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Time,
    RequestId,
    TraceId,
    Client,
    Method,
    Host,
    Path,
    Protocol,
    Status,
    BytesIn,
    BytesOut,
    DurationMs,
    Upstream,
    Attempts,
    Route,
    Reason,
    Faults,
    Aborted,
    UserAgent,
    TlsVersion,
    TlsSni,
    Alpn,
    TlsClientSubject,
    TlsClientSpiffeId,
}

impl Field {
    /// Every field, in line order.
    pub const ALL: [Field; 24] = [
        Field::Time,
        Field::RequestId,
        Field::TraceId,
        Field::Client,
        Field::Method,
        Field::Host,
        Field::Path,
        Field::Protocol,
        Field::Status,
        Field::BytesIn,
        Field::BytesOut,
        Field::DurationMs,
        Field::Upstream,
        Field::Attempts,
        Field::Route,
        Field::Reason,
        Field::Faults,
        Field::Aborted,
        Field::UserAgent,
        Field::TlsVersion,
        Field::TlsSni,
        Field::Alpn,
        Field::TlsClientSubject,
        Field::TlsClientSpiffeId,
    ];

    /// The JSON key, also the name used in the configuration.
    pub const fn key(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
            Field::Client => "client",
            Field::Method => "method",
            Field::Host => "host",
            Field::Path => "path",
            Field::Protocol => "protocol",
            Field::Status => "status",
            Field::BytesIn => "bytes_in",
            Field::BytesOut => "bytes_out",
            Field::DurationMs => "duration_ms",
            Field::Upstream => "upstream",
            Field::Attempts => "attempts",
            Field::Route => "route",
            Field::Reason => "reason",
            Field::Faults => "faults",
            Field::Aborted => "aborted",
            Field::UserAgent => "user_agent",
            Field::TlsVersion => "tls_version",
            Field::TlsSni => "tls_sni",
            Field::Alpn => "alpn",
            Field::TlsClientSubject => "tls_client_subject",
            Field::TlsClientSpiffeId => "tls_client_spiffe_id",
        }
    }

    /// The field with this key.
    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.key() == key)
    }
}

/// A set of fields, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    pub const ALL: FieldSet = FieldSet((1 << Field::ALL.len()) - 1);

    pub fn contains(self, field: Field) -> bool {
        self.0 & (1 << field as u32) != 0
    }
}

impl FromIterator<Field> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Field>>(fields: I) -> Self {
        FieldSet(fields.into_iter().fold(0, |bits, field| bits | (1 << field as u32)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_sits_at_its_own_index() {
        // Tables indexed by `field as usize` (the line writer's prepared keys) rely on it.
        for (at, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(field as usize, at, "{field:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_sets_hold_what_was_chosen() {
        for field in Field::ALL {
            assert_eq!(Field::from_key(field.key()), Some(field));
            assert!(FieldSet::ALL.contains(field));
        }
        assert_eq!(Field::from_key("nope"), None);
        let set: FieldSet = [Field::Status, Field::Path].into_iter().collect();
        assert!(set.contains(Field::Status) && set.contains(Field::Path) && !set.contains(Field::Time));
    }
}
