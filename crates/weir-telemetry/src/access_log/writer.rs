//! The access log's writer: a dedicated thread that drains a bounded queue of finished lines and
//! writes them in batches, so the request path never waits on the disk. When the queue is full a
//! line is dropped and counted. A reopen request (SIGUSR1, after a log rotation renamed the file)
//! makes the thread open the path anew between batches.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; created when missing.
    File(PathBuf),
}

/// Bytes gathered before a write to the destination; a batch ends sooner when the queue is empty.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a busy writer lets lines gather between batches. Lines reach the file this much later
/// at most; at 16384 queued lines, the queue holds more than 3 million lines a second.
const GATHER_TIME: Duration = Duration::from_millis(5);

enum Message {
    Line(Vec<u8>),
    /// Open the file again, after the lines before this message.
    Reopen,
    /// Acknowledged once everything queued before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// The handle requests submit lines through; cheap to share.
#[derive(Debug)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    dropped: Counter,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl LogWriter {
    /// Opens the destination and starts the writer thread. `queue_lines` bounds the lines waiting;
    /// lines that find the queue full are counted in `dropped`.
    pub fn start(destination: Destination, queue_lines: usize, dropped: Counter) -> io::Result<LogWriter> {
        let output = Output::open(&destination)?;
        let (queue, lines) = mpsc::sync_channel(queue_lines.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let thread = WriterThread { destination, output, lines, reopen: reopen.clone() };
        std::thread::Builder::new().name("weir-access-log".into()).spawn(move || thread.run())?;
        Ok(LogWriter { queue, reopen, dropped })
    }

    /// Queues one finished line (ending in a newline), or drops it when the queue is full.
    pub fn submit(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(Message::Line(line)) {
            self.dropped.inc();
        }
    }

    /// Asks the writer to open its file again, after the lines already queued.
    pub fn reopen(&self) {
        // A full queue means the writer is busy: it sees the flag after its batch.
        if self.queue.try_send(Message::Reopen).is_err() {
            self.reopen.store(true, Ordering::Release);
        }
    }

    /// Waits (blocking, up to `timeout`) until every line queued so far is written and flushed.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (done, flushed) = mpsc::channel();
        let mut request = Message::Flush(done);
        // Not a blocking send: a writer stuck on its destination must not hold the caller forever.
        loop {
            match self.queue.try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    request = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        flushed.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_ok()
    }
}

/// The open destination.
enum Output {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<File>),
}

impl Output {
    fn open(destination: &Destination) -> io::Result<Output> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(BufWriter::with_capacity(BATCH_BYTES, io::stdout())),
            Destination::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Output::File(BufWriter::with_capacity(BATCH_BYTES, file))
            }
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(out) => out,
            Output::File(out) => out,
        }
    }
}

struct WriterThread {
    destination: Destination,
    output: Output,
    lines: Receiver<Message>,
    reopen: Arc<AtomicBool>,
}

impl WriterThread {
    /// Runs until every [`LogWriter`] is gone. While lines keep coming, the thread writes a batch,
    /// then sleeps a moment and collects what arrived meanwhile: it is not parked on the queue then,
    /// so submitting a line costs no wake-up system call. Only an idle thread parks, and the first
    /// line after the idle spell wakes it.
    fn run(mut self) {
        let mut failing = false;
        let Ok(mut first) = self.lines.recv() else { return };
        loop {
            failing = self.write_batch(first, failing);
            std::thread::sleep(GATHER_TIME);
            first = match self.lines.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Empty) => match self.lines.recv() {
                    Ok(next) => next,
                    Err(_) => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
        }
        let _ = self.output.writer().flush();
    }

    /// Writes `first` and everything queued behind it, flushes, and answers flush requests. Returns
    /// whether writes are failing.
    fn write_batch(&mut self, first: Message, failing: bool) -> bool {
        let mut acks = Vec::new();
        let mut result = self.handle(first, &mut acks);
        while let Ok(next) = self.lines.try_recv() {
            result = result.and(self.handle(next, &mut acks));
        }
        result = result.and(self.output.writer().flush());
        let failing = report(result, failing);
        for ack in acks {
            let _ = ack.send(());
        }
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_output();
        }
        failing
    }

    fn handle(&mut self, message: Message, acks: &mut Vec<mpsc::Sender<()>>) -> io::Result<()> {
        match message {
            Message::Line(line) => self.output.writer().write_all(&line),
            Message::Reopen => {
                self.reopen_output();
                Ok(())
            }
            Message::Flush(ack) => {
                acks.push(ack);
                Ok(())
            }
        }
    }

    fn reopen_output(&mut self) {
        if self.destination == Destination::Stdout {
            return;
        }
        match Output::open(&self.destination) {
            Ok(output) => {
                let _ = self.output.writer().flush();
                self.output = output;
                tracing::info!(destination = ?self.destination, "access log reopened");
            }
            Err(error) => tracing::warn!(destination = ?self.destination, %error, "cannot reopen the access log"),
        }
    }
}

/// Logs the first failure of a run of failures and the recovery; returns whether writes are failing.
fn report(result: io::Result<()>, failing: bool) -> bool {
    match (result, failing) {
        (Err(error), false) => {
            tracing::warn!(%error, "cannot write the access log; lines are lost until it recovers");
            true
        }
        (Ok(()), true) => {
            tracing::info!("access log writes recovered");
            false
        }
        (result, _) => result.is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-writer-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("access.log")
    }

    #[test]
    fn lines_reach_the_file_and_reopen_follows_a_rename() {
        let path = temp_path("reopen");
        let writer = LogWriter::start(Destination::File(path.clone()), 16, Counter::default()).unwrap();
        writer.submit(b"one\n".to_vec());
        assert!(writer.flush(Duration::from_secs(10)));
        let rotated = path.with_extension("log.1");
        std::fs::rename(&path, &rotated).unwrap();
        writer.submit(b"two\n".to_vec());
        writer.reopen();
        writer.submit(b"three\n".to_vec());
        assert!(writer.flush(Duration::from_secs(10)));
        // "two" was queued before the reopen, so it went to the renamed file.
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (queue, _held) = mpsc::sync_channel(2);
        let dropped = Counter::default();
        let writer = LogWriter { queue, reopen: Arc::default(), dropped: dropped.clone() };
        for _ in 0..5 {
            writer.submit(b"x\n".to_vec());
        }
        assert_eq!(dropped.get(), 3);
        // Nobody drains this queue: a flush gives up at its deadline instead of waiting forever.
        assert!(!writer.flush(Duration::from_millis(20)));
    }
}
