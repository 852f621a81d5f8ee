//! One multiplexed connection to Redis. Callers hand commands to the connection's task through a
//! bounded queue; the task writes every command waiting at that moment in one write (pipelining)
//! and matches replies to callers in order, since Redis answers a connection's commands in the
//! order they arrived. When the connection breaks, the task ends, every waiting caller gets an
//! error, and the queue closes so the client knows to reconnect. A connection whose oldest command
//! has had no answer for [`STALL`] counts as broken too (a hung or paused Redis), and no more than
//! [`IN_FLIGHT`] commands wait for answers, so a silent Redis cannot make the queue grow.

use std::collections::VecDeque;
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

struct Command {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, RedisError>>,
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
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Command { bytes, reply }).map_err(|_| RedisError::Unavailable)?;
        answer.await.map_err(|_| RedisError::Closed)?
    }
}

/// The connection's task: writes batches, reads replies, until either side fails.
async fn drive(stream: TcpStream, mut commands: mpsc::Receiver<Command>) {
    let (mut reader, mut writer) = stream.into_split();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut input = Vec::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
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
                let mut next = Some(first);
                let mut batched = 0;
                let now = Instant::now();
                while let Some(command) = next.take() {
                    output.extend_from_slice(&command.bytes);
                    waiting.push_back((now, command.reply));
                    batched += 1;
                    if batched < BATCH && waiting.len() < IN_FLIGHT { next = commands.try_recv().ok(); }
                }
                if let Err(error) = writer.write_all(&output).await { break RedisError::Io(error) }
                output.clear();
            }
        }
    };
    commands.close();
    let message = failure.to_string();
    for (_, caller) in waiting {
        let _ = caller.send(Err(RedisError::Broken(message.clone())));
    }
}

/// A command written and waiting for its answer: when it was written, and who wants the answer.
type Waiting = (Instant, oneshot::Sender<Result<Reply, RedisError>>);

/// Hands every whole reply in `input` to the caller waiting longest, and drops the bytes used.
fn deliver(input: &mut Vec<u8>, waiting: &mut VecDeque<Waiting>) -> Result<(), RedisError> {
    let mut used = 0;
    while let Some((reply, len)) = resp::parse(&input[used..]).map_err(|_| RedisError::Protocol)? {
        used += len;
        let (_, caller) = waiting.pop_front().ok_or(RedisError::Protocol)?;
        // A caller that gave up (timed out) no longer listens; its reply is dropped.
        let _ = caller.send(Ok(reply));
    }
    input.drain(..used);
    Ok(())
}
