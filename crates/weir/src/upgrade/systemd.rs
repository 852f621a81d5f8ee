//! Readiness for systemd (`Type=notify`): `READY=1` once the listeners are bound, and after a
//! binary upgrade `MAINPID=` naming the new process, so systemd follows the process that serves
//! instead of stopping the service when the old one exits. Does nothing outside systemd.

use std::os::unix::net::UnixDatagram;

/// Tells systemd this process is ready; `took_over` says it replaced another weir, whose place
/// as the service's main process it takes.
pub fn notify_ready(took_over: bool) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(error) = send(&socket.to_string_lossy(), &ready_message(took_over, std::process::id())) {
        tracing::warn!(%error, "cannot tell systemd this process is ready");
    }
}

fn ready_message(took_over: bool, pid: u32) -> String {
    match took_over {
        true => format!("MAINPID={pid}\nREADY=1\n"),
        false => "READY=1\n".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_hears_ready_and_after_a_takeover_the_new_main_pid() {
        let dir = std::env::temp_dir().join(format!("weir-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let mut buffer = [0u8; 128];
        for (took_over, expected) in [(false, "READY=1\n"), (true, "MAINPID=42\nREADY=1\n")] {
            send(path.to_str().unwrap(), &ready_message(took_over, 42)).unwrap();
            let length = systemd.recv(&mut buffer).unwrap();
            assert_eq!(std::str::from_utf8(&buffer[..length]).unwrap(), expected);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
