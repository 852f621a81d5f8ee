//! A throttled response body: the fault that makes a fast upstream look like one on a slow link.
//! Data goes out in small slices, each when the byte rate allows it; trailers follow the last.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{ResponseBody, ResponseBodyError};

/// A response body sent no faster than `rate` bytes per second.
pub struct Throttled {
    inner: ResponseBody,
    rate: u64,
    /// Bytes sent at once: a twentieth of a second's worth, at least one.
    slice: u64,
    pending: Bytes,
    started: Option<Instant>,
    sent: u64,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Throttled {
    pub fn new(inner: ResponseBody, rate: u64) -> Self {
        let rate = rate.max(1);
        Throttled {
            inner,
            rate,
            slice: (rate / 20).max(1),
            pending: Bytes::new(),
            started: None,
            sent: 0,
            waiting: None,
        }
    }

    /// The next slice of pending data, or the wait until it may go.
    fn next_slice(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        loop {
            if let Some(waiting) = &mut self.waiting {
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            let now = Instant::now();
            let started = *self.started.get_or_insert(now);
            let size = self.slice.min(self.pending.len() as u64);
            // The first slice goes at once; slice n goes when the rate has paid for the ones before.
            let due = started + std::time::Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            if due <= now {
                self.sent += size;
                return Poll::Ready(self.pending.split_to(size as usize));
            }
            self.waiting = Some(Box::pin(tokio::time::sleep_until(due)));
        }
    }
}

impl Body for Throttled {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            return this.next_slice(cx).map(|slice| Some(Ok(Frame::data(slice))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    this.pending = data;
                    if this.pending.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
                    }
                    this.next_slice(cx).map(|slice| Some(Ok(Frame::data(slice))))
                }
                Err(other) => Poll::Ready(Some(Ok(other))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bodies_go_out_at_the_rate() {
        let body = ResponseBody::full(Bytes::from(vec![7u8; 1000]));
        let started = Instant::now();
        let collected = Throttled::new(body, 100).collect().await.unwrap().to_bytes();
        let took = started.elapsed();
        assert_eq!(collected.len(), 1000);
        // 1000 bytes at 100 B/s, the first 5-byte slice at once: the last slice goes at 9.95 s.
        assert!(
            took >= std::time::Duration::from_millis(9_900) && took <= std::time::Duration::from_millis(10_000),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_rate_sends_small_bodies_at_once() {
        let body = ResponseBody::full(Bytes::from_static(b"hello"));
        let started = Instant::now();
        let collected = Throttled::new(body, 1 << 20).collect().await.unwrap().to_bytes();
        assert_eq!((collected.as_ref(), started.elapsed()), (&b"hello"[..], std::time::Duration::ZERO));
    }
}
