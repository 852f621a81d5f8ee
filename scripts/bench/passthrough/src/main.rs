//! The least a keep-alive HTTP/1.1 proxy could do, as a yardstick for the benchmark: every client
//! connection gets an upstream connection of its own (the endpoints taken in turn), and bytes go
//! through unchanged, one read and one write per direction per request. No parsing, no routing, no
//! pooling, no timers: whatever any real proxy does costs more than this, so its throughput in a
//! scenario is the most a proxy could reach there on this machine.
//!
//! It assumes what the scenarios it serves send: small messages that fit a socket's send buffer. A
//! write that would block, or any error, closes the pair, so the load generator counts an error
//! rather than the number being quietly wrong.
//!
//!     passthrough LISTEN_ADDR UPSTREAM_ADDR...

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Bigger than any message of the scenarios, so one read takes a whole one.
const BUFFER: usize = 64 * 1024;

/// A client connection and its own upstream connection. Tokens: `2 * index` for the client,
/// `2 * index + 1` for the upstream.
struct Pair {
    client: TcpStream,
    upstream: TcpStream,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |text: &String| text.parse::<SocketAddr>().unwrap_or_else(|e| fail(&format!("{text}: {e}")));
    let (Some(listen), upstreams) = (args.first().map(parse), args.iter().skip(1).map(parse).collect::<Vec<_>>())
    else {
        fail("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR...")
    };
    if upstreams.is_empty() {
        fail("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR...");
    }
    if let Err(e) = serve(listen, &upstreams) {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("passthrough: {message}");
    std::process::exit(2);
}

fn serve(listen: SocketAddr, upstreams: &[SocketAddr]) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(listen)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; BUFFER];
    let mut turn = 0;
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Some(client) = accept(&listener)? {
                    let upstream = upstreams[turn % upstreams.len()];
                    turn += 1;
                    match connect(upstream) {
                        Ok(upstream) => open_pair(&poll, &mut pairs, &mut free, client, upstream)?,
                        Err(e) => eprintln!("passthrough: connecting to {upstream}: {e}"),
                    }
                }
                continue;
            }
            let index = event.token().0 / 2;
            let from_client = event.token().0 % 2 == 0;
            let Some(pair) = pairs[index].as_mut() else { continue };
            let (from, to) = if from_client {
                (&mut pair.client, &mut pair.upstream)
            } else {
                (&mut pair.upstream, &mut pair.client)
            };
            if !relay(from, to, &mut buffer) {
                close_pair(&poll, &mut pairs, &mut free, index);
            }
        }
    }
}

fn accept(listener: &TcpListener) -> std::io::Result<Option<TcpStream>> {
    match listener.accept() {
        Ok((client, _)) => {
            client.set_nodelay(true)?;
            Ok(Some(client))
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// A blocking connect (loopback answers at once), then non-blocking like the rest.
fn connect(upstream: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = std::net::TcpStream::connect(upstream)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

fn open_pair(
    poll: &Poll,
    pairs: &mut Vec<Option<Pair>>,
    free: &mut Vec<usize>,
    mut client: TcpStream,
    mut upstream: TcpStream,
) -> std::io::Result<()> {
    let index = free.pop().unwrap_or_else(|| {
        pairs.push(None);
        pairs.len() - 1
    });
    poll.registry().register(&mut client, Token(2 * index), Interest::READABLE)?;
    poll.registry().register(&mut upstream, Token(2 * index + 1), Interest::READABLE)?;
    pairs[index] = Some(Pair { client, upstream });
    Ok(())
}

fn close_pair(poll: &Poll, pairs: &mut [Option<Pair>], free: &mut Vec<usize>, index: usize) {
    if let Some(mut pair) = pairs[index].take() {
        let _ = poll.registry().deregister(&mut pair.client);
        let _ = poll.registry().deregister(&mut pair.upstream);
        free.push(index);
    }
}

/// Copies what `from` has to `to`. A read shorter than the buffer took everything there was, so no
/// second read (which would only say "nothing more") follows it. False: the pair is done.
fn relay(from: &mut TcpStream, to: &mut TcpStream, buffer: &mut [u8]) -> bool {
    loop {
        match from.read(buffer) {
            Ok(0) => return false,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    return false;
                }
                if n < buffer.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
