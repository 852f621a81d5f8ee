//! JSON access logs: one line per request, written off the request path.
//!
//! The request path fills an [`Entry`] when a response body ends (or the client goes away), formats
//! it with [`LineFormat`] into a reusable per-thread buffer, copies the finished line out (the one
//! allocation per logged request) and hands it to [`LogWriter`], whose thread batches the writes.
//! [`Sampler`] chooses the share of requests logged.

mod fields;
mod json;
mod line;
mod sampler;
mod writer;

use std::cell::RefCell;

pub use fields::{Field, FieldSet};
pub use json::push_time;
pub use line::{Entry, LineFormat, TlsEntry};
pub use sampler::Sampler;
pub use writer::{Destination, LogWriter};

thread_local! {
    /// Each worker thread formats its lines here, so the buffer grows once and is reused.
    static LINE_BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Formats `entry` and submits the line to `writer`.
pub fn log(format: &LineFormat, entry: &Entry, writer: &LogWriter) {
    let line = LINE_BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        format.write(entry, buffer);
        buffer.as_slice().to_vec()
    });
    writer.submit(line);
}
