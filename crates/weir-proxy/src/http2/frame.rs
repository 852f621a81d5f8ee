//! HTTP/2 frames (RFC 9113 section 4 and 6): the nine-byte header read off the wire, and the
//! frames the server writes.

use bytes::{BufMut, BytesMut};

pub(super) const HEADER_LEN: usize = 9;
/// The largest frame payload weir accepts: the protocol's initial value, which it never raises.
pub(super) const MAX_FRAME_SIZE: usize = 16_384;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

pub(super) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(super) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub(super) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The largest flow-control window (RFC 9113 section 6.9.1).
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Every window's size before SETTINGS or WINDOW_UPDATE change it.
pub(super) const DEFAULT_WINDOW: i64 = 65_535;

/// An error code of RST_STREAM and GOAWAY (RFC 9113 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Reason {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

impl Reason {
    /// The name RFC 9113 gives the code, for logs and errors.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NoError => "NO_ERROR",
            Reason::Protocol => "PROTOCOL_ERROR",
            Reason::Internal => "INTERNAL_ERROR",
            Reason::FlowControl => "FLOW_CONTROL_ERROR",
            Reason::StreamClosed => "STREAM_CLOSED",
            Reason::FrameSize => "FRAME_SIZE_ERROR",
            Reason::RefusedStream => "REFUSED_STREAM",
            Reason::Cancel => "CANCEL",
            Reason::Compression => "COMPRESSION_ERROR",
            Reason::EnhanceYourCalm => "ENHANCE_YOUR_CALM",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) length: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl Head {
    /// The header at the start of `bytes`, which holds at least [`HEADER_LEN`] bytes.
    pub(super) fn parse(bytes: &[u8]) -> Head {
        let length = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        Head { length, kind: bytes[3], flags: bytes[4], stream }
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A frame header's bytes.
pub(super) fn head_bytes(length: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(length < 1 << 24);
    let [_, l0, l1, l2] = (length as u32).to_be_bytes();
    let [s0, s1, s2, s3] = stream.to_be_bytes();
    [l0, l1, l2, kind, flags, s0, s1, s2, s3]
}

/// Appends a frame header.
pub(super) fn put_head(out: &mut BytesMut, length: usize, kind: u8, flags: u8, stream: u32) {
    out.reserve(HEADER_LEN + length);
    out.put_slice(&head_bytes(length, kind, flags, stream));
}

pub(super) fn put_settings(out: &mut BytesMut, settings: &[(u16, u32)]) {
    put_head(out, settings.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in settings {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub(super) fn put_settings_ack(out: &mut BytesMut) {
    put_head(out, 0, SETTINGS, ACK, 0);
}

pub(super) fn put_ping_ack(out: &mut BytesMut, payload: &[u8]) {
    put_head(out, 8, PING, ACK, 0);
    out.put_slice(payload);
}

pub(super) fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment);
}

pub(super) fn put_rst_stream(out: &mut BytesMut, stream: u32, reason: Reason) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(reason as u32);
}

pub(super) fn put_goaway(out: &mut BytesMut, last_stream: u32, reason: Reason) {
    put_head(out, 8, GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(reason as u32);
}

pub(super) fn put_data(out: &mut BytesMut, stream: u32, data: &[u8], end_stream: bool) {
    put_head(out, data.len(), DATA, if end_stream { END_STREAM } else { 0 }, stream);
    out.put_slice(data);
}

/// Appends an encoded header block as HEADERS and as many CONTINUATION frames as `max_frame` asks.
pub(super) fn put_header_block(out: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame).peekable();
    let end = if end_stream { END_STREAM } else { 0 };
    let first = chunks.next().unwrap_or(&[]);
    let mut kind = HEADERS;
    let mut flags = end;
    let mut chunk = first;
    loop {
        let last = chunks.peek().is_none();
        put_head(out, chunk.len(), kind, flags | if last { END_HEADERS } else { 0 }, stream);
        out.put_slice(chunk);
        match chunks.next() {
            Some(next) => chunk = next,
            None => break,
        }
        kind = CONTINUATION;
        flags = 0;
    }
}

/// Removes the padding of a PADDED frame's payload; `None` when the pad length runs past it.
pub(super) fn strip_padding(payload: &[u8]) -> Option<(usize, usize)> {
    let (&pad, _) = payload.split_first()?;
    let pad = usize::from(pad);
    (pad < payload.len()).then(|| (1, payload.len() - pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips() {
        let mut out = BytesMut::new();
        put_head(&mut out, 0x01_02_03, HEADERS, END_HEADERS | END_STREAM, 0x7fff_fffe);
        assert_eq!(out.len(), HEADER_LEN);
        let head = Head::parse(&out);
        assert_eq!(head, Head { length: 0x01_02_03, kind: HEADERS, flags: 0x5, stream: 0x7fff_fffe });
    }

    #[test]
    fn the_reserved_bit_of_a_stream_id_is_ignored() {
        let head = Head::parse(&[0, 0, 4, 8, 0, 0x80, 0, 0, 3]);
        assert_eq!(head.stream, 3);
    }

    #[test]
    fn a_long_header_block_is_split_into_continuations() {
        let block = vec![7u8; 40];
        let mut out = BytesMut::new();
        put_header_block(&mut out, 5, &block, true, 16);
        let first = Head::parse(&out[..9]);
        assert_eq!((first.kind, first.flags, first.length), (HEADERS, END_STREAM, 16));
        let second = Head::parse(&out[25..34]);
        assert_eq!((second.kind, second.flags, second.length), (CONTINUATION, 0, 16));
        let third = Head::parse(&out[50..59]);
        assert_eq!((third.kind, third.flags, third.length), (CONTINUATION, END_HEADERS, 8));
        assert_eq!(out.len(), 3 * 9 + 40);
    }

    #[test]
    fn an_empty_header_block_is_one_frame() {
        let mut out = BytesMut::new();
        put_header_block(&mut out, 1, &[], false, 16);
        assert_eq!(Head::parse(&out), Head { length: 0, kind: HEADERS, flags: END_HEADERS, stream: 1 });
    }

    #[test]
    fn padding_is_stripped_or_refused() {
        assert_eq!(strip_padding(&[2, b'a', b'b', 0, 0]), Some((1, 3)));
        assert_eq!(strip_padding(&[0]), Some((1, 1)));
        assert_eq!(strip_padding(&[4, 0, 0, 0]), None);
        assert_eq!(strip_padding(&[]), None);
    }
}
