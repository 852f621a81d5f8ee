//! HTTP/1.1 to clients, spoken by weir itself.
//!
//! One task per connection runs the exchange loop: wait for a request (bounded by the listener's
//! idle timeout, cut short by a drain), parse its head, hand the request to the gateway, write the
//! response, and go round again while both sides keep the connection. The request's body is read
//! off the socket by the connection as the request asks for it (`body.rs`), both while the gateway
//! works on the request and while the response is written, so a request and its response can
//! stream at the same time.
//!
//! Between requests a connection holds no buffer: it waits for bytes with a scratch array on the
//! stack (`io.rs`). A request head is checked as it is parsed (`head.rs`) and a chunked body as it
//! is decoded (`chunks.rs`): ambiguous or malformed framing is refused, with the [`Violation`] that
//! names it, before any of the request reaches the gateway.

mod body;
mod chunks;
mod date;
mod head;
mod io;
#[cfg(test)]
mod random_tests;
mod response;
mod switch;
mod syntax;
#[cfg(test)]
pub(crate) mod tests;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use weir_upstream::wire::ChunkLimits;

pub use body::Http1Body;
pub use switch::{ClientStream, ClientSwitch, Rewound, Switched};

use crate::client_body::ClientBody;
use crate::framing::{Refused, Violation};
use crate::proxy::tunnel::TunnelRequested;
use body::{Feed, FeedState};
pub(crate) use date::push_now as push_date;
pub(crate) use head::HeadLimits;
use head::{BodyFraming, Head, Progress};
pub(crate) use io::ConnIo;
use response::{Asked, Sending};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Headers weir adds to a request on its way upstream, room for which is made when its head is
/// parsed (forwarding headers, the request id, `traceparent`).
pub(crate) const ADDED_HEADERS: usize = 6;
/// Body bytes read and thrown away so a connection can carry the next request when a response came
/// before the request's body was read; a longer body closes the connection.
const DISCARD_BUDGET: u64 = 64 * 1024;
/// The first line of an HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// How a listener's HTTP/1.1 connections are served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http1Settings {
    /// How long a connection may wait for the first byte of its next request, and how long a
    /// response write may wait for the client to take bytes.
    pub(crate) idle_timeout: Duration,
    /// How long a request head may take to arrive from its first byte to its last; also how long
    /// a new connection may take to send its first byte.
    pub(crate) head_timeout: Duration,
    /// What a request head may hold; the byte and field limits also bound a chunked body's
    /// chunk-size lines and trailer section.
    pub(crate) head: HeadLimits,
    /// A connection that opens with the HTTP/2 preface is handed to the HTTP/2 server (unless
    /// ALPN settled HTTP/1.1).
    pub(crate) h2c: bool,
    /// A connection that has served a request and waited this long for the next is handed back to
    /// be parked ([`Ended::Park`]); shorter than `idle_timeout`, which then runs on in the parking.
    pub(crate) park_after: Option<Duration>,
}

impl Http1Settings {
    /// What a request's chunked body may hold.
    fn chunk_limits(&self) -> ChunkLimits {
        let (bytes, fields) = (self.head.max_head_bytes as usize, self.head.max_headers as usize);
        ChunkLimits { line: bytes, trailer_bytes: bytes, trailers: fields }
    }
}

/// How a connection's HTTP/1.1 service ended: what [`hand_over`] does with the connection.
pub(crate) enum Ended {
    /// The connection is done.
    Closed,
    /// The client opened with the HTTP/2 preface.
    Http2,
    /// A `101` is out: the connection goes to whoever asked for the switch.
    Switch(oneshot::Sender<Switched>),
    /// The connection has waited `park_after` for its next request, with nothing buffered: it is
    /// the caller's to park.
    Park,
}

/// Hands a connection on as its HTTP/1.1 service ended: to a protocol switch (then `None`), or,
/// after an HTTP/2 preface, back to the caller with what was read of it.
pub(crate) fn hand_over<S: ClientStream + 'static>(io: ConnIo<S>, ended: Ended) -> Option<Rewound<S>> {
    match ended {
        Ended::Closed | Ended::Park => None,
        Ended::Http2 => Some(io.into_rewound()),
        Ended::Switch(switch) => {
            let (stream, read) = io.into_parts();
            let _ = switch.send(Rewound::new(Box::new(stream), read));
            None
        }
    }
}

