//! The access log's writer: lines are formatted straight into one of a few shared buffers (each
//! worker thread keeps to one, so its lock is all but uncontended), and a dedicated thread swaps
//! the buffers out and writes them whole, so the request path never waits on the disk, allocates
//! nothing per line, and hands nothing across threads line by line.
//!
//! The buffers hold at most `queue_lines` lines between them: a line that finds its buffer full is
//! dropped and counted. A busy writer sweeps the buffers every few milliseconds; an idle one parks,
//! and the first line after the idle spell wakes it. Reopening the file (SIGUSR1, after a log
//! rotation renamed it) and flushing are requests the thread answers between sweeps.

mod output;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::Thread;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

pub use output::Destination;
use output::Output;

/// How long a busy writer lets lines gather between sweeps. Lines reach the file this much later
/// at most.
const GATHER_TIME: Duration = Duration::from_millis(5);

/// How long an idle writer parks before it looks again on its own (a wake-up is never needed for
/// correctness past this).
const IDLE_PARK: Duration = Duration::from_millis(500);

/// A request the writer thread answers between sweeps.
enum Request {
    /// Open the file again, after the lines submitted before the request.
    Reopen,
    /// Acknowledged once everything submitted before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// One buffer of finished lines.
#[derive(Default)]
struct Shard {
    lines: Vec<u8>,
    count: usize,
}

/// What the request path and the writer thread share.
struct Shared {
    shards: Box<[Mutex<Shard>]>,
    /// Lines one shard may hold.
    shard_lines: usize,
    requests: Mutex<VecDeque<Request>>,
    /// The writer is parked, or about to be: a submitter wakes it.
    parked: AtomicBool,
    /// Every [`LogWriter`] is gone: write what is left and stop.
    closed: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

/// The handle requests submit lines through.
pub struct LogWriter {
    shared: Arc<Shared>,
    dropped: Counter,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").field("shards", &self.shared.shards.len()).finish_non_exhaustive()
    }
}

/// Which shard this thread writes to, assigned in turn on first use.
fn shard_of_this_thread(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard % shards)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a buffer leaves at worst a partial line: keep logging.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogWriter {
    /// Opens the destination and starts the writer thread. `queue_lines` bounds the lines waiting;
    /// lines that find no room are counted in `dropped`.
    pub fn start(destination: Destination, queue_lines: usize, dropped: Counter) -> io::Result<LogWriter> {
        let output = Output::open(&destination)?;
        let mut writer = LogWriter::unstarted(queue_lines, dropped);
        let thread = WriterThread { destination, output, shared: writer.shared.clone(), spare: Vec::new() };
        let handle = std::thread::Builder::new().name("weir-access-log".into()).spawn(move || thread.run())?;
        let _ = writer.shared.thread.set(handle.thread().clone());
        writer.thread = Some(handle);
        Ok(writer)
    }

    /// The buffers, with no thread writing them yet.
    fn unstarted(queue_lines: usize, dropped: Counter) -> LogWriter {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = threads.clamp(4, 64);
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_lines: queue_lines.div_ceil(shards).max(1),
            requests: Mutex::default(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        LogWriter { shared, dropped, thread: None }
    }

    /// Stops the writer and waits until it has written every line submitted.
    pub fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Appends one line, written by `format` (which must end it with a newline), or drops it and
    /// counts it when this thread's buffer is full.
    pub fn submit_with(&self, format: impl FnOnce(&mut Vec<u8>)) {
        let shared = &self.shared;
        {
            let mut shard = lock(&shared.shards[shard_of_this_thread(shared.shards.len())]);
            if shard.count >= shared.shard_lines {
                drop(shard);
                self.dropped.inc();
                return;
            }
            format(&mut shard.lines);
            shard.count += 1;
        }
        if shared.parked.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Appends one finished line (ending in a newline).
    pub fn submit(&self, line: &[u8]) {
        self.submit_with(|out| out.extend_from_slice(line));
    }

    /// Asks the writer to open its file again, after the lines already submitted.
    pub fn reopen(&self) {
        lock(&self.shared.requests).push_back(Request::Reopen);
        self.wake();
    }

    /// Waits (blocking, up to `timeout`) until every line submitted so far is written and flushed.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = mpsc::channel();
        lock(&self.shared.requests).push_back(Request::Flush(done));
        self.wake();
        flushed.recv_timeout(timeout).is_ok()
    }

    fn wake(&self) {
        self.shared.parked.store(false, Ordering::SeqCst);
        if let Some(thread) = self.shared.thread.get() {
            thread.unpark();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.wake();
    }
}

struct WriterThread {
    destination: Destination,
    output: Output,
    shared: Arc<Shared>,
    /// An empty buffer to swap in for a full one, so buffers are reused rather than reallocated.
    spare: Vec<u8>,
}

impl WriterThread {
    /// Sweeps until every [`LogWriter`] is gone, then writes what is left.
    fn run(mut self) {
        let mut failing = false;
        loop {
            let closed = self.shared.closed.load(Ordering::SeqCst);
            let (wrote, result) = self.sweep();
            let result = result.and_then(|()| self.answer_requests());
            failing = report(result, failing);
            if closed {
                return;
            }
            if wrote {
                std::thread::sleep(GATHER_TIME);
            } else {
                self.park();
            }
        }
    }

    /// Writes every shard's lines. Returns whether there were any.
    fn sweep(&mut self) -> (bool, io::Result<()>) {
        let mut wrote = false;
        let mut result = Ok(());
        for index in 0..self.shared.shards.len() {
            {
                let mut shard = lock(&self.shared.shards[index]);
                if shard.count == 0 {
                    continue;
                }
                std::mem::swap(&mut shard.lines, &mut self.spare);
                shard.count = 0;
            }
            wrote = true;
            result = result.and(self.output.write_all(&self.spare));
            self.spare.clear();
        }
        (wrote, result.and_then(|()| self.output.flush()))
    }

    /// Answers reopen and flush requests, each after the lines submitted before it.
    fn answer_requests(&mut self) -> io::Result<()> {
        let requests: Vec<Request> = lock(&self.shared.requests).drain(..).collect();
        if requests.is_empty() {
            return Ok(());
        }
        // Lines submitted before a request are in the buffers by now.
        let (_, result) = self.sweep();
        for request in requests {
            match request {
                Request::Reopen => self.reopen_output(),
                Request::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
        result
    }

    /// Parks until a line or a request arrives (or a while passes).
    fn park(&self) {
        let shared = &self.shared;
        shared.parked.store(true, Ordering::SeqCst);
        // A line submitted before the flag was set saw no flag: look once more before parking.
        let pending = shared.shards.iter().any(|shard| lock(shard).count > 0) || !lock(&shared.requests).is_empty();
        if !pending && !shared.closed.load(Ordering::SeqCst) {
            let until = Instant::now() + IDLE_PARK;
            while shared.parked.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
            }
        }
        shared.parked.store(false, Ordering::SeqCst);
    }

    fn reopen_output(&mut self) {
        if self.destination == Destination::Stdout {
            return;
        }
        match Output::open(&self.destination) {
            Ok(output) => {
                let _ = self.output.flush();
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
mod tests;
