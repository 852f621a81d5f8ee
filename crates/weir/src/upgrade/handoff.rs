//! The wire between an old and a new weir during a binary upgrade: a Unix socket in a directory
//! only this user can enter. The old process sends its listening sockets (SCM_RIGHTS, one message:
//! the names, one per line, and the descriptors in the same order); the new one answers
//! `ready PID` once it has adopted them and is about to accept.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use weir_proxy::InheritedSockets;

/// Names the handoff socket to the new process.
pub const SOCKET_ENV: &str = "WEIR_UPGRADE_SOCKET";

/// More listeners than this in one handoff is a broken message, not a configuration.
const MAX_SOCKETS: usize = 256;
/// The names of up to [`MAX_SOCKETS`] listeners fit in this.
const MAX_NAMES_BYTES: usize = 64 * 1024;

/// Sends `sockets` over `stream` in one message.
pub async fn send(stream: &tokio::net::UnixStream, sockets: &[(String, OwnedFd)]) -> std::io::Result<()> {
    let names = sockets.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join("\n");
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("the socket list does not fit one message"));
    }
    stream.writable().await?;
    let iov = [IoSlice::new(names.as_bytes())];
    let sent = stream
        .try_io(Interest::WRITABLE, || Ok(rustix::net::sendmsg(stream, &iov, &mut control, SendFlags::empty())?))?;
    match sent == names.len() {
        true => Ok(()),
        false => Err(std::io::Error::other("the socket names were cut short")),
    }
}

/// The new process's end: the sockets it was handed, and the stream to say it is ready on.
pub struct Handoff {
    stream: UnixStream,
    sockets: InheritedSockets,
}

impl Handoff {
    /// Connects to the old process when [`SOCKET_ENV`] names a socket, and receives its listeners.
    pub fn from_env() -> std::io::Result<Option<Handoff>> {
        let Some(path) = std::env::var_os(SOCKET_ENV).map(PathBuf::from) else { return Ok(None) };
        let stream = UnixStream::connect(&path)?;
        let sockets = receive(&stream)?;
        Ok(Some(Handoff { stream, sockets }))
    }

    /// The sockets received, for the server to adopt.
    pub fn sockets(&mut self) -> &mut InheritedSockets {
        &mut self.sockets
    }

    /// Tells the old process this one serves now, so it may stop accepting and drain.
    pub fn ready(mut self) -> std::io::Result<()> {
        use std::io::Write;
        writeln!(self.stream, "ready {}", std::process::id())
    }
}

fn receive(stream: &UnixStream) -> std::io::Result<InheritedSockets> {
    let mut names = vec![0u8; MAX_NAMES_BYTES];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut names)];
    let received = rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let names = String::from_utf8_lossy(&names[..received.bytes]).into_owned();
    let names: Vec<&str> = names.split('\n').filter(|name| !name.is_empty()).collect();
    if names.len() != fds.len() {
        return Err(std::io::Error::other(format!("{} socket names for {} sockets", names.len(), fds.len())));
    }
    let mut sockets = InheritedSockets::none();
    for (name, fd) in names.into_iter().zip(fds) {
        sockets.insert(name.to_string(), fd);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};

    use super::*;

    #[tokio::test]
    async fn sockets_arrive_under_their_names_and_still_listen() {
        let (public, admin) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let addresses: Vec<SocketAddr> = [&public, &admin].iter().map(|l| l.local_addr().unwrap()).collect();
        let sockets = vec![("public".to_string(), OwnedFd::from(public)), ("admin".to_string(), OwnedFd::from(admin))];
        let (old_end, new_end) = UnixStream::pair().unwrap();
        old_end.set_nonblocking(true).unwrap();
        send(&tokio::net::UnixStream::from_std(old_end).unwrap(), &sockets).await.unwrap();
        drop(sockets);

        let mut received = receive(&new_end).unwrap();
        assert_eq!(received.len(), 2);
        for (name, address) in [("public", addresses[0]), ("admin", addresses[1])] {
            let socket = received.take_for_test(name, address).unwrap_or_else(|| panic!("{name} missing"));
            let client = tokio::net::TcpStream::connect(address).await.unwrap();
            let (_, peer) = socket.accept().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
        }
        assert!(received.is_empty());
    }
}