/// What the gateway answers a request with; `Err` resets the connection (an injected fault).
pub(crate) type Answer<B> = Result<Response<B>, crate::handler::FaultReset>;

/// What a connection's requests are handed to.
pub(crate) trait Service {
    type Body: Body<Data = Bytes> + Unpin;

    /// Answers a request. One whose head was refused stands in for it, marked [`Refused`] with
    /// the violation, and is to be answered with a refusal; the connection closes after it.
    fn call(&self, request: Request<ClientBody>) -> impl Future<Output = Answer<Self::Body>> + Send;
}

/// Serves requests on a connection until either side closes it or a drain ends it; `h2c`: a
/// connection that opens with the HTTP/2 preface is handed back for HTTP/2 ([`hand_over`]).
///
/// Not an `async fn`, and the connection and settings are borrowed: an idle connection's task
/// holds this future, and what it is given is not copied into it beside its owner's.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<'a, S, Svc>(
    io: &'a mut ConnIo<S>,
    settings: &'a Http1Settings,
    h2c: bool,
    drain: CancellationToken,
    service: Svc,
) -> impl Future<Output = Ended> + 'a
where
    S: ClientStream + 'static,
    Svc: Service + 'a,
    <Svc::Body as Body>::Error: Into<BoxError>,
{
    async move {
        // A client that stops taking a response is given as long as an idle one.
        io.set_write_timeout(settings.idle_timeout);
        let mut first = true;
        let mut linger = false;
        let mut idle = std::pin::pin!(tokio::time::sleep(settings.idle_timeout));
        let mut drained = std::pin::pin!(drain.cancelled());
        loop {
            let head = match read_head(io, settings, idle.as_mut(), drained.as_mut(), first, h2c).await {
                Arrived::Head(head) => head,
                Arrived::Refused(violation) => refused_head(violation),
                Arrived::Http2 => return Ended::Http2,
                Arrived::Park => return Ended::Park,
                Arrived::Nothing => break,
            };
            first = false;
            // Boxed: a request's future holds the gateway's and the response body, and the
            // connection's own stays small while it waits for the next request.
            match Box::pin(exchange(io, head, &service, &drain, settings)).await {
                After::KeepAlive => io.release_idle(),
                After::Close { linger: body_unread } => {
                    linger = body_unread;
                    break;
                }
                After::Reset => return Ended::Closed,
                After::Switch(switch) => return Ended::Switch(switch),
            }
        }
        // Boxed: once per connection, and inline its future would be the largest thing the
        // connection's future holds while it waits for a request.
        Box::pin(io.close(linger)).await;
        Ended::Closed
    }
}

/// What a connection does after an exchange.
enum After {
    /// Wait for the next request.
    KeepAlive,
    /// Close the connection, after what is written; `linger` when the client may still be sending
    /// the request's body.
    Close { linger: bool },
    /// Drop the connection at once.
    Reset,
    /// The `101` is out: hand the connection over.
    Switch(oneshot::Sender<Switched>),
}

/// One request and its response, with the request body fed to the gateway as it asks.
///
/// Not an `async fn`, nor is [`respond`]: what they are given goes into their futures once, not
/// copied beside itself; and the gateway's future and the response, which never live at the same
/// time, share their room. The exchange's future is boxed per request, so its size is copied per
/// request.
#[allow(clippy::manual_async_fn)]
fn exchange<'a, S, Svc>(
    io: &'a mut ConnIo<S>,
    head: Head,
    service: &'a Svc,
    drain: &'a CancellationToken,
    settings: &'a Http1Settings,
) -> impl Future<Output = After> + 'a
where
    S: ClientStream,
    Svc: Service,
    <Svc::Body as Body>::Error: Into<BoxError>,
{
    let asked = Asked::of(&head);
    let refused = head.refused.is_some();
    let (request, mut feed, switch) = into_request(head, &mut io.read, settings.chunk_limits());
    async move {
        let answer = {
            let mut answer = std::pin::pin!(service.call(request));
            // A client that goes away while its request is worked on cancels the work.
            with_body(io, &mut feed, Watch::ClientClose, |cx, _| answer.as_mut().poll(cx)).await
        };
        let Some(Ok(response)) = answer else { return After::Reset };
        match respond(io, response, feed, switch, asked, drain, settings).await {
            // The client of a refused head may still be sending: what it sends is read and thrown
            // away, so the refusal is not lost to a reset.
            After::Close { linger } => After::Close { linger: linger || refused },
            after => after,
        }
    }
}

