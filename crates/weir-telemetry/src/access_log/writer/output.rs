//! Where the access log's lines go: standard output, or a file appended to. The writer hands over
//! whole buffers, so nothing is buffered here.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; created when missing.
    File(PathBuf),
}

/// The open destination.
pub(super) enum Output {
    Stdout(io::Stdout),
    File(File),
}

impl Output {
    pub(super) fn open(destination: &Destination) -> io::Result<Output> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(io::stdout()),
            Destination::File(path) => Output::File(OpenOptions::new().create(true).append(true).open(path)?),
        })
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().write_all(bytes),
            Output::File(file) => file.write_all(bytes),
        }
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().flush(),
            Output::File(file) => file.flush(),
        }
    }
}
