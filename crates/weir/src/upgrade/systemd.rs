//! Readiness for systemd (`Type=notify`): `READY=1` once the listeners are bound, and after a
//! binary upgrade `MAINPID=` naming the new process, so systemd follows the process that serves
//! instead of stopping the service when the old one exits. Does nothing outside systemd.

use std::os::unix::net::UnixDatagram;

/// Tells systemd this process is ready; `took_over` says it replaced another weir, whose place
/// as the service's main process it takes.
pub fn notify_ready(took_over: bool) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let message = match took_over {
        true => format!("MAINPID={}\nREADY=1\n", std::process::id()),
        false => "READY=1\n".to_string(),
    };
    if let Err(error) = send(&socket.to_string_lossy(), &message) {
        tracing::warn!(%error, "cannot tell systemd this process is ready");
    }
}

fn send(socket: &str, message: &str) -> std::io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            datagram.send_to_addr(message.as_bytes(), &address)?;
        }
        None => {
            datagram.send_to(message.as_bytes(), socket)?;
        }
    }
    Ok(())
}
