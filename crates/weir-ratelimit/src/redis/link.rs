//! One multiplexed connection to Redis. Callers hand commands to the connection's task through a
//! bounded queue; the task writes every command waiting at that moment in one write (pipelining)
//! and matches replies to callers in order, since Redis answers a connection's commands in the
//! order they arrived. When the connection breaks, the task ends, every waiting caller gets an
//! error, and the queue closes so the client knows to reconnect. A connection whose oldest command
//! has had no answer for [`STALL`] counts as broken too (a hung or paused Redis), and no more than
//! [`IN_FLIGHT`] commands wait for answers, so a silent Redis cannot make the queue grow.
//!
//! A GCRA decision is handed over as what it asks ([`Ask`]), not as bytes: decisions for the same
//! key and quota in one batch go out as one script call taking that many requests' worth of the
//! bucket, and each caller learns its place in the call ([`Share`]). Redis decides them together, as
//! it would have decided them one after another at that moment, for one call's work.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::RedisError;
use super::resp::{self, Reply};

/// Commands waiting for the connection's task, at most.
const QUEUE: usize = 4096;
/// Commands written in one batch, at most.
const BATCH: usize = 256;
/// Commands written and not yet answered, at most; beyond it callers are turned away at the queue.
const IN_FLIGHT: usize = 4096;
/// How long the oldest command may go unanswered before the connection is given up.
pub const STALL: Duration = Duration::from_secs(2);
/// Distinct keys a batch's decisions are gathered under, at most; the decisions for keys past these
/// go out one call each (bounds the search per decision).
const GATHERED_KEYS: usize = 32;

/// What a caller is handed: the reply, and its place among the callers the reply answers.
type Answer = oneshot::Sender<Result<(Reply, Share), RedisError>>;

enum Command {
    /// Encoded whole; its reply goes to its caller alone.
    Raw { bytes: Vec<u8>, answer: Answer },
    /// One request's decision, gathered with others for the same key and quota.
    Decide { ask: Ask, answer: Answer },
}

/// One request's GCRA decision on the script `sha` (loaded on this connection): `key`, and the
/// quota's interval and tolerance in nanoseconds.
pub struct Ask {
    pub sha: Arc<[u8]>,
    pub key: Vec<u8>,
    pub interval: u64,
    pub tolerance: u64,
}

impl Ask {
    fn same_call(&self, other: &Ask) -> bool {
        self.interval == other.interval && self.tolerance == other.tolerance && self.key == other.key
    }
}

/// A caller's place among the `of` decisions one script call made: the call took up to `of`
/// requests' worth, and the first ones granted are the first callers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: u32,
    pub of: u32,
}

impl Share {
    pub const ALONE: Share = Share { index: 0, of: 1 };
}

/// A handle on a live connection; cheap to clone.
#[derive(Clone)]
pub struct Link {
    queue: mpsc::Sender<Command>,
}

impl Link {
    /// Connects within `timeout` and starts the connection's task.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Link, RedisError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| RedisError::Timeout)?
            .map_err(RedisError::Io)?;
        stream.set_nodelay(true).map_err(RedisError::Io)?;
        let (queue, commands) = mpsc::channel(QUEUE);
        tokio::spawn(drive(stream, commands));
        Ok(Link { queue })
    }

    /// Whether the connection's task has ended.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Sends one command (already encoded) and waits for its reply.
    pub async fn call(&self, bytes: Vec<u8>) -> Result<Reply, RedisError> {
        let (answer, answered) = oneshot::channel();
        self.queue.try_send(Command::Raw { bytes, answer }).map_err(|_| RedisError::Unavailable)?;
        Ok(answered.await.map_err(|_| RedisError::Closed)??.0)
    }

    /// Has one request decided, perhaps in one call with others for the same key; returns the
    /// call's reply and this request's share of it.
    pub async fn decide(&self, ask: Ask) -> Result<(Reply, Share), RedisError> {
        let (answer, answered) = oneshot::channel();
        self.queue.try_send(Command::Decide { ask, answer }).map_err(|_| RedisError::Unavailable)?;
        answered.await.map_err(|_| RedisError::Closed)?
    }
}

