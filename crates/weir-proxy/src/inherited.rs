//! Listening sockets handed over by another process (a binary upgrade): the server adopts them
//! by listener name instead of binding, so connections queued on them are never refused or reset.
//! Sits before the accept loops: [`crate::Server::bind_inheriting`] asks here first, then binds.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

/// Listening sockets received from another process, keyed by the listener name they served
/// (`admin` for the admin API).
#[derive(Debug, Default)]
pub struct InheritedSockets {
    sockets: HashMap<String, TcpListener>,
}

impl InheritedSockets {
    /// No sockets: every listener binds its own.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds every socket of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: InheritedSockets) {
        self.sockets.extend(other.sockets);
    }

    /// Adopts `fd`, a listening TCP socket, for the listener called `name`.
    pub fn insert(&mut self, name: String, fd: OwnedFd) {
        self.sockets.insert(name, TcpListener::from(fd));
    }

    /// How many sockets are not yet adopted.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether every socket was adopted (or there were none).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The socket inherited for `name`, when it listens on `address` (or on the same IP when
    /// `address` asks for any port, as tests do with port 0). A socket on another address is left
    /// alone: the listener's configuration changed, so it binds afresh.
    /// A socket under no listener's name (systemd names them after the unit when
    /// `FileDescriptorName=` is not set) goes to the listener configured on its exact address.
    pub(crate) fn take(&mut self, name: &str, address: SocketAddr) -> Option<tokio::net::TcpListener> {
        let key = match self.sockets.get(name) {
            Some(socket) => {
                let local = socket.local_addr().ok()?;
                let same = local == address || (address.port() == 0 && local.ip() == address.ip());
                same.then(|| name.to_string())?
            }
            None => self.sockets.iter().find(|(_, socket)| socket.local_addr().ok() == Some(address))?.0.clone(),
        };
        let socket = self.sockets.remove(&key)?;
        socket.set_nonblocking(true).ok()?;
        tokio::net::TcpListener::from_std(socket).ok()
    }

    /// [`InheritedSockets::take`], for tests of code that hands sockets over.
    #[doc(hidden)]
    pub fn take_for_test(&mut self, name: &str, address: SocketAddr) -> Option<tokio::net::TcpListener> {
        self.take(name, address)
    }

    /// The names of the sockets nobody adopted; dropping them closes this process's copies.
    pub fn unused(self) -> Vec<String> {
        self.sockets.into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> (TcpListener, SocketAddr) {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        (socket, address)
    }

    #[tokio::test]
    async fn a_socket_goes_to_its_name_on_its_address_or_to_its_address() {
        let mut inherited = InheritedSockets::none();
        let (public, public_addr) = listening();
        let (other, other_addr) = listening();
        inherited.insert("public".into(), OwnedFd::from(public));
        inherited.insert("weir.socket".into(), OwnedFd::from(other));

        // The name fits but the address changed: the listener binds anew and the socket stays.
        assert!(inherited.take("public", "127.0.0.2:9".parse().unwrap()).is_none());
        assert_eq!(inherited.len(), 2);
        // Port 0 in the configuration takes the named socket, whatever its port.
        let taken = inherited.take("public", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(taken.local_addr().unwrap(), public_addr);
        // No socket under this name: the one on the listener's exact address.
        let taken = inherited.take("internal", other_addr).unwrap();
        assert_eq!(taken.local_addr().unwrap(), other_addr);
        assert!(inherited.is_empty());
    }

    #[test]
    fn sockets_nobody_takes_are_named() {
        let mut inherited = InheritedSockets::none();
        inherited.insert("gone".into(), OwnedFd::from(listening().0));
        assert_eq!(inherited.unused(), ["gone"]);
    }
}
