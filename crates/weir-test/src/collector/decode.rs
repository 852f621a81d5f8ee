//! A protobuf reader for OTLP export requests, written from the OTLP schema and independent of
//! weir's encoder, so a test that decodes what weir sent checks the encoding rather than repeating it.

use std::collections::BTreeMap;

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl AttributeValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttributeValue::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// One span of an export request, with the resource and scope it came under.
#[derive(Debug, Clone, Default)]
pub struct ExportedSpan {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub trace_state: String,
    pub parent_span_id: Vec<u8>,
    pub name: String,
    pub kind: u64,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttributeValue>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: u64,
    pub status_message: String,
    pub flags: u32,
    pub resource: BTreeMap<String, AttributeValue>,
    pub scope_name: String,
}

impl ExportedSpan {
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes.get(key)
    }
}

/// A field as read off the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads every field of one message; `Err` names what was malformed.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut bytes)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut bytes, 8)?.try_into().unwrap())),
            2 => {
                let len = varint(&mut bytes)? as usize;
                Value::Bytes(take(&mut bytes, len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut bytes, 4)?.try_into().unwrap())),
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than ten bytes".into())
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if bytes.len() < len {
        return Err(format!("field of {len} bytes, {} left", bytes.len()));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// The spans in an `ExportTraceServiceRequest`.
pub fn export_request(bytes: &[u8]) -> Result<Vec<ExportedSpan>, String> {
    let mut spans = Vec::new();
    for (number, value) in fields(bytes)? {
        if let (1, Value::Bytes(resource_spans)) = (number, value) {
            read_resource_spans(resource_spans, &mut spans)?;
        }
    }
    Ok(spans)
}

fn read_resource_spans(bytes: &[u8], spans: &mut Vec<ExportedSpan>) -> Result<(), String> {
    let mut resource = BTreeMap::new();
    let mut scopes = Vec::new();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Value::Bytes(message)) => read_attributes(message, 1, &mut resource)?,
            (2, Value::Bytes(message)) => scopes.push(message),
            _ => {}
        }
    }
    for scope_spans in scopes {
        let mut scope_name = String::new();
        let mut found = Vec::new();
        for (number, value) in fields(scope_spans)? {
            match (number, value) {
                (1, Value::Bytes(scope)) => scope_name = read_scope_name(scope)?,
                (2, Value::Bytes(span)) => found.push(read_span(span)?),
                _ => {}
            }
        }
        for mut span in found {
            span.resource = resource.clone();
            span.scope_name = scope_name.clone();
            spans.push(span);
        }
    }
    Ok(())
}

fn read_scope_name(bytes: &[u8]) -> Result<String, String> {
    for (number, value) in fields(bytes)? {
        if let (1, Value::Bytes(name)) = (number, value) {
            return text(name);
        }
    }
    Ok(String::new())
}

fn read_span(bytes: &[u8]) -> Result<ExportedSpan, String> {
    let mut span = ExportedSpan::default();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Value::Bytes(b)) => span.trace_id = b.to_vec(),
            (2, Value::Bytes(b)) => span.span_id = b.to_vec(),
            (3, Value::Bytes(b)) => span.trace_state = text(b)?,
            (4, Value::Bytes(b)) => span.parent_span_id = b.to_vec(),
            (5, Value::Bytes(b)) => span.name = text(b)?,
            (6, Value::Varint(kind)) => span.kind = kind,
            (7, Value::Fixed64(nanos)) => span.start_unix_nanos = nanos,
            (8, Value::Fixed64(nanos)) => span.end_unix_nanos = nanos,
            (9, Value::Bytes(kv)) => read_key_value(kv, &mut span.attributes)?,
            (15, Value::Bytes(status)) => read_status(status, &mut span)?,
            (16, Value::Fixed32(flags)) => span.flags = flags,
            (n, _) if n <= 16 => return Err(format!("span field {n} has an unexpected wire type")),
            _ => {}
        }
    }
    Ok(span)
}

fn read_status(bytes: &[u8], span: &mut ExportedSpan) -> Result<(), String> {
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (2, Value::Bytes(message)) => span.status_message = text(message)?,
            (3, Value::Varint(code)) => span.status_code = code,
            _ => return Err("unexpected field in Status".into()),
        }
    }
    Ok(())
}

/// The `KeyValue`s in field `field` of a message.
fn read_attributes(bytes: &[u8], field: u64, into: &mut BTreeMap<String, AttributeValue>) -> Result<(), String> {
    for (number, value) in fields(bytes)? {
        if let (n, Value::Bytes(kv)) = (number, value)
            && n == field
        {
            read_key_value(kv, into)?;
        }
    }
    Ok(())
}

fn read_key_value(bytes: &[u8], into: &mut BTreeMap<String, AttributeValue>) -> Result<(), String> {
    let (mut key, mut found) = (None, None);
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Value::Bytes(k)) => key = Some(text(k)?),
            (2, Value::Bytes(any)) => found = Some(read_any_value(any)?),
            _ => return Err("unexpected field in KeyValue".into()),
        }
    }
    let key = key.ok_or("a KeyValue without a key")?;
    if into.insert(key.clone(), found.ok_or("a KeyValue without a value")?).is_some() {
        return Err(format!("attribute {key} appears twice"));
    }
    Ok(())
}

fn read_any_value(bytes: &[u8]) -> Result<AttributeValue, String> {
    let mut found = fields(bytes)?;
    if found.len() != 1 {
        return Err("an AnyValue holds exactly one value".into());
    }
    Ok(match found.remove(0) {
        (1, Value::Bytes(s)) => AttributeValue::String(text(s)?),
        (2, Value::Varint(b)) => AttributeValue::Bool(b != 0),
        (3, Value::Varint(n)) => AttributeValue::Int(n as i64),
        (4, Value::Fixed64(bits)) => AttributeValue::Double(f64::from_bits(bits)),
        (n, _) => return Err(format!("unsupported AnyValue field {n}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hand_written_span() {
        // Span { trace_id: [1;16], name: "x", kind: 2, attributes: [{ "k": int 150 }], status: { code: 2 } }
        let mut span = vec![0x0a, 16];
        span.extend_from_slice(&[1; 16]);
        span.extend_from_slice(&[0x2a, 1, b'x', 0x30, 2]);
        span.extend_from_slice(&[0x4a, 8, 0x0a, 1, b'k', 0x12, 3, 0x18, 0x96, 0x01]);
        span.extend_from_slice(&[0x7a, 2, 0x18, 2]);
        let mut scope_spans = vec![0x12, span.len() as u8];
        scope_spans.extend_from_slice(&span);
        let mut resource_spans = vec![0x12, scope_spans.len() as u8];
        resource_spans.extend_from_slice(&scope_spans);
        let mut request = vec![0x0a, resource_spans.len() as u8];
        request.extend_from_slice(&resource_spans);
        let spans = export_request(&request).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id, [1; 16]);
        assert_eq!(spans[0].name, "x");
        assert_eq!(spans[0].kind, 2);
        assert_eq!(spans[0].attribute("k"), Some(&AttributeValue::Int(150)));
        assert_eq!(spans[0].status_code, 2);
        assert!(export_request(&[0x0a, 5, 1]).is_err(), "truncated");
    }
}