/// The connection's task: writes batches, reads replies, until either side fails.
async fn drive(stream: TcpStream, mut commands: mpsc::Receiver<Command>) {
    let (mut reader, mut writer) = stream.into_split();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut input = Vec::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
    let mut batch = Vec::new();
    let mut calls = Vec::new();
    let failure = loop {
        let oldest = waiting.front().map_or_else(|| Instant::now() + STALL, |(sent, _)| *sent + STALL);
        tokio::select! {
            () = tokio::time::sleep_until(oldest), if !waiting.is_empty() => break RedisError::Timeout,
            read = reader.read_buf(&mut input) => match read {
                Ok(0) => break RedisError::Closed,
                Ok(_) => if let Err(error) = deliver(&mut input, &mut waiting) { break error },
                Err(error) => break RedisError::Io(error),
            },
            command = commands.recv(), if waiting.len() < IN_FLIGHT => {
                let Some(first) = command else { break RedisError::Closed };
                batch.push(first);
                while batch.len() < BATCH && waiting.len() + batch.len() < IN_FLIGHT {
                    let Ok(next) = commands.try_recv() else { break };
                    batch.push(next);
                }
                encode(&mut batch, &mut calls, &mut output, &mut waiting);
                if let Err(error) = writer.write_all(&output).await { break RedisError::Io(error) }
                output.clear();
            }
        }
    };
    commands.close();
    let message = failure.to_string();
    for (_, callers) in waiting {
        callers.each(|answer, _| {
            let _ = answer.send(Err(RedisError::Broken(message.clone())));
        });
    }
}

/// Who waits for one reply: one caller, or the callers of decisions sent as one call.
enum Callers {
    One(Answer),
    Gathered(Vec<Answer>),
}

impl Callers {
    fn add(&mut self, answer: Answer) {
        *self = match std::mem::replace(self, Callers::Gathered(Vec::new())) {
            Callers::One(first) => Callers::Gathered(vec![first, answer]),
            Callers::Gathered(mut answers) => {
                answers.push(answer);
                Callers::Gathered(answers)
            }
        };
    }

    fn count(&self) -> u32 {
        match self {
            Callers::One(_) => 1,
            Callers::Gathered(answers) => answers.len() as u32,
        }
    }

    /// Calls `f` with each caller and its share, in the order they asked.
    fn each(self, mut f: impl FnMut(Answer, Share)) {
        match self {
            Callers::One(answer) => f(answer, Share::ALONE),
            Callers::Gathered(answers) => {
                let of = answers.len() as u32;
                for (index, answer) in answers.into_iter().enumerate() {
                    f(answer, Share { index: index as u32, of });
                }
            }
        }
    }
}

/// Writes a batch: raw commands as they are, then one script call per key and quota decided in
/// it (callers in the order they asked), each noted as waiting in the order written.
fn encode(
    batch: &mut Vec<Command>,
    calls: &mut Vec<(Ask, Callers)>,
    out: &mut Vec<u8>,
    waiting: &mut VecDeque<Waiting>,
) {
    let now = Instant::now();
    for command in batch.drain(..) {
        match command {
            Command::Raw { bytes, answer } => {
                out.extend_from_slice(&bytes);
                waiting.push_back((now, Callers::One(answer)));
            }
            Command::Decide { ask, answer } => {
                let searched = calls.len().min(GATHERED_KEYS);
                match calls[..searched].iter().position(|(call, _)| call.same_call(&ask)) {
                    Some(at) => calls[at].1.add(answer),
                    None => calls.push((ask, Callers::One(answer))),
                }
            }
        }
    }
    for (ask, callers) in calls.drain(..) {
        let wanted = callers.count();
        super::write_script_call(out, b"EVALSHA", &ask.sha, &ask.key, ask.interval, ask.tolerance, wanted);
        waiting.push_back((now, callers));
    }
}

/// A command written and waiting for its answer: when it was written, and who wants the answer.
type Waiting = (Instant, Callers);

