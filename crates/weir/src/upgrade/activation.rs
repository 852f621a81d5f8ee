//! systemd socket activation: listening sockets handed over at start (`LISTEN_FDS`, `LISTEN_PID`),
//! named by `LISTEN_FDNAMES` (a `.socket` unit's `FileDescriptorName=`, which should be the
//! listener's name, or `admin`). A socket whose name matches no listener is still adopted by the
//! listener configured on its address.

use std::net::TcpListener;
use std::os::fd::OwnedFd;

use listenfd::ListenFd;
use weir_proxy::InheritedSockets;

/// The sockets systemd passed this process. Must run before any other thread starts: it removes
/// `LISTEN_FDS` and `LISTEN_PID` from the environment, so processes started later (a binary
/// upgrade's successor) do not take them for their own.
pub fn from_systemd() -> InheritedSockets {
    let mut passed = ListenFd::from_env();
    let names: Vec<String> =
        std::env::var("LISTEN_FDNAMES").map(|names| names.split(':').map(str::to_string).collect()).unwrap_or_default();
    let mut sockets = InheritedSockets::none();
    for index in 0..passed.len() {
        // Several sockets of one .socket unit share its name: the first keeps it, the others are
        // matched by address.
        let name = match names.get(index) {
            Some(name) if !names[..index].contains(name) => name.clone(),
            _ => format!("systemd-{index}"),
        };
        match take_tcp(&mut passed, index) {
            Ok(Some(socket)) => sockets.insert(name, OwnedFd::from(socket)),
            Ok(None) => {}
            Err(error) => tracing::warn!(%name, %error, "a socket systemd passed is not a TCP listener; ignored"),
        }
    }
    sockets
}

fn take_tcp(passed: &mut ListenFd, index: usize) -> std::io::Result<Option<TcpListener>> {
    passed.take_tcp_listener(index).or_else(|_| {
        let family = i32::from(rustix::net::AddressFamily::INET6.as_raw());
        let stream = rustix::net::SocketType::STREAM.as_raw() as i32;
        passed.take_custom(index, family, stream, "tcp6 socket")
    })
}
