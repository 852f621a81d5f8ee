//! The DNS wire format, as much of it as discovery needs: an A or AAAA query for one name, and the
//! addresses in the answer section of a reply (RFC 1035 section 4). Every length in a reply is
//! checked before it is used; a malformed reply is an error, never a panic.

use std::net::IpAddr;

/// The record types discovery asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A = 1,
    Aaaa = 28,
}

const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the name {0:?} cannot be sent in a DNS query")]
    BadName(String),
    #[error("the reply is cut short")]
    Truncated,
    #[error("the reply answers another query")]
    WrongId,
    #[error("the server answered with error code {0}")]
    ServerError(u8),
}

/// A recursive query for `name`.
pub fn query(id: u16, name: &str, record: RecordType) -> Result<Vec<u8>, WireError> {
    let mut message = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&0x0100u16.to_be_bytes()); // recursion desired
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(WireError::BadName(name.to_string()));
        }
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&(record as u16).to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(message)
}

/// The addresses in a reply to query `id`. A name that does not exist has none.
pub fn addresses(reply: &[u8], id: u16) -> Result<Vec<IpAddr>, WireError> {
    let header = reply.get(..HEADER_LEN).ok_or(WireError::Truncated)?;
    if u16::from_be_bytes([header[0], header[1]]) != id || header[2] & 0x80 == 0 {
        return Err(WireError::WrongId);
    }
    match header[3] & 0x0f {
        0 => {}
        3 => return Ok(Vec::new()),
        code => return Err(WireError::ServerError(code)),
    }
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    let mut at = HEADER_LEN;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let fixed = reply.get(at..at + 10).ok_or(WireError::Truncated)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = reply.get(at + 10..at + 10 + length).ok_or(WireError::Truncated)?;
        match (kind, data.len()) {
            (1, 4) => found.push(IpAddr::from(<[u8; 4]>::try_from(data).expect("length checked"))),
            (28, 16) => found.push(IpAddr::from(<[u8; 16]>::try_from(data).expect("length checked"))),
            _ => {}
        }
        at += 10 + length;
    }
    Ok(found)
}

/// The offset just past a (possibly compressed) name starting at `at`.
fn skip_name(message: &[u8], mut at: usize) -> Result<usize, WireError> {
    loop {
        let length = *message.get(at).ok_or(WireError::Truncated)?;
        match length {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                return if at + 2 <= message.len() { Ok(at + 2) } else { Err(WireError::Truncated) };
            }
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query` with these answers, names compressed as a real server writes them.
    fn reply(query: &[u8], answers: &[(u16, &[u8])]) -> Vec<u8> {
        let mut message = query.to_vec();
        message[2] |= 0x80;
        message[7] = answers.len() as u8;
        for (kind, data) in answers {
            message.extend_from_slice(&[0xc0, 12]);
            message.extend_from_slice(&kind.to_be_bytes());
            message.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
            message.extend_from_slice(&(data.len() as u16).to_be_bytes());
            message.extend_from_slice(data);
        }
        message
    }

    #[test]
    fn answers_are_read_and_other_records_skipped() {
        let q = query(7, "api.internal", RecordType::A).unwrap();
        let r = reply(&q, &[(5, b"\x03foo\x00"), (1, &[10, 0, 0, 1]), (1, &[10, 0, 0, 2])]);
        assert_eq!(addresses(&r, 7).unwrap(), vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
        let q = query(8, "api.internal", RecordType::Aaaa).unwrap();
        let r = reply(&q, &[(28, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])]);
        assert_eq!(addresses(&r, 8).unwrap(), vec!["::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let q = query(9, "a.b", RecordType::A).unwrap();
        let r = reply(&q, &[(1, &[10, 0, 0, 1])]);
        assert_eq!(addresses(&r, 10), Err(WireError::WrongId));
        for cut in 0..r.len() {
            assert!(addresses(&r[..cut], 9).is_err(), "cut at {cut}");
        }
        let mut nxdomain = q.clone();
        nxdomain[2] |= 0x80;
        nxdomain[3] = 3;
        assert_eq!(addresses(&nxdomain, 9), Ok(vec![]));
        nxdomain[3] = 2;
        assert_eq!(addresses(&nxdomain, 9), Err(WireError::ServerError(2)));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(query(1, "a..b", RecordType::A).is_err());
        assert!(query(1, &"x".repeat(64), RecordType::A).is_err());
    }
}
