//! Idle keep-alive connections parked off the runtime.
//!
//! A cleartext HTTP/1.1 connection that has waited `idle_park_after` for its next request gives up
//! its task, its registration with the runtime's poller and its timer: its socket joins an epoll
//! set of its listener's, what it is served with goes into a slot, and its deadline into a queue.
//! One task per listener (a [`Parker`]) watches them all. Bytes from the client, or its close,
//! resume the connection in a new task; its idle timeout, or a drain, closes it.
//!
//! A parked connection costs its slot and what it is served with, instead of a task (640 bytes),
//! a registration (256) and a timer. Parking and resuming cost four `epoll_ctl` calls and a spawn,
//! once per wait longer than `idle_park_after`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::pin;

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use weir_telemetry::ListenerMetrics;

/// Readiness reports taken from the epoll set per call, at most.
const EVENTS_PER_WAIT: usize = 64;
/// What a parked connection is woken for: bytes, or the client's close (errors always wake).
const WAKE_ON: epoll::EventFlags = epoll::EventFlags::IN.union(epoll::EventFlags::RDHUP);

/// Where a listener's idle connections are parked: a handle to its [`Parker`], which ends when
/// every handle is gone and nothing is parked, or when a drain stops it.
///
/// The queue to the parker is unbounded in type and bounded in fact: each connection in it holds
/// its place under the listener's connection cap.
pub(crate) struct Parking<T> {
    parked: mpsc::UnboundedSender<Parked<T>>,
}

impl<T> Clone for Parking<T> {
    fn clone(&self) -> Self {
        Parking { parked: self.parked.clone() }
    }
}

/// A connection on its way to the parker.
struct Parked<T> {
    socket: std::net::TcpStream,
    state: T,
    due: Instant,
}

impl<T: Send + 'static> Parking<T> {
    /// Starts a listener's parker in the current runtime. `resume` is given a parked connection
    /// the client sent something on (or closed), back in the runtime's poller, with its state;
    /// `stopping` closes every parked connection and ends the parker.
    pub(crate) fn start<F>(resume: F, stopping: CancellationToken, metrics: ListenerMetrics) -> io::Result<Self>
    where
        F: Fn(TcpStream, T) + Send + 'static,
    {
        let epoll = watched(epoll::create(epoll::CreateFlags::CLOEXEC)?)?;
        let (parked, incoming) = mpsc::unbounded_channel();
        let lot = Lot { slots: Vec::new(), free: Vec::new(), deadlines: VecDeque::new(), live: 0, metrics, resume };
        tokio::spawn(Parker { epoll, lot }.run(incoming, stopping));
        Ok(Parking { parked })
    }

    /// Parks `stream` until the client sends something or closes, or until `due` (then it is
    /// closed). With the parker gone (a drain stopped it) the connection closes at once.
    pub(crate) fn park(&self, stream: TcpStream, state: T, due: Instant) {
        // Out of the runtime's poller here; the parker puts it in its own.
        match stream.into_std() {
            Ok(socket) => {
                let _ = self.parked.send(Parked { socket, state, due });
            }
            Err(error) => tracing::debug!(%error, "an idle connection could not be parked; closed"),
        }
    }
}

/// The epoll set, registered with the runtime's poller (it is readable when a parked connection is).
#[allow(unsafe_code)]
fn watched(epoll: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns the `OwnedFd`, whose descriptor stays open and the same until the
    // `AsyncFd` is dropped: nothing here replaces or closes it.
    let registered = unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) };
    registered.map_err(|error| error.into_parts().1)
}

/// A listener's parked connections and the task that watches them.
struct Parker<T, F> {
    /// The epoll set the parked sockets are in, itself watched by the runtime's poller.
    epoll: AsyncFd<OwnedFd>,
    lot: Lot<T, F>,
}

impl<T, F> Parker<T, F>
where
    T: Send + 'static,
    F: Fn(TcpStream, T) + Send + 'static,
{
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Parked<T>>, stopping: CancellationToken) {
        let mut timer = pin!(sleep_until(Instant::now()));
        let mut receiving = true;
        while receiving || self.lot.live > 0 {
            tokio::select! {
                biased;
                () = stopping.cancelled() => break,
                ready = self.epoll.readable() => match ready {
                    Ok(mut guard) => {
                        let epoll = guard.get_inner().as_fd();
                        if self.lot.resume_ready(epoll).is_ok() {
                            guard.clear_ready();
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "the parked connections' poller failed; they are closed");
                        break;
                    }
                },
                parked = incoming.recv(), if receiving => match parked {
                    Some(parked) => self.lot.park(self.epoll.get_ref().as_fd(), parked),
                    None => receiving = false,
                },
                () = timer.as_mut(), if !self.lot.deadlines.is_empty() => self.lot.expire(Instant::now()),
            }
            if let Some(&(due, _)) = self.lot.deadlines.front()
                && timer.deadline() != due
            {
                timer.as_mut().reset(due);
            }
        }
        // Dropping the lot closes what is still parked.
    }
}