/// Writes the response, feeding the rest of the request body to whoever still reads it.
#[allow(clippy::manual_async_fn)]
fn respond<'a, S, B>(
    io: &'a mut ConnIo<S>,
    response: Response<B>,
    mut feed: Option<Feed>,
    switch: Option<oneshot::Sender<Switched>>,
    mut asked: Asked,
    drain: &'a CancellationToken,
    settings: &'a Http1Settings,
) -> impl Future<Output = After> + 'a
where
    S: ClientStream,
    B: Body<Data = Bytes> + Unpin + 'a,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    if let Some(feed) = &mut feed {
        // A client still waiting for `100 Continue` may send its body or not: the connection
        // cannot be read past it, so it closes after this answer.
        asked.keep_alive &= !feed.continue_withheld() && !feed.too_long_to_skip(DISCARD_BUDGET);
        feed.forgo_continue();
    }
    let (framing, keep_alive) = response::encode_head(&parts, &body.size_hint(), asked, io.out());
    let switching = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let mut sending = Sending::new(body, framing, asked);
    async move {
        if switching {
            let Some(switch) = switch else {
                tracing::debug!("a 101 for a request that asked for no switch; connection closed");
                return After::Reset;
            };
            return match poll_fn(|cx| io.poll_flush_out(cx)).await {
                Ok(()) => After::Switch(switch),
                Err(_) => After::Reset,
            };
        }
        if let Some(Err(error)) = with_body(io, &mut feed, Watch::BodyOnly, |cx, io| sending.poll_send(cx, io)).await {
            tracing::debug!(%error, "response not sent whole; connection closed");
            return After::Reset;
        }
        // Unread, or failed part-way (its framing broken, say): the client may still be sending it.
        let body_unread = feed.as_ref().is_some_and(|feed| feed.state() != FeedState::Complete);
        if keep_alive && !drain.is_cancelled() && body_finished(io, feed, settings).await {
            After::KeepAlive
        } else {
            After::Close { linger: body_unread }
        }
    }
}

/// What came next on a connection. Not boxed: it is returned once per request, straight to its use.
#[allow(clippy::large_enum_variant)]
enum Arrived {
    Head(Head),
    /// A head refused for its framing or syntax, or for taking too long.
    Refused(Violation),
    Http2,
    /// The client closed, went idle too long, or a drain began before a request started.
    Nothing,
    /// The connection has waited long enough to be parked.
    Park,
}

/// Ready when a connection's wait for its next request, begun at `since`, has lasted `wait`
/// (`false`), or a drain has begun (`true`).
///
/// The timer and the drain's watch live as long as the connection (`serve` pins them), so a busy
/// keep-alive connection neither arms a timer nor joins the drain's waiters per request. The timer
/// is moved only when it fires early, still set for an earlier wait (then it is set for this one's
/// end), or when it is set past this wait's end (after a head's own deadline).
fn poll_idle_end(
    cx: &mut Context<'_>,
    mut idle: Pin<&mut Sleep>,
    drained: Pin<&mut WaitForCancellationFuture<'_>>,
    since: Instant,
    wait: Duration,
) -> Poll<bool> {
    if drained.poll(cx).is_ready() {
        return Poll::Ready(true);
    }
    let Some(due) = since.checked_add(wait) else { return Poll::Pending };
    if idle.deadline() > due {
        idle.as_mut().reset(due);
    }
    loop {
        ready!(idle.as_mut().poll(cx));
        if idle.deadline() >= due {
            return Poll::Ready(false);
        }
        idle.as_mut().reset(due);
    }
}

