//! A client connection after `101 Switching Protocols`, or after an HTTP/2 preface on a listener
//! that serves both protocols: the raw stream, with the bytes already read from it read first.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
pub use weir_upstream::wire::Rewound;

/// A client connection's stream, whatever it is (TCP or TLS).
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<S: AsyncRead + AsyncWrite + Send + Unpin> ClientStream for S {}

/// The client's side of a protocol switch once its `101` is written.
pub type Switched = Rewound<Box<dyn ClientStream>>;

/// A request extension (extensions must be `Clone`): the client's connection, handed over once the
/// `101` answering the request has been written. The first to [`take`](ClientSwitch::take) it has it.
#[derive(Clone)]
pub struct ClientSwitch(Arc<Mutex<Option<oneshot::Receiver<Switched>>>>);

impl ClientSwitch {
    pub(super) fn new() -> (ClientSwitch, oneshot::Sender<Switched>) {
        let (sender, receiver) = oneshot::channel();
        (ClientSwitch(Arc::new(Mutex::new(Some(receiver)))), sender)
    }

    /// The connection to come, once; `None` after the first call.
    pub fn take(&self) -> Option<oneshot::Receiver<Switched>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}