/// The parked connections: slots, free slots, deadlines.
struct Lot<T, F> {
    slots: Vec<Slot<T>>,
    /// Indices of empty slots.
    free: Vec<u32>,
    /// Parked connections' deadlines in the order they were parked, which is the order of their
    /// deadlines (a listener's connections all park for the same time; two parked within the same
    /// moment may swap, and one of them closes that much late). A connection resumed leaves its
    /// deadline behind, skipped when it comes up; such entries are dropped when they are most of
    /// the queue.
    deadlines: VecDeque<(Instant, Key)>,
    live: usize,
    metrics: ListenerMetrics,
    resume: F,
}

/// A slot, and the count of connections it has held (so a stale deadline or report for an earlier
/// one is told apart).
struct Slot<T> {
    generation: u32,
    held: Option<(std::net::TcpStream, T)>,
}

/// A parked connection's slot and generation, as the epoll set reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_u64(value: u64) -> Key {
        Key { index: value as u32, generation: (value >> 32) as u32 }
    }
}

impl<T, F: Fn(TcpStream, T)> Lot<T, F> {
    /// Puts a connection in a slot and its socket in the epoll set.
    fn park(&mut self, epoll: BorrowedFd<'_>, parked: Parked<T>) {
        let key = self.vacant();
        let data = epoll::EventData::new_u64(key.to_u64());
        if let Err(error) = epoll::add(epoll, &parked.socket, data, WAKE_ON) {
            tracing::debug!(%error, "an idle connection could not be parked; closed");
            return;
        }
        let slot = &mut self.slots[key.index as usize];
        slot.held = Some((parked.socket, parked.state));
        self.free.pop();
        self.live += 1;
        self.metrics.parked(1);
        self.deadlines.push_back((parked.due, key));
        if self.deadlines.len() > 2 * self.live + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, key)| is_held(slots, key));
        }
    }

    /// The key the next parked connection gets: the last free slot's, or a new slot's.
    fn vacant(&mut self) -> Key {
        if self.free.is_empty() {
            let index = u32::try_from(self.slots.len()).expect("fewer parked connections than u32::MAX");
            self.slots.push(Slot { generation: 0, held: None });
            self.free.push(index);
        }
        let index = *self.free.last().expect("a free slot");
        Key { index, generation: self.slots[index as usize].generation }
    }

    /// Takes the connection out of its slot, if the key is still its.
    fn take(&mut self, key: Key) -> Option<(std::net::TcpStream, T)> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let held = slot.held.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.live -= 1;
        self.metrics.parked(-1);
        Some(held)
    }

    /// Resumes every connection the epoll set reports ready. `Err` when the set could not be read
    /// to its end (its readiness is kept, so it is read again).
    fn resume_ready(&mut self, epoll: BorrowedFd<'_>) -> io::Result<()> {
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        loop {
            events.clear();
            match epoll::wait(epoll, spare_capacity(&mut events), Some(&now)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the parked connections' poller");
                    return Err(error.into());
                }
            }
            for event in &events {
                self.resume(epoll, Key::from_u64(event.data.u64()));
            }
            if events.len() < EVENTS_PER_WAIT {
                return Ok(());
            }
        }
    }

    /// Hands a ready connection back to the runtime's poller and to `resume`.
    fn resume(&mut self, epoll: BorrowedFd<'_>, key: Key) {
        let Some((socket, state)) = self.take(key) else { return };
        let _ = epoll::delete(epoll, &socket);
        match TcpStream::from_std(socket) {
            Ok(stream) => (self.resume)(stream, state),
            Err(error) => tracing::debug!(%error, "a parked connection could not be resumed; closed"),
        }
    }

    /// Closes the connections whose deadline is `now` or past (closing a socket takes it out of
    /// the epoll set).
    fn expire(&mut self, now: Instant) {
        while let Some(&(due, key)) = self.deadlines.front() {
            if due > now {
                return;
            }
            self.deadlines.pop_front();
            drop(self.take(key));
        }
    }
}

fn is_held<T>(slots: &[Slot<T>], key: Key) -> bool {
    slots.get(key.index as usize).is_some_and(|slot| slot.generation == key.generation && slot.held.is_some())
}

impl<T, F> Drop for Lot<T, F> {
    fn drop(&mut self) {
        self.metrics.parked(-(self.live as i64));
    }
}

#[cfg(test)]
mod tests;