/// Waits for the next request's head and parses it.
///
/// A connection waits for the first byte of a request for the idle timeout (on a new connection,
/// at most the head timeout: a connection that never sends a byte is closed without a word), and
/// for the rest of the head for the head timeout from when it first had to wait for more of it (a
/// slower head is refused). The connection's one timer serves both. A connection that has served a
/// request is handed back to be parked after `park_after`, when that is set.
///
/// Not an `async fn`: its future is what an idle connection's task holds, and a poll function
/// over a small state keeps it small (an `async fn` keeps its arguments twice).
fn read_head<'a, S: ClientStream>(
    io: &'a mut ConnIo<S>,
    settings: &'a Http1Settings,
    mut idle: Pin<&'a mut Sleep>,
    mut drained: Pin<&'a mut WaitForCancellationFuture<'_>>,
    first: bool,
    h2c: bool,
) -> impl Future<Output = Arrived> + 'a {
    let mut wait = HeadWait { progress: Progress::default(), idle_since: None, head_begun: false, first, h2c };
    poll_fn(move |cx| wait.poll(cx, io, settings, idle.as_mut(), drained.as_mut()))
}

/// What [`read_head`] keeps between polls.
struct HeadWait {
    /// How far the head arriving in pieces was checked.
    progress: Progress,
    /// When the wait for a request's first byte began.
    idle_since: Option<Instant>,
    /// The head's deadline is set on the connection's timer.
    head_begun: bool,
    /// The connection's first request: its first byte has at most the head timeout to come.
    first: bool,
    /// An HTTP/2 preface at the start of the connection hands it to HTTP/2.
    h2c: bool,
}

impl HeadWait {
    fn poll<S: ClientStream>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut ConnIo<S>,
        settings: &Http1Settings,
        mut idle: Pin<&mut Sleep>,
        drained: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Poll<Arrived> {
        let (first, h2c) = (self.first, self.h2c);
        loop {
            if !io.read.is_empty() {
                if first && h2c && H2_PREFACE.starts_with(&io.read[..io.read.len().min(H2_PREFACE.len())]) {
                    if io.read.len() >= H2_PREFACE.len() {
                        return Poll::Ready(Arrived::Http2);
                    }
                } else {
                    match head::parse(&mut io.read, &settings.head, &mut self.progress) {
                        Ok(Some(head)) => return Poll::Ready(Arrived::Head(head)),
                        Ok(None) => {}
                        Err(violation) => return Poll::Ready(Arrived::Refused(violation)),
                    }
                }
            }
            let waiting_for_head = !io.read.is_empty();
            let filled = match io.poll_fill(cx) {
                Poll::Ready(filled) => {
                    self.idle_since = None;
                    filled
                }
                Poll::Pending if waiting_for_head => {
                    // A head on its way: it has the head timeout from when it first had to wait.
                    if !std::mem::replace(&mut self.head_begun, true) {
                        idle.as_mut().reset(Instant::now() + settings.head_timeout);
                    }
                    ready!(idle.as_mut().poll(cx));
                    return Poll::Ready(Arrived::Refused(Violation::HeadTimeout));
                }
                Poll::Pending => {
                    let since = *self.idle_since.get_or_insert_with(Instant::now);
                    let (wait, then) = match settings.park_after {
                        Some(park_after) if !first => (park_after, Arrived::Park),
                        _ if first => (settings.idle_timeout.min(settings.head_timeout), Arrived::Nothing),
                        _ => (settings.idle_timeout, Arrived::Nothing),
                    };
                    let drained = ready!(poll_idle_end(cx, idle.as_mut(), drained, since, wait));
                    return Poll::Ready(if drained { Arrived::Nothing } else { then });
                }
            };
            if !matches!(filled, Ok(n) if n > 0) {
                return Poll::Ready(Arrived::Nothing);
            }
        }
    }
}