/// Hands every whole reply in `input` to the caller waiting longest, and drops the bytes used.
fn deliver(input: &mut Vec<u8>, waiting: &mut VecDeque<Waiting>) -> Result<(), RedisError> {
    let mut used = 0;
    while let Some((reply, len)) = resp::parse(&input[used..]).map_err(|_| RedisError::Protocol)? {
        used += len;
        let (_, callers) = waiting.pop_front().ok_or(RedisError::Protocol)?;
        // A caller that gave up (timed out) no longer listens; its reply is dropped.
        match callers {
            Callers::One(answer) => {
                let _ = answer.send(Ok((reply, Share::ALONE)));
            }
            gathered => gathered.each(|answer, share| {
                let _ = answer.send(Ok((reply.clone(), share)));
            }),
        }
    }
    input.drain(..used);
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that reads what arrives until `expected` commands have come (as counted by `*`
    /// array headers at the start of a command), answers each with `reply`, and hands back what it
    /// read.
    async fn server(expected: usize, reply: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let read = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut read = Vec::new();
            let mut buf = [0u8; 4096];
            while commands_in(&read) < expected {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after {}", String::from_utf8_lossy(&read));
                read.extend_from_slice(&buf[..n]);
            }
            for _ in 0..expected {
                stream.write_all(reply).await.unwrap();
            }
            // Keeps the connection until the link closes it.
            let _ = stream.read(&mut buf).await;
            read
        });
        (port, read)
    }

    /// Commands in `bytes`: each is an array of seven bulk strings here (EVALSHA and its arguments).
    fn commands_in(bytes: &[u8]) -> usize {
        let mut count = 0;
        let mut rest = bytes;
        while let Ok(Some((_, used))) = resp::parse(rest) {
            count += 1;
            rest = &rest[used..];
        }
        count
    }

    fn ask(key: &str) -> Ask {
        Ask { sha: Arc::from(&b"abc"[..]), key: key.as_bytes().to_vec(), interval: 1000, tolerance: 5000 }
    }

    /// The reply to a call that granted 3 of what it asked, with 0 left.
    const GRANTED_THREE: &[u8] = b"*4\r\n:3\r\n:0\r\n:0\r\n:3\r\n";

    #[tokio::test]
    async fn decisions_for_one_key_sent_together_go_as_one_call_and_share_its_reply() {
        let (port, read) = server(2, GRANTED_THREE).await;
        let link = Link::connect("127.0.0.1", port, Duration::from_secs(5)).await.unwrap();
        // Queued in one go, before the connection's task runs: one batch.
        let mut decisions: Vec<_> = (0..10).map(|_| link.decide(ask("weir:rl:{a}"))).collect();
        decisions.push(link.decide(ask("weir:rl:{b}")));
        let answers = answered(futures_join(decisions)).await;
        let shares: Vec<Share> = answers.iter().map(|answer| answer.as_ref().unwrap().1).collect();
        let expected: Vec<Share> = (0..10).map(|index| Share { index, of: 10 }).chain([Share::ALONE]).collect();
        assert_eq!(shares, expected);
        drop(link);
        let sent = String::from_utf8(read.await.unwrap()).unwrap();
        assert_eq!(sent.matches("EVALSHA").count(), 2, "{sent}");
        assert!(sent.contains("$11\r\nweir:rl:{a}\r\n$4\r\n1000\r\n$4\r\n5000\r\n$2\r\n10\r\n"), "{sent}");
        assert!(sent.contains("$11\r\nweir:rl:{b}\r\n$4\r\n1000\r\n$4\r\n5000\r\n$1\r\n1\r\n"), "{sent}");
    }

    #[tokio::test]
    async fn different_quotas_for_one_key_are_not_gathered() {
        let (port, read) = server(2, GRANTED_THREE).await;
        let link = Link::connect("127.0.0.1", port, Duration::from_secs(5)).await.unwrap();
        let other = Ask { tolerance: 9000, ..ask("k") };
        let answers = answered(futures_join(vec![link.decide(ask("k")), link.decide(other)])).await;
        assert!(answers.iter().all(|answer| answer.as_ref().unwrap().1 == Share::ALONE));
        drop(link);
        assert_eq!(String::from_utf8(read.await.unwrap()).unwrap().matches("EVALSHA").count(), 2);
    }

    /// Every caller answered, within a bound: a caller left without a reply fails the test.
    async fn answered<T>(all: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), all).await.expect("every caller answered")
    }

    /// Polls every future until all are done (no extra dependency for a join).
    async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            for (future, output) in futures.iter_mut().zip(&mut outputs) {
                if output.is_none()
                    && let std::task::Poll::Ready(done) = future.as_mut().poll(cx)
                {
                    *output = Some(done);
                }
            }
            if outputs.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
        outputs.into_iter().map(Option::unwrap).collect()
    }
}
