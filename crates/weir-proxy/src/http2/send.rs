//! Writing a response on a stream: the head as HEADERS (and CONTINUATION), the body as DATA
//! within the client's flow-control windows, trailers as a last HEADERS.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;

use super::frame::{self, END_HEADERS, END_STREAM, HEADERS, Reason};
use super::hpack;
use super::request::is_connection_specific;
use super::shared::Shared;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a response's sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// The stream ended with the response.
    Complete,
    /// The stream was reset by the client, or the connection went.
    Reset,
    /// The response body failed: the stream was reset with INTERNAL_ERROR.
    Failed,
}

/// Sends `response` on stream `id`. Without a body after HEAD, 1xx, 204 and 304.
pub(super) async fn respond<B>(shared: &Shared, id: u32, response: Response<B>, head_request: bool) -> Sent
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodyless = head_request || status.is_informational() || matches!(status.as_u16(), 204 | 304);
    let end = bodyless || body.is_end_stream();
    // After HEAD the body says nothing of the length a GET would have.
    let length = (!head_request && !status.is_informational() && !matches!(status.as_u16(), 204 | 304))
        .then(|| body.size_hint().exact())
        .flatten();
    {
        let mut inner = shared.lock();
        let closed = inner.closed;
        let Some(stream) = inner.streams.get_mut(&id).filter(|_| !closed) else { return Sent::Reset };
        // Answered already: a `100 Continue` would come after the answer.
        stream.expect_continue = false;
        let max_frame = inner.max_send_frame;
        put_header_frames(&mut inner.out, id, end, max_frame, |block| {
            encode_head(status, &parts.headers, length, block)
        });
    }
    if end {
        return Sent::Complete;
    }
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let frame = match frame {
            None => return finish(shared, id),
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                let error: BoxError = error.into();
                tracing::debug!(stream = id, %error, "response body failed: resetting the stream");
                reset(shared, id, Reason::Internal);
                return Sent::Failed;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                let last = body.is_end_stream();
                let mut data = data;
                if poll_fn(|cx| poll_send_data(shared, id, &mut data, last, cx)).await.is_err() {
                    return Sent::Reset;
                }
                if last {
                    return Sent::Complete;
                }
            }
            Err(frame) => {
                let Ok(trailers) = frame.into_trailers() else { continue };
                let mut inner = shared.lock();
                let max_frame = inner.max_send_frame;
                put_header_frames(&mut inner.out, id, true, max_frame, |block| encode_fields(&trailers, block));
                return Sent::Complete;
            }
        }
    }
}

/// Ends the stream with an empty DATA frame.
fn finish(shared: &Shared, id: u32) -> Sent {
    let mut inner = shared.lock();
    if inner.closed {
        return Sent::Reset;
    }
    frame::put_data(&mut inner.out, id, &[], true);
    Sent::Complete
}

/// Queues RST_STREAM for stream `id`.
pub(super) fn reset(shared: &Shared, id: u32, reason: Reason) {
    frame::put_rst_stream(&mut shared.lock().out, id, reason);
}

/// Sends as much of `data` as the windows let through, as DATA frames; ready once all is queued.
fn poll_send_data(
    shared: &Shared,
    id: u32,
    data: &mut Bytes,
    last: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), ()>> {
    if data.is_empty() {
        if last {
            return Poll::Ready(if finish(shared, id) == Sent::Complete { Ok(()) } else { Err(()) });
        }
        return Poll::Ready(Ok(()));
    }
    loop {
        let room = match shared.poll_send_room(id, data.len(), cx) {
            Poll::Ready(Ok(room)) => room,
            Poll::Ready(Err(())) => return Poll::Ready(Err(())),
            Poll::Pending => return Poll::Pending,
        };
        let chunk = data.split_to(room);
        frame::put_data(&mut shared.lock().out, id, &chunk, last && data.is_empty());
        if data.is_empty() {
            return Poll::Ready(Ok(()));
        }
    }
}

/// Appends a header block written by `encode` as HEADERS (with CONTINUATION when it is longer
/// than a frame), encoding it in place.
fn put_header_frames(
    out: &mut BytesMut,
    id: u32,
    end_stream: bool,
    max_frame: usize,
    encode: impl FnOnce(&mut BytesMut),
) {
    let start = out.len();
    out.put_slice(&[0; frame::HEADER_LEN]);
    encode(out);
    let length = out.len() - start - frame::HEADER_LEN;
    let end = if end_stream { END_STREAM } else { 0 };
    if length <= max_frame {
        let head = frame::head_bytes(length, HEADERS, END_HEADERS | end, id);
        out[start..start + frame::HEADER_LEN].copy_from_slice(&head);
        return;
    }
    let block = out.split_off(start + frame::HEADER_LEN);
    out.truncate(start);
    frame::put_header_block(out, id, &block, end_stream, max_frame);
}

/// Queues `100 Continue` for stream `id`.
pub(super) fn put_continue(out: &mut BytesMut, id: u32) {
    put_header_frames(out, id, false, frame::MAX_FRAME_SIZE, |block| hpack::encode_status(100, block));
}

/// A response head as a header block: `:status`, the fields but those HTTP/2 forbids, `date`
/// when the response has none, `content-length` when the body's length is known and unsaid.
fn encode_head(status: StatusCode, headers: &HeaderMap, length: Option<u64>, block: &mut BytesMut) {
    hpack::encode_status(status.as_u16(), block);
    encode_fields(headers, block);
    if !headers.contains_key(DATE) {
        let mut date = Vec::with_capacity(32);
        crate::http1::push_date(&mut date);
        hpack::encode_field(&DATE, &date, block);
    }
    if let Some(length) = length.filter(|_| !headers.contains_key(CONTENT_LENGTH)) {
        let mut digits = Vec::with_capacity(20);
        weir_upstream::wire::push_number(length, 10, &mut digits);
        hpack::encode_field(&CONTENT_LENGTH, &digits, block);
    }
}

fn encode_fields(headers: &HeaderMap, block: &mut BytesMut) {
    for (name, value) in headers {
        if !is_connection_specific(name) {
            hpack::encode_field(name, value.as_bytes(), block);
        }
    }
}