/// What stands in for a refused head: the gateway answers it with the refusal, and the connection
/// closes.
fn refused_head(violation: Violation) -> Head {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(HOST, HeaderValue::from_static("weir.invalid"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    Head {
        method: Method::GET,
        uri: Uri::from_static("/"),
        version: Version::HTTP_11,
        headers,
        framing: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
        upgrade: false,
        websocket: false,
        trailers: false,
        refused: Some(violation),
    }
}

/// The request for the gateway, the connection's side of its body, and where to hand the
/// connection if the request asked to switch protocols.
/// A body that came whole with the head is handed over as it is, with nothing to feed.
fn into_request(
    head: Head,
    read: &mut bytes::BytesMut,
    limits: ChunkLimits,
) -> (Request<ClientBody>, Option<Feed>, Option<oneshot::Sender<Switched>>) {
    let (body, feed) = match head.framing {
        BodyFraming::None => (ClientBody::Empty, None),
        BodyFraming::Length(length) if read.len() as u64 >= length => {
            (ClientBody::Whole(Some(read.split_to(length as usize).freeze())), None)
        }
        framing => {
            let (body, feed) = Feed::open(framing, head.expect_continue, limits);
            (ClientBody::Http1(body), Some(feed))
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    let switch = head.upgrade.then(|| {
        let (switch, sender) = ClientSwitch::new();
        request.extensions_mut().insert(switch);
        sender
    });
    if head.websocket {
        request.extensions_mut().insert(TunnelRequested);
    }
    if let Some(violation) = head.refused {
        request.extensions_mut().insert(Refused(violation));
    }
    (request, feed, switch)
}

/// What [`with_body`] watches the client's side of the connection for besides the body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    BodyOnly,
    /// Its close, once no body is to be read: the client has gone and the work is for nothing.
    ClientClose,
}

/// Bytes read ahead (a pipelined request) while watching for a client's close, at most.
const READ_AHEAD: usize = 8 * 1024;

/// Drives `work` while feeding the request body to whoever reads it. `None`: the client closed the
/// connection before `work` was done (watched for only as `watch` says).
async fn with_body<S, T>(
    io: &mut ConnIo<S>,
    feed: &mut Option<Feed>,
    watch: Watch,
    mut work: impl FnMut(&mut Context<'_>, &mut ConnIo<S>) -> Poll<T>,
) -> Option<T>
where
    S: ClientStream,
{
    poll_fn(|cx| {
        loop {
            if let Poll::Ready(done) = work(cx, io) {
                return Poll::Ready(Some(done));
            }
            if let Some(feed) = feed.as_mut().filter(|feed| feed.state() == FeedState::Open) {
                return match feed.poll_feed(cx, io) {
                    Poll::Ready(true) => continue,
                    _ => Poll::Pending,
                };
            }
            if watch == Watch::BodyOnly || io.read.len() >= READ_AHEAD {
                return Poll::Pending;
            }
            match io.poll_fill(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Whether the request body is behind the connection, so it can read the next request: read to its
/// end, or abandoned and short enough to read past within the idle timeout.
async fn body_finished<S: ClientStream>(io: &mut ConnIo<S>, feed: Option<Feed>, settings: &Http1Settings) -> bool {
    let Some(mut feed) = feed else { return true };
    match feed.state() {
        FeedState::Complete => true,
        FeedState::Broken => false,
        // The client still waits to be told to send its body: what it does next is unknown.
        FeedState::Open if feed.continue_withheld() || !feed.abandoned() => false,
        FeedState::Open => {
            let mut budget = DISCARD_BUDGET;
            let discard = poll_fn(|cx| feed.poll_discard(cx, io, &mut budget));
            tokio::time::timeout(settings.idle_timeout, discard).await.unwrap_or(false)
        }
    }
}

impl<S> ConnIo<S> {
    pub(crate) fn into_parts(self) -> (S, bytes::BytesMut) {
        (self.stream, self.read)
    }

    fn into_rewound(self) -> Rewound<S> {
        let (stream, read) = self.into_parts();
        Rewound::new(stream, read)
    }
}
